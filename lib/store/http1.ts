/**
 * Requests with a body to one origin over HTTP/1.1 connections of our own, kept open between
 * requests: the request's head and body leave in one write where they fit, the answer is read
 * whole. At a few hundred requests a second this costs the process a fraction of what `fetch`
 * does for the same request (docs/performance.md).
 *
 * A connection is used again only when its answer was read to its end and the server keeps
 * it; idle ones are closed after {@linkcode IDLE_MS} and by {@linkcode Http1Origin.close}. A
 * request that finds a kept connection dead before any byte of its answer arrived is sent
 * once more on a new one (only idempotent requests are sent here).
 */
import { StallWatch, type Watched, withDeadline } from "../timers.ts";
import {
  FIRST_READ_BYTES,
  type FirstRead,
  type Http1Answer,
  NoAnswerError,
  readAnswer,
} from "./http1_read.ts";

export type { Http1Answer } from "./http1_read.ts";

/** How long a connection is kept idle. */
export const IDLE_MS = 4000;
/** The most idle connections kept per origin. */
const IDLE_MAX = 32;
/** A request of at most this many bytes is written in one piece (head and body copied). */
export const ONE_WRITE_MAX = 256 * 1024;

/** Opens a connection to the origin. */
export type Connect = () => Promise<Deno.Conn>;

/**
 * No connection could be opened (nothing was sent): the name did not resolve, its first address
 * refused or did not answer, or TLS failed. `fetch` connects its own way (every address of the
 * name), so a caller may send the same request there.
 */
export class ConnectFailed extends Error {
  constructor(cause: unknown) {
    super(`cannot connect: ${(cause as Error)?.message ?? cause}`, { cause });
    this.name = "ConnectFailed";
  }
}

/** A kept connection between requests. */
class Idle implements Watched {
  since = performance.now();
  /**
   * A read is kept pending while the connection waits: anything it gets before a request is
   * sent (bytes no request asked for, the end, an error) makes the connection unusable, and
   * once the connection is taken, what it gets is the start of the next answer.
   */
  readonly first: FirstRead;
  taken = false;

  constructor(readonly conn: Deno.Conn, readonly origin: Http1Origin) {
    const buf = new Uint8Array(FIRST_READ_BYTES);
    const read = conn.read(buf);
    this.first = { read, buf };
    const unusable = () => {
      if (!this.taken) origin.drop(this);
    };
    read.then(unusable, unusable);
    // Waiting for a request to be sent on it must not keep a finished program up.
    conn.unref();
  }

  stall(): void {
    this.origin.drop(this);
  }
}

const encoder = new TextEncoder();

/** A method or header name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A request target: visible ASCII only (the path is escaped). */
const TARGET = /^[\x21-\x7e]+$/;
/** What a header value may not hold: control characters but tab, and nothing past Latin-1. */
// deno-lint-ignore no-control-regex
const NOT_FIELD_VALUE = /[\0-\x08\x0a-\x1f\x7f\u0100-\uffff]/;
/** A byte past ASCII (obs-text), sent as one byte as fetch sends it, not as UTF-8. */
const HIGH = /[\x80-\xff]/;

