/**
 * Collapses concurrent identical requests into one request to imgproxy.
 *
 * N clients asking for the same image at once get one upstream request and one store write;
 * every client gets the full body, streamed as it arrives. A client that goes away only stops
 * its own copy; when every client has gone, the upstream request is cancelled. An upstream
 * failure reaches all of them.
 */
import { type HeaderLookup, removeHopByHop } from "./headers.ts";
import { variantSuffix } from "./key.ts";
import type { ContextHandler } from "./context.ts";

/** Request headers that change imgproxy's answer or make it personal. */
const SHAPING_HEADERS = [
  "authorization",
  "dpr",
  "sec-ch-dpr",
  "width",
  "sec-ch-width",
  "viewport-width",
  "sec-ch-viewport-width",
  "save-data",
];

/** Requests carrying these ask for a particular answer (partial, conditional): not shared. */
const PERSONAL_HEADERS = [
  "range",
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
  "if-range",
  "cookie",
];

/**
 * Returns the coalescing key of a request, or null when it must not share an answer:
 * only GETs without conditional or range headers share, and only with requests that send the
 * same target, credentials, negotiated formats and client hints. `forwarded`: the headers
 * imgproxy gets for it (the request's context has them), else taken from `req`.
 */
export function coalescingKey(
  req: Request,
  target: string,
  forwarded?: HeaderLookup,
): string | null {
  if (req.method !== "GET") return null;
  // What imgproxy will get: headers named in `Connection` are not forwarded.
  const headers = forwarded ??
    (req.headers.has("connection") ? removeHopByHop(new Headers(req.headers)) : req.headers);
  for (const h of PERSONAL_HEADERS) if (headers.has(h)) return null;
  let key = target + "\n" + variantSuffix(headers.get("accept"));
  for (const h of SHAPING_HEADERS) {
    const v = headers.get(h);
    if (v !== null) key += `\n${h}:${v}`;
  }
  return key;
}

/** True when an answer can be handed to other clients who asked the same thing. */
function shareable(res: Response): boolean {
  if (res.headers.has("set-cookie")) return false;
  const cc = (res.headers.get("cache-control") ?? "").toLowerCase();
  return !/(^|[,\s])private\b/.test(cc);
}

/** Limits of {@linkcode fanOut}. */
export interface FanOutOptions {
  /** Bytes a stream may hold unread before it stops asking for more (default 256 KiB). */
  highWaterMark?: number;
  /** How far (bytes unread) a stream may fall behind before it is failed (default 4 MiB). */
  maxLagBytes?: number;
}

/**
 * Splits one body into `n` streams. Chunks are shared, not copied. The source is read as fast
 * as the fastest stream reads (so the upload and quick clients are not held back by a slow
 * one), and a stream that falls more than `maxLagBytes` behind is failed, so one client that
 * stops reading cannot make the proxy hold a whole body. A stream cancelled by its client only
 * leaves; when all have left, the source is cancelled.
 */
export function fanOut(
  body: ReadableStream<Uint8Array>,
  n: number,
  { highWaterMark = 256 * 1024, maxLagBytes = 4 * 1024 * 1024 }: FanOutOptions = {},
): ReadableStream<Uint8Array>[] {
  const reader = body.getReader();
  const live = new Set<ReadableStreamDefaultController<Uint8Array>>();
  let started = false;
  let wake: (() => void) | null = null;
  const unread = (c: ReadableStreamDefaultController<Uint8Array>) =>
    highWaterMark - (c.desiredSize ?? 0);
  const someoneWants = () => [...live].some((c) => (c.desiredSize ?? 0) > 0);
  const pump = async () => {
    try {
      for (;;) {
        while (live.size > 0 && !someoneWants()) await new Promise<void>((r) => wake = r);
        if (live.size === 0) break;
        const { done, value } = await reader.read();
        if (done) break;
        for (const c of live) {
          if (unread(c) + value.byteLength > maxLagBytes) {
            live.delete(c);
            c.error(new Error(`client fell more than ${maxLagBytes} bytes behind`));
          } else c.enqueue(value);
        }
      }
      if (live.size === 0) await reader.cancel();
      for (const c of live) c.close();
    } catch (err) {
      for (const c of live) c.error(err);
    }
    live.clear();
  };
  const poke = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  return Array.from({ length: n }, () => {
    let self: ReadableStreamDefaultController<Uint8Array>;
    return new ReadableStream<Uint8Array>({
      start(controller) {
        self = controller;
        live.add(controller);
      },
      pull() {
        // Start reading once the first client asks: every stream exists by then.
        if (!started) {
          started = true;
          void pump(); // never rejects: failures go to the streams
        }
        poke();
      },
      cancel(reason) {
        live.delete(self);
        poke();
        if (live.size === 0) return reader.cancel(reason);
      },
    }, new ByteLengthQueuingStrategy({ highWaterMark }));
  });
}

