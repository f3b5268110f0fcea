/**
 * The `read` and `redirect` cache modes: look in the store before asking imgproxy.
 *
 * - `read`: a hit is answered from the store with its stored `Content-Type` and
 *   `Cache-Control`;
 * - `redirect`: a hit is answered with a 302 to `PUBLIC_BASE_URL` + key (the bucket's public or
 *   CDN address);
 * - a miss, and a store that errors or does not answer within the lookup timeout, fall through
 *   to the normal path (imgproxy, then a background store), so the store never fails a request.
 */
import { notModified } from "./conditional.ts";
import { type Breaker, isOutage } from "./breaker.ts";
import { activeRules, type CacheRules } from "./cache_rules.ts";
import { objectKey, pathOf } from "./key.ts";
import type { FormatNegotiation } from "./negotiation.ts";
import type { Logger } from "./log.ts";
import { sameSecret, sha256 } from "./secret.ts";
import type { ContextHandler, RequestContext } from "./context.ts";
import { expired, lengthMismatch, watchHitBody, WHOLE_HIT_BYTES } from "./hit.ts";
import { Deadlines, StallWatch, withDeadline } from "./timers.ts";
import type { OpenedObject, ReadObject, Store, StoredObject } from "./store/store.ts";
import type { Uploader } from "./uploader.ts";
import { errorMessage } from "./error_message.ts";

/** Settings of the lookup front. */
export interface LookupOptions {
  mode: "read" | "redirect";
  store: Store;
  uploader: Uploader;
  logger: Logger;
  folder: string;
  cacheVariants: "off" | "accept";
  /** What is known of imgproxy's format negotiation (shared with nothing else; learns here). */
  negotiation: FormatNegotiation;
  /** Base URL objects are public at (redirect mode), without trailing slash. */
  publicBaseUrl: string;
  /** Pauses lookups while the store keeps failing (they are answered as misses). */
  breaker?: Breaker;
  /** `Cache-Control` of the redirect to a stored object (redirect mode). */
  redirectCacheControl?: string;
  /** How long a store lookup may take before the request goes to imgproxy. */
  timeoutMs: number;
  /** imgproxy's IMGPROXY_SECRET, when it demands `Authorization: Bearer <secret>`. */
  imgproxySecret?: string | null;
  /** CACHE_ONLY / CACHE_SKIP: a path they leave out is never looked up. */
  cacheRules?: CacheRules;
  /** The longest silence of the store while it streams a large hit's body (default 10 s). */
  bodyTimeoutMs?: number;
  /** Counters of hits not answered from the store, or cut (also exported as metrics). */
  stats?: HitStats;
}

/** Hits the store had but that were not served whole. */
export interface HitStats {
  /** `exp:` past: left to imgproxy, the store not asked. */
  expired: number;
  /** The object's length differs from the one recorded at write: a miss. */
  mismatched: number;
  /** A large hit's body stalled or ended short: the client's transfer was cut. */
  cut: number;
}

/** New, zeroed hit counters. */
export function newHitStats(): HitStats {
  return { expired: 0, mismatched: 0, cut: 0 };
}

