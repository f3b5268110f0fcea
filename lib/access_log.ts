/**
 * The access log: one line per request, written when the answer's body has ended (sent in
 * full, cut by the client, or failed), so the duration and byte count are what the client got.
 *
 * Like nginx's `$upstream_cache_status`, each line says how the cache took part: `HIT`, `MISS`,
 * `BYPASS` (with the reason), `REDIRECT` (a redirect-mode hit) or `NONE` (the proxy answered
 * itself: a bad request, imgproxy unreachable). Everything comes from the answer the handlers
 * built (its `X-Cache`, `X-Cache-Lookup` and imgproxy's `X-Request-ID`), so nothing per request
 * is kept aside.
 */
import type { Logger } from "./log.ts";
import { type BodyEnd, BodyMeter, type ContextHandler } from "./context.ts";
import { bodyKind, streamState } from "./body_kind.ts";
import { declaredLength } from "./headers.ts";

export type { BodyEnd };

/**
 * Passes `body` through, counting its bytes; `onEnd` is called once, when it ends. Nothing is
 * allocated or timed per chunk beyond the pass itself.
 */
export function countBytes(
  body: ReadableStream<Uint8Array>,
  onEnd: (bytes: number, end: BodyEnd) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  let ended = false;
  const end = (how: BodyEnd) => {
    if (ended) return;
    ended = true;
    onEnd(bytes, how);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (err) {
        end("error");
        controller.error(err);
        return;
      }
      if (result.done) {
        end("complete");
        controller.close();
        return;
      }
      bytes += result.value.byteLength;
      controller.enqueue(result.value);
    },
    cancel(reason) {
      end("aborted");
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** The cache outcome of an answer, from the headers the handlers set. */
export function cacheStatus(res: Response): { cache: string; reason?: string } {
  const x = res.headers.get("x-cache");
  if (x === null) return { cache: "NONE" };
  const semi = x.indexOf(";");
  const cache = (semi === -1 ? x : x.slice(0, semi)).trim().toUpperCase();
  if (cache === "HIT" && res.status === 302) return { cache: "REDIRECT" };
  return { cache, reason: semi === -1 ? undefined : reasonParam(x, semi + 1) };
}

/**
 * The value of the first `reason=` parameter of `x` from `from` on (parameters separated by
 * ";", each trimmed), if any. Walked with indexOf rather than split into arrays: one line per
 * request reads it.
 */
function reasonParam(x: string, from: number): string | undefined {
  for (;;) {
    const end = x.indexOf(";", from);
    const param = x.slice(from, end === -1 ? x.length : end).trim();
    if (param.startsWith("reason=")) return param.slice("reason=".length);
    if (end === -1) return undefined;
    from = end + 1;
  }
}

/**
 * Wraps the proxy's outermost handler so each request writes one access line.
 *
 * When the server says when an answer has been handed over (`completed`), the answer goes to
 * the runtime untouched and the line is written then:
 *
 * - a body held whole (bytes or text: a hit read from the store, the proxy's own answers) is
 *   written by the runtime in one go; `bytes` is its length;
 * - a streamed body of declared length (`Content-Length`) is `bytes` when it was sent in full.
 *   Deno 2.9 resolves `completed` for a transfer the client cut and for one whose body failed
 *   alike, so the client's side is read from the request's signal (it aborts when the client
 *   closes its side mid-body), the body's from the stream's state, and, on the proxy's own
 *   listener, a failed write from the connection (lib/answer_sent.ts: it ends with the
 *   error). A cut or failed transfer is `end=aborted` or `end=error` with no `bytes` (how much
 *   the client got is not known). A body the runtime streams natively (imgproxy's answer as
 *   fetched, a file) shows no state: it goes untouched only where the connection tells.
 *
 * A body of unknown length that a layer below already passes through JavaScript (the tee that
 * copies imgproxy's answer to the uploader) is counted by that layer, through the request's
 * {@linkcode BodyMeter}, rather than wrapped a second time. Any other body is counted as it
 * passes ({@linkcode countBytes}).
 */
export function withAccessLog(handler: ContextHandler, logger: Logger): ContextHandler {
  return async (ctx) => {
    const start = performance.now();
    const req = ctx.req;
    const meter = new BodyMeter();
    ctx.meter = meter;
    const write = (
      status: number,
      bytes: number | undefined,
      end: BodyEnd,
      res?: Response,
      at = performance.now(),
    ) => {
      const outcome = res === undefined ? { cache: "NONE" } : cacheStatus(res);
      logger.log("INFO", "Request", {
        method: req.method,
        path: ctx.target ?? req.url,
        status,
        bytes,
        durationMs: Math.round((at - start) * 10) / 10,
        cache: outcome.cache,
        reason: outcome.reason,
        lookup: res?.headers.get("x-cache-lookup") ?? undefined,
        requestId: res?.headers.get("x-request-id") ?? undefined,
        client: ctx.clientIp,
        end: end === "complete" ? undefined : end,
      });
    };
    let res: Response;
    try {
      res = await handler(ctx);
    } catch (err) {
      // Deno.serve answers 500 for a handler that throws.
      write(500, 0, "error");
      throw err;
    }
    const held = bodyKind(res);
    const bytes = held.kind === "none" || noBodySent(req.method, res.status)
      ? 0
      : held.kind === "whole"
      ? held.length
      : null;
    const completed = ctx.completed;
    if (bytes !== null) {
      if (completed === undefined) {
        write(res.status, bytes, "complete", res);
      } else {
        const sent = ctx.sent;
        // Rejected: the runtime says the answer was not sent; claim none of it.
        completed.then(
          () => {
            if (bytes === 0 || sent === undefined) return write(res.status, bytes, "complete", res);
            const at = performance.now();
            // Deno 2.9 resolves `completed` for a write that failed too: the connection says.
            sent.known((how) =>
              write(res.status, how === "complete" ? bytes : undefined, how, res, at)
            );
          },
          () => write(res.status, bytes === 0 ? 0 : undefined, "error", res),
        );
      }
      return res;
    }
    const declared = declaredLength(res.headers);
    if (held.kind === "stream" && declared !== null && completed !== undefined) {
      const stream = res.body!;
      const state = streamState(stream);
      const sent = ctx.sent;
      // A stream the runtime reads natively (a fetched body, a file) can be left untouched only
      // where the connection tells how it ended (the proxy's listener).
      if (state === "readable" || (sent !== undefined && state === "unknown")) {
        // Taken now: first asked for once the answer is done, it would never abort.
        const left = req.signal;
        // The runtime may stop reading once the declared length is sent, before the stream's
        // end: a stream still open then is complete unless the client left.
        const done = (resolved: boolean) => {
          const at = performance.now();
          const end: BodyEnd = streamState(stream) === "errored"
            ? "error"
            : left.aborted || !resolved
            ? "aborted"
            : "complete";
          if (end !== "complete" || sent === undefined) {
            write(res.status, end === "complete" ? declared : undefined, end, res, at);
          } else {
            // Deno 2.9 resolves `completed` for a write that failed too: the connection says.
            sent.known((how) =>
              write(res.status, how === "complete" ? declared : undefined, how, res, at)
            );
          }
        };
        completed.then(() => done(true), () => done(false));
        return res;
      }
    }
    if (res.body === null) {
      write(res.status, 0, "complete", res);
      return res;
    }
    // Only the very stream the layer counted: an answer shared with other clients is not it.
    if (meter.stream !== null && res.body === meter.stream) {
      meter.onEnd((bytes, end) => write(res.status, bytes, end, res));
      return res;
    }
    const body = countBytes(res.body, (bytes, end) => write(res.status, bytes, end, res));
    return new Response(body, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  };
}

/** Answers whose body, if any, the runtime does not send. */
function noBodySent(method: string, status: number): boolean {
  return method === "HEAD" || status === 204 || status === 304;
}
