/**
 * The request handler: forwards every request to imgproxy with the raw target kept, streams the
 * answer back as it arrives, and hands a copy of each storable body to the uploader.
 */
import { imageHeaders } from "./image_headers.ts";
import { type Admission, type AdmissionRules, admit } from "./admission.ts";
import type { BypassNotices } from "./bypass_notice.ts";
import { activeRules, type CacheRules } from "./cache_rules.ts";
import { clientResponseHeaders } from "./headers.ts";
import { objectKey, pathOf } from "./key.ts";
import type { BodyMeter, ContextHandler } from "./context.ts";
import type { Logger } from "./log.ts";
import { forwardable, unroutedMethod } from "./methods.ts";
import type { Upstream } from "./upstream.ts";
import type { Collector } from "./upload_collector.ts";
import type { Uploader } from "./uploader.ts";
import { Deadlines, StallWatch, type Watched } from "./timers.ts";
import { errorMessage } from "./error_message.ts";

/** What the handler needs; everything is injected so tests can swap parts. */
export interface ProxyOptions {
  upstream: Upstream;
  uploader: Uploader;
  logger: Logger;
  rules: AdmissionRules;
  /** Says once when a bypass reason comes from the configuration. */
  notices?: BypassNotices;
  /** Key prefix, already normalised. */
  folder: string;
  /** How long to wait for imgproxy's response headers. */
  upstreamTimeoutMs: number;
  /** CACHE_ONLY / CACHE_SKIP (absent: every path is cached). */
  cacheRules?: CacheRules;
}

function plain(status: number, text: string, extra?: Record<string, string>): Response {
  return new Response(text + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...extra },
  });
}

/**
 * Streams `body` through while copying it into `collector`; the copy is queued on success.
 * With `idle`, a body that sends nothing for `idle.watch.limitMs` is given up (the client's
 * answer ends in an error, the copy is dropped): a stalled imgproxy must not hold an upload
 * reservation. With `meter`, the bytes passed on and how the body ended are reported there
 * (the access log then needs no wrap of its own). With `length` (the declared length), the body is
 * read into buffers of what is left of it ({@linkcode readSize}).
 */