/** `text` (checked: nothing past Latin-1) as one byte per character. */
function latin1Bytes(text: string): Uint8Array {
  if (!HIGH.test(text)) return encoder.encode(text);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function closedError(): DOMException {
  return new DOMException("the store's connections are closed", "AbortError");
}

/** Kept connections to one origin. */
export class Http1Origin {
  readonly #idle: Idle[] = [];
  readonly #watch: StallWatch;
  /** Connections in use, each with how its request closes it (once). */
  readonly #busy = new Map<Deno.Conn, () => void>();
  #closed = false;

  /** `idleMs`: how long a connection is kept idle. */
  constructor(readonly connect: Connect, idleMs = IDLE_MS) {
    this.#watch = new StallWatch(idleMs);
  }

  /**
   * Sends `method target` with `headers` (sent as given: they must include `host` and
   * `content-length`) and `body`; the answer's body is read up to `bodyMax` bytes. Rejects
   * with `signal`'s reason when it aborts, and with the connection's error when it fails.
   */
  async request(
    method: string,
    target: string,
    headers: Record<string, string>,
    body: Uint8Array,
    bodyMax: number,
    signal?: AbortSignal,
  ): Promise<Http1Answer> {
    signal?.throwIfAborted();
    // What fetch refuses (TypeError) is refused here too: nothing may split the head.
    if (!TOKEN.test(method) || !TARGET.test(target)) {
      throw new TypeError(`invalid request line: ${JSON.stringify(`${method} ${target}`)}`);
    }
    let head = `${method} ${target} HTTP/1.1\r\n`;
    for (const name in headers) {
      const value = headers[name]!;
      if (!TOKEN.test(name) || NOT_FIELD_VALUE.test(value)) {
        throw new TypeError(`invalid header: ${JSON.stringify(name)}`);
      }
      head += `${name}: ${value}\r\n`;
    }
    head += "\r\n";
    const bytes = latin1Bytes(head);
    let request: Uint8Array[];
    if (bytes.byteLength + body.byteLength <= ONE_WRITE_MAX) {
      const one = new Uint8Array(bytes.byteLength + body.byteLength);
      one.set(bytes);
      one.set(body, bytes.byteLength);
      request = [one];
    } else {
      request = [bytes, body];
    }
    const kept = this.#take();
    if (kept !== undefined) {
      try {
        return await this.#exchange(kept.conn, request, bodyMax, signal, kept.first);
      } catch (err) {
        // A kept connection the server closed while idle: the request was not seen.
        if (signal?.aborted || !(err instanceof NoAnswerError)) throw err;
      }
    }
    const conn = await this.#open(signal);
    return await this.#exchange(conn, request, bodyMax, signal);
  }

  async #open(signal?: AbortSignal): Promise<Deno.Conn> {
    // A cancelled call: nothing is sent once the store is closed.
    if (this.#closed) throw closedError();
    signal?.throwIfAborted();
    const opening = this.connect().catch((err) => {
      throw new ConnectFailed(err);
    });
    if (signal === undefined) return await opening;
    // A connection opened after the abort is closed unused.
    return await withDeadline(opening, signal, (late) => late.close());
  }

  async #exchange(
    conn: Deno.Conn,
    request: Uint8Array[],
    bodyMax: number,
    signal?: AbortSignal,
    first?: FirstRead,
  ): Promise<Http1Answer> {
    let open = true;
    const close = () => {
      if (open) {
        open = false;
        this.#busy.delete(conn);
        conn.close();
      }
    };
    this.#busy.set(conn, close);
    // Closing the connection ends its pending write or read.
    signal?.addEventListener("abort", close, { once: true });
    // An abort, or the store's close, that came while the connection was being opened or
    // handed over fired before the listener was there: nothing is sent.
    if (signal?.aborted || this.#closed) {
      signal?.removeEventListener("abort", close);
      close();
      throw signal?.aborted ? signal.reason : closedError();
    }
    try {
      try {
        for (const part of request) {
          for (let at = 0; at < part.byteLength;) {
            at += await conn.write(at === 0 ? part : part.subarray(at));
          }
        }
      } catch (err) {
        // The server may have read part of the request; it has answered nothing.
        throw new NoAnswerError(err);
      }
      const answer = await readAnswer(conn, bodyMax, first);
      signal?.removeEventListener("abort", close);
      if (answer.reusable && open && !this.#closed) {
        this.#busy.delete(conn);
        this.#keep(conn);
      } else {
        close();
      }
      return answer;
    } catch (err) {
      signal?.removeEventListener("abort", close);
      close();
      if (signal?.aborted) throw signal.reason;
      // Ended by the store's close, not by the server.
      if (this.#closed) throw closedError();
      throw err;
    }
  }

  #take(): Idle | undefined {
    const idle = this.#idle.pop();
    if (idle === undefined) return undefined;
    this.#watch.unwatch(idle);
    idle.taken = true;
    idle.conn.ref();
    return idle;
  }

  #keep(conn: Deno.Conn): void {
    if (this.#idle.length >= IDLE_MAX) {
      conn.close();
      return;
    }
    const idle = new Idle(conn, this);
    this.#idle.push(idle);
    this.#watch.watch(idle);
  }

  /** Closes an idle connection (idle too long). */
  drop(idle: Idle): void {
    const i = this.#idle.indexOf(idle);
    if (i < 0) return;
    this.#idle.splice(i, 1);
    this.#watch.unwatch(idle);
    idle.conn.close();
  }

  /** Closes every connection: idle ones now, busy ones (their requests fail) too. */
  close(): void {
    this.#closed = true;
    for (const idle of this.#idle.splice(0)) {
      this.#watch.unwatch(idle);
      idle.conn.close();
    }
    // Each closed once, as its request would: a second close throws (in an abort listener, an
    // uncaught error).
    for (const close of [...this.#busy.values()]) close();
  }
}