/** Wraps the normal handler with a store lookup for GET requests. */
export function withLookup(inner: ContextHandler, options: LookupOptions): ContextHandler {
  const { mode, store, uploader, logger, folder, timeoutMs } = options;
  const negotiation = options.negotiation;
  const secretHeader = options.imgproxySecret ? sha256(`Bearer ${options.imgproxySecret}`) : null;
  // One timer per slot for every lookup in flight, not one per request.
  const deadlines = new Deadlines(timeoutMs);
  const bodyWatch = new StallWatch(options.bodyTimeoutMs ?? 10_000);
  const stats = options.stats ?? newHitStats();
  const cacheRules = activeRules(options.cacheRules);
  const forward = async (ctx: RequestContext, outcome?: string) => {
    const res = await inner(ctx);
    negotiation.observe(ctx.req.headers.get("accept"), res);
    if (outcome !== undefined) res.headers.set("x-cache-lookup", outcome);
    return res;
  };
  return async (ctx) => {
    const req = ctx.req;
    const target = req.method === "GET" ? ctx.target : null;
    if (target === null) return forward(ctx);
    const path = pathOf(target);
    if (cacheRules !== null && ctx.ruleVerdict(cacheRules) !== null) return forward(ctx);
    // With IMGPROXY_SECRET imgproxy answers only authorised requests: a hit must not be
    // easier to get than the image itself.
    if (secretHeader !== null && !sameSecret(req.headers.get("authorization"), secretHeader)) {
      return forward(ctx);
    }
    // Past its exp: imgproxy refuses the URL (404): leave the answer to it, whatever is stored.
    if (expired(target)) {
      stats.expired++;
      return forward(ctx, "expired");
    }
    // The key of the format imgproxy will decide on: the first of jxl, avif, webp that the
    // client accepts and imgproxy is known to produce. Until imgproxy is known to negotiate,
    // the suffix-less object (valid for every client) is the one to look for.
    // Once imgproxy negotiates, every answer depends on Accept, the suffix-less (plain)
    // variant's included: hits say so, or a CDN in front would give one format to everyone.
    const negotiates = options.cacheVariants === "accept" && negotiation.variesOnAccept === true;
    const variant = negotiates ? negotiation.predict(req.headers.get("accept")) : "";
    const key = objectKey(path, folder, variant);
    // A store that keeps failing is not asked for a while: the request goes straight to
    // imgproxy instead of waiting for the lookup timeout each time.
    // (A redirect to a key stored moments ago needs no store at all.)
    const breaker = options.breaker;
    const recent = mode === "redirect" && uploader.isRecent(key);
    if (breaker !== undefined && !recent && !breaker.allow()) return forward(ctx, "skipped");
    // The timeout covers the lookup and the reading of a small hit, not the streaming of a
    // large hit's body afterwards (an idle watch covers that).
    const lookup = new AbortController();
    const cancelTimeout = deadlines.add(() =>
      lookup.abort(new DOMException("Store lookup timed out", "TimeoutError"))
    );
    const signal = lookup.signal;
    try {
      if (mode === "redirect") {
        const hit = recent || await withDeadline(store.has(key, signal), signal);
        if (!recent) breaker?.success();
        if (!hit) return forward(ctx, "miss");
        return new Response(null, {
          status: 302,
          headers: {
            location: `${options.publicBaseUrl}/${key}`,
            "x-cache": "HIT",
            // Without it a CDN or browser asks again every time.
            ...(options.redirectCacheControl
              ? { "cache-control": options.redirectCacheControl }
              : {}),
            ...(negotiates ? { vary: "Accept" } : {}),
          },
        });
      }
      const obj = await withDeadline<OpenedObject | ReadObject | StoredObject | null>(
        store.open ? store.open(key, signal, WHOLE_HIT_BYTES) : store.get(key, signal),
        signal,
        // A hit that arrives after the deadline is not used: let its stream go.
        (late) => late !== null && late.body instanceof ReadableStream && late.body.cancel(),
      );
      breaker?.success();
      if (obj === null) return forward(ctx, "miss");
      const length = "contentLength" in obj ? obj.contentLength : obj.body.byteLength;
      let body: BodyInit = obj.body as BodyInit;
      let mismatch = lengthMismatch(obj.length, length);
      // Read whole by the store: what arrived of the length it declared.
      if (mismatch === null && obj.body instanceof Uint8Array && obj.body.byteLength !== length) {
        mismatch = `the store sent ${obj.body.byteLength} of ${length} bytes`;
      }
      const validators: [string, string][] = [];
      if (obj.etag !== undefined) validators.push(["etag", obj.etag]);
      if (obj.lastModified !== undefined) validators.push(["last-modified", obj.lastModified]);
      if (obj.cacheControl !== null) validators.push(["cache-control", obj.cacheControl]);
      if (negotiates) validators.push(["vary", "Accept"]);
      // The client's copy is current: 304 with no body, and imgproxy is not asked.
      if (mismatch === null && notModified(req.headers, obj.etag, obj.lastModified)) {
        if (obj.body instanceof ReadableStream) await obj.body.cancel().catch(() => {});
        return new Response(null, { status: 304, headers: [["x-cache", "HIT"], ...validators] });
      }
      if (mismatch === null && obj.body instanceof ReadableStream) {
        if (length !== null && length <= WHOLE_HIT_BYTES) {
          // Read whole, still under the lookup deadline: a store that stalls mid-body sends
          // the request to imgproxy instead of hanging the client.
          const bytes = await withDeadline(new Response(obj.body).bytes(), signal);
          if (bytes.byteLength !== length) {
            mismatch = `the store sent ${bytes.byteLength} of ${length} bytes`;
          }
          body = bytes;
        } else {
          body = watchHitBody(obj.body, bodyWatch, obj.length ?? length, (why) => {
            stats.cut++;
            logger.log("WARN", "Hit cut: the store stopped sending", {
              path,
              key,
              reason: "store-stalled",
              detail: why,
            });
          });
        }
      } else if (mismatch !== null && obj.body instanceof ReadableStream) {
        await obj.body.cancel().catch(() => {});
      }
      if (mismatch !== null) {
        stats.mismatched++;
        logger.log("WARN", "Stored object is not what was written: asking imgproxy", {
          path,
          key,
          reason: "length-mismatch",
          detail: mismatch,
        });
        return forward(ctx, "mismatch");
      }
      const headers: [string, string][] = [
        ["content-type", obj.contentType],
        ["x-cache", "HIT"],
        ...validators,
        ...Object.entries(obj.headers ?? {}),
      ];
      if (length !== null) headers.push(["content-length", String(length)]);
      return new Response(body, { status: 200, headers });
    } catch (err) {
      const reason = signal.aborted ? `no answer within ${timeoutMs} ms` : errorMessage(err);
      if (breaker !== undefined) {
        if (isOutage(err, signal.aborted)) breaker.failure(reason);
        else breaker.success();
      }
      logger.log("WARN", "Store lookup failed, asking imgproxy", {
        path,
        key,
        reason,
      });
      return forward(ctx, "error");
    } finally {
      cancelTimeout();
    }
  };
}
