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
import type { ContextHandler } from "./context.ts";

/** How a body ended. */
export type BodyEnd = "complete" | "aborted" | "error";

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
  const [word, ...params] = x.split(";");
  const cache = word!.trim().toUpperCase();
  if (cache === "HIT" && res.status === 302) return { cache: "REDIRECT" };
  const reason = params.map((p) => p.trim()).find((p) => p.startsWith("reason="));
  return { cache, reason: reason?.slice("reason=".length) };
}

/** Wraps the proxy's outermost handler so each request writes one access line. */
export function withAccessLog(handler: ContextHandler, logger: Logger): ContextHandler {
  return async (ctx) => {
    const start = performance.now();
    const req = ctx.req;
    const write = (status: number, bytes: number, end: BodyEnd, res?: Response) => {
      const outcome = res === undefined ? { cache: "NONE" } : cacheStatus(res);
      logger.log("INFO", "Request", {
        method: req.method,
        path: ctx.target ?? req.url,
        status,
        bytes,
        durationMs: Math.round((performance.now() - start) * 10) / 10,
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
    if (res.body === null) {
      write(res.status, 0, "complete", res);
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