/** Counters of the coalescer (exported as metrics). */
export interface CoalesceStats {
  /** Requests that were answered from another request's upstream answer. */
  coalesced: number;
}

/** Requests waiting for one leader's answer. */
interface Flight {
  followers: PromiseWithResolvers<Response | null>[];
  /** Clients still waiting for the answer (the leader's and its followers'). */
  waiting: number;
  /** Aborts the shared upstream call once nobody waits for it. */
  controller: AbortController;
}

/**
 * Wraps a handler so identical requests that arrive while imgproxy is still working on the
 * first share its answer. Requests whose target could not be mapped are not coalesced.
 *
 * Followers join only until the leader's response headers arrive: that is the expensive part
 * (imgproxy processes the whole image before it answers), and it means no body ever has to be
 * kept for late joiners. A leader nobody joined keeps the plain, native response path.
 */
export function coalesce(
  inner: ContextHandler,
  options: { stats?: CoalesceStats } = {},
): ContextHandler {
  const flights = new Map<string, Flight>();
  return async (ctx) => {
    const { req, target } = ctx;
    const key = target === null || req.method !== "GET"
      ? null
      : coalescingKey(req, target, ctx.forwarded);
    if (key === null) return inner(ctx);
    const signal = ctx.signal;
    const existing = flights.get(key);
    if (existing !== undefined) {
      const waiting = Promise.withResolvers<Response | null>();
      existing.followers.push(waiting);
      existing.waiting++;
      const leave = () => {
        if (--existing.waiting > 0) return;
        if (flights.get(key) === existing) flights.delete(key);
        existing.controller.abort(signal.reason);
      };
      signal.addEventListener("abort", leave, { once: true });
      if (signal.aborted) leave();
      const shared = await waiting.promise.finally(() =>
        signal.removeEventListener("abort", leave)
      );
      if (shared === null) return inner(ctx); // not shareable: ask for ourselves
      if (options.stats) options.stats.coalesced++;
      return shared;
    }
    const flight: Flight = { followers: [], waiting: 1, controller: new AbortController() };
    flights.set(key, flight);
    // imgproxy's work is shared: it stops only when every client waiting for it has gone.
    const leave = () => {
      if (--flight.waiting > 0) return;
      // Nobody waits any more: no new request may join the answer being cancelled.
      if (flights.get(key) === flight) flights.delete(key);
      flight.controller.abort(signal.reason);
    };
    signal.addEventListener("abort", leave, { once: true });
    if (signal.aborted) leave(); // gone before it got here (e.g. during a store lookup)
    let res: Response;
    try {
      // The request made on behalf of every waiting client.
      res = await inner(ctx.shared(flight.controller));
    } catch (err) {
      // Only this flight: a newer one may already hold the key (everyone left this one).
      if (flights.get(key) === flight) flights.delete(key);
      for (const f of flight.followers) f.reject(err);
      throw err;
    } finally {
      signal.removeEventListener("abort", leave);
    }
    // From here on, identical requests start a flight of their own.
    if (flights.get(key) === flight) flights.delete(key);
    const { followers } = flight;
    if (followers.length === 0) return res;
    if (!shareable(res)) {
      for (const f of followers) f.resolve(null);
      return res;
    }
    const init = { status: res.status, statusText: res.statusText, headers: res.headers };
    const bodies = res.body === null ? null : fanOut(res.body, followers.length + 1);
    followers.forEach((f, i) => f.resolve(new Response(bodies?.[i + 1] ?? null, init)));
    return new Response(bodies?.[0] ?? null, init);
  };
}