export function teeToCollector(
  body: ReadableStream<Uint8Array>,
  collector: Collector,
  idle?: { watch: StallWatch; onStall?: () => void },
  meter?: BodyMeter,
  length: number | null = null,
): ReadableStream<Uint8Array> {
  const byob = length === null ? null : byobReader(body);
  const reader = byob ?? body.getReader();
  let collecting = true;
  let stalled = false;
  let bytes = 0;
  const watched: Watched | null = idle === undefined ? null : {
    since: -1,
    stall() {
      stalled = true;
      reader.cancel().catch(() => {});
    },
  };
  if (watched !== null) idle!.watch.watch(watched);
  const done = () => {
    if (watched !== null) idle!.watch.unwatch(watched);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      if (watched !== null) watched.since = performance.now();
      try {
        result = byob === null
          ? await (reader as ReadableStreamDefaultReader<Uint8Array>).read()
          : await byob.read(new Uint8Array(readSize(length!, bytes)));
      } catch (err) {
        done();
        collector.abort("incomplete");
        meter?.ended(bytes, "error");
        controller.error(err);
        return;
      }
      if (watched !== null) watched.since = -1;
      if (stalled) {
        // The cancel ended the read as if the body were complete: it is not.
        collector.abort("incomplete");
        idle!.onStall?.();
        meter?.ended(bytes, "error");
        controller.error(
          new DOMException(
            `imgproxy sent nothing for ${idle!.watch.limitMs / 1000} s`,
            "TimeoutError",
          ),
        );
        return;
      }
      if (result.done) {
        done();
        if (collecting) collector.finish();
        meter?.ended(bytes, "complete");
        controller.close();
        return;
      }
      if (collecting && !collector.add(result.value)) collecting = false;
      bytes += result.value.byteLength;
      controller.enqueue(result.value);
    },
    cancel(reason) {
      // The client went away: the body is incomplete, and imgproxy's work can stop.
      done();
      collector.abort("incomplete");
      meter?.ended(bytes, "aborted");
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** The most one read of a body of known length asks for (the runtime's own chunk size). */
const READ_CHUNK = 64 * 1024;

/**
 * A reader that reads into buffers of our size, or null for a stream that is not a byte stream.
 * A body of known length is then read in chunks of exactly what is left (a 30 KB image: one
 * 30 KB buffer), where the default reader allocates 64 KiB for every read, the last one (which
 * only finds the end) included: memory the garbage collector has to come back for.
 */
function byobReader(body: ReadableStream<Uint8Array>): ReadableStreamBYOBReader | null {
  try {
    return body.getReader({ mode: "byob" });
  } catch {
    return null;
  }
}

/** How much the next read of a body of `length` bytes asks for, `read` bytes in. */
function readSize(length: number, read: number): number {
  const left = length - read;
  // At the end, a 1-byte read finds the end; past it (a body longer than declared), full reads.
  return left > 0 ? Math.min(left, READ_CHUNK) : left === 0 ? 1 : READ_CHUNK;
}

/** Creates the proxy's request handler. */
export function createHandler(options: ProxyOptions): ContextHandler {
  const { upstream, uploader, logger, rules, folder, upstreamTimeoutMs } = options;
  const cacheRules = activeRules(options.cacheRules);
  const deadlines = new Deadlines(upstreamTimeoutMs);
  const stalls = new StallWatch(upstreamTimeoutMs);
  return async (ctx) => {
    const { req, target } = ctx;
    if (target === null) return plain(400, "Bad Request: invalid Host header");
    if (!forwardable(req.method)) return unroutedMethod();
    const headers = ctx.forwarded;
    const clientSignal = ctx.signal;
    // A shared request's signal is the coalescer's, which it aborts once every client has
    // gone: the timeout aborts it too. A client's own signal is followed by a controller here.
    const shared = ctx.work;
    const controller = shared ?? new AbortController();
    const onClientGone = shared !== undefined ? null : () => controller.abort(clientSignal.reason);
    if (onClientGone !== null) clientSignal.addEventListener("abort", onClientGone, { once: true });
    let timedOut = false;
    const cancelTimeout = deadlines.add(() => {
      timedOut = true;
      controller.abort(new DOMException("imgproxy did not answer in time", "TimeoutError"));
    });
    let res: Response;
    try {
      res = await upstream({
        method: req.method,
        target,
        headers,
        body: req.body,
        signal: controller.signal,
      });
    } catch (err) {
      if (timedOut) {
        logger.log("WARN", "imgproxy timed out", {
          path: pathOf(target),
          timeoutMs: upstreamTimeoutMs,
        });
        return plain(504, "Gateway Timeout: imgproxy did not answer in time");
      }
      if (clientSignal.aborted) return plain(499, "Client Closed Request");
      logger.log("WARN", "imgproxy is unreachable", {
        path: pathOf(target),
        reason: errorMessage(err),
      });
      return plain(502, "Bad Gateway: imgproxy is unreachable");
    } finally {
      cancelTimeout();
      // From here on a client that goes away cancels the response body, which cancels
      // imgproxy's.
      if (onClientGone !== null) clientSignal.removeEventListener("abort", onClientGone);
    }
    const outHeaders = clientResponseHeaders(res.headers);
    // Judge by the headers imgproxy really got: `Connection` may have removed some (an Accept
    // dropped that way must not put a JPEG under a webp variant key).
    const verdict: Admission = cacheRules !== null && ctx.ruleVerdict(cacheRules) !== null
      ? { store: false, reason: "rule" }
      : admit(req.method, headers, res.status, res.headers, rules);
    let body: ReadableStream<Uint8Array> | null = res.body;
    if (!verdict.store) {
      outHeaders.set("x-cache", `BYPASS; reason=${verdict.reason}`);
      options.notices?.note(verdict.reason, res.headers);
    } else {
      outHeaders.set("x-cache", "MISS");
      if (body !== null) {
        const path = pathOf(target);
        const key = objectKey(path, folder, verdict.variant);
        const collector = uploader.begin(key, {
          path,
          contentType: res.headers.get("content-type")!,
          cacheControl: res.headers.get("cache-control"),
          headers: imageHeaders(res.headers),
        }, verdict.contentLength);
        if (typeof collector !== "string") {
          const meter = ctx.meter;
          body = teeToCollector(
            body,
            collector,
            {
              watch: stalls,
              onStall: () =>
                logger.log("WARN", "imgproxy stopped sending the body: answer cut, not stored", {
                  path,
                  timeoutSec: upstreamTimeoutMs / 1000,
                }),
            },
            meter,
            verdict.contentLength,
          );
          if (meter !== undefined) meter.stream = body;
        }
      }
    }
    return new Response(body, {
      status: res.status,
      statusText: res.statusText,
      headers: outHeaders,
    });
  };
}
