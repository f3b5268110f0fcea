/**
 * Collapses concurrent identical requests into one request to imgproxy.
 *
 * N clients asking for the same image at once get one upstream request and one store write;
 * every client gets the full body, streamed as it arrives. A client that goes away only stops
 * its own copy; when every client has gone, the upstream request is cancelled. An upstream
 * failure reaches all of them.
 */
import { variantSuffix } from "./key.ts";
import type { ConnInfo, Handler } from "./proxy.ts";

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
 * same target, credentials, negotiated formats and client hints.
 */
export function coalescingKey(req: Request, target: string): string | null {
  if (req.method !== "GET") return null;
  for (const h of PERSONAL_HEADERS) if (req.headers.has(h)) return null;
  let key = target + "\n" + variantSuffix(req.headers.get("accept"));
  for (const h of SHAPING_HEADERS) {
    const v = req.headers.get(h);
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

interface Subscriber {
  controller: ReadableStreamDefaultController<Uint8Array>;
}

/** One upstream answer being fanned out to the clients that asked for it. */
class Flight {
  readonly subscribers = new Set<Subscriber>();
  /** Chunks so far, kept for clients that join late; dropped past the replay limit. */
  chunks: Uint8Array[] | null = [];
  buffered = 0;
  done = false;
  error: unknown = null;
  reader: ReadableStreamDefaultReader<Uint8Array> | null = null;

  constructor(readonly response: Response, private readonly replayLimit: number) {}

  /** Reads the upstream body once, handing each chunk to every subscriber. */
  async pump(onEnd: () => void): Promise<void> {
    const body = this.response.body;
    try {
      if (body === null) return;
      this.reader = body.getReader();
      for (;;) {
        const { done, value } = await this.reader.read();
        if (done) break;
        if (this.chunks !== null) {
          this.buffered += value.byteLength;
          if (this.buffered > this.replayLimit) {
            this.chunks = null; // too big to replay: no more late joiners
            onEnd();
          } else this.chunks.push(value);
        }
        for (const s of this.subscribers) s.controller.enqueue(value);
      }
      this.done = true;
      for (const s of this.subscribers) s.controller.close();
    } catch (err) {
      this.error = err;
      for (const s of this.subscribers) s.controller.error(err);
    } finally {
      this.subscribers.clear();
      onEnd();
    }
  }

  /** True while a new client can still be given the whole body. */
  get joinable(): boolean {
    return this.chunks !== null && this.error === null;
  }

  /** A new stream of the whole body for one client. */
  subscribe(): ReadableStream<Uint8Array> | null {
    if (this.response.body === null) return null;
    let sub: Subscriber;
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        sub = { controller };
        for (const c of this.chunks ?? []) controller.enqueue(c);
        if (this.done) controller.close();
        else if (this.error !== null) controller.error(this.error);
        else this.subscribers.add(sub);
      },
      cancel: (reason) => {
        this.subscribers.delete(sub);
        // The last client went away: stop imgproxy's work too.
        if (this.subscribers.size === 0 && !this.done) return this.reader?.cancel(reason);
      },
    });
  }
}

/** Counters of the coalescer (exported as metrics). */
export interface CoalesceStats {
  /** Requests that were answered from another request's upstream answer. */
  coalesced: number;
}

/**
 * Wraps a handler so concurrent identical requests share one call of it. `target` extracts
 * the raw request target (null: do not coalesce).
 */
export function coalesce(
  inner: Handler,
  target: (req: Request) => string | null,
  options: { replayLimit: number; stats?: CoalesceStats },
): Handler {
  const flights = new Map<string, Promise<Flight | null>>();
  return async (req: Request, info?: ConnInfo) => {
    const t = target(req);
    const key = t === null ? null : coalescingKey(req, t);
    if (key === null) return inner(req, info);
    const existing = flights.get(key);
    if (existing !== undefined) {
      const flight = await existing.catch(() => null);
      if (flight !== null && flight.joinable) {
        const body = flight.subscribe();
        if (options.stats) options.stats.coalesced++;
        return new Response(body, {
          status: flight.response.status,
          statusText: flight.response.statusText,
          headers: flight.response.headers,
        });
      }
      return inner(req, info);
    }
    const started = Promise.withResolvers<Flight | null>();
    flights.set(key, started.promise);
    const end = () => {
      if (flights.get(key) === started.promise) flights.delete(key);
    };
    let res: Response;
    try {
      res = await inner(req, info);
    } catch (err) {
      end();
      started.reject(err);
      throw err;
    }
    if (!shareable(res)) {
      end();
      started.resolve(null);
      return res;
    }
    const flight = new Flight(res, options.replayLimit);
    started.resolve(flight);
    const body = flight.subscribe();
    void flight.pump(end); // never rejects: failures go to the subscribers
    return new Response(body, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  };
}
