/**
 * Reading one HTTP/1.1 answer from a connection: the status line, the headers, and a body
 * delimited by Content-Length, by chunked transfer coding, or by the end of the connection.
 * Informational (1xx) answers before the final one are skipped.
 */

/** The most of a head read (status line and headers): S3's are about a kilobyte. */
const HEAD_MAX = 64 * 1024;

/** One final answer, its body read whole (up to the limit given). */
export interface Http1Answer {
  status: number;
  statusText: string;
  headers: Headers;
  body: Uint8Array;
  /** The connection is at the start of the next answer and the server keeps it open. */
  reusable: boolean;
}

/** The connection ended before the answer's first byte: the request may not have been seen. */
export class NoAnswerError extends Error {
  constructor(cause?: unknown) {
    super(
      cause === undefined
        ? "connection closed before any answer"
        : `connection failed before any answer: ${(cause as Error)?.message ?? cause}`,
      { cause },
    );
    this.name = "ConnectionClosed";
  }
}

/** How much the read kept pending on an idle connection asks for. */
export const FIRST_READ_BYTES = 16 * 1024;

/** A read already made on the connection (into the start of `buf`): the answer's first bytes. */
export interface FirstRead {
  read: Promise<number | null>;
  buf: Uint8Array;
}

/** Buffered reads from a connection. */
class Bytes {
  buf: Uint8Array;
  start = 0;
  end = 0;
  /** Bytes read from the connection so far. */
  total = 0;
  #first: Promise<number | null> | undefined;

  constructor(readonly conn: Deno.Conn, first?: FirstRead) {
    this.buf = first?.buf ?? new Uint8Array(FIRST_READ_BYTES);
    this.#first = first?.read;
  }

  /** Reads more; false at the end of the connection. */
  async fill(): Promise<boolean> {
    if (this.start === this.end) this.start = this.end = 0;
    else if (this.end === this.buf.byteLength) {
      if (this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        const bigger = new Uint8Array(this.buf.byteLength * 2);
        bigger.set(this.buf);
        this.buf = bigger;
      }
      this.end -= this.start;
      this.start = 0;
    }
    let n: number | null;
    try {
      const first = this.#first;
      this.#first = undefined;
      // The pending read fills the empty buffer it was given.
      n = await (first ?? this.conn.read(this.buf.subarray(this.end)));
    } catch (err) {
      throw this.total === 0 ? new NoAnswerError(err) : err;
    }
    if (n === null) return false;
    this.end += n;
    this.total += n;
    return true;
  }

  /** The next line (without CRLF) as Latin-1 text, at most `max` bytes long. */
  async line(max: number): Promise<string> {
    let from = this.start;
    for (;;) {
      const i = this.buf.subarray(from, this.end).indexOf(10);
      if (i >= 0) {
        const nl = from + i;
        const text = latin1(
          this.buf.subarray(this.start, nl > this.start && this.buf[nl - 1] === 13 ? nl - 1 : nl),
        );
        this.start = nl + 1;
        return text;
      }
      if (this.end - this.start > max) throw new Error("answer line too long");
      from = this.end;
      if (!(await this.fill())) {
        throw this.total === 0 ? new NoAnswerError() : new Error("connection closed mid-answer");
      }
    }
  }

  /** Up to `n` bytes into `into` at `at`; resolves with how many (0 at the end). */
  async take(into: Uint8Array, at: number, n: number): Promise<number> {
    if (this.start === this.end && !(await this.fill())) return 0;
    const k = Math.min(n, this.end - this.start);
    into.set(this.buf.subarray(this.start, this.start + k), at);
    this.start += k;
    return k;
  }
}

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return s;
}

/**
 * Reads the answer to a request (not HEAD) from `conn`, beginning with `first` when a read was
 * already pending; its body at most `bodyMax` bytes (an answer longer than that is cut there, and
 * its connection not reusable).
 */
export async function readAnswer(
  conn: Deno.Conn,
  bodyMax: number,
  first?: FirstRead,
): Promise<Http1Answer> {
  const r = new Bytes(conn, first);
  let status: number;
  let statusText: string;
  let version: string;
  let headers: Headers;
  for (;;) {
    const line = await r.line(HEAD_MAX);
    const m = /^HTTP\/(1\.[01]) (\d{3})(?: (.*))?$/.exec(line);
    if (m === null) throw new Error(`not an HTTP/1.1 answer: ${JSON.stringify(line.slice(0, 40))}`);
    version = m[1]!;
    status = Number(m[2]);
    statusText = m[3] ?? "";
    headers = new Headers();
    let size = line.length;
    for (;;) {
      const h = await r.line(HEAD_MAX);
      if (h === "") break;
      size += h.length;
      if (size > HEAD_MAX) throw new Error("answer head too large");
      const colon = h.indexOf(":");
      if (colon <= 0) throw new Error(`malformed header line: ${JSON.stringify(h.slice(0, 40))}`);
      headers.append(h.slice(0, colon), h.slice(colon + 1).trim());
    }
    // 100 Continue and other informational answers precede the final one.
    if (status >= 200 || status === 101) break;
  }
  const connection = headers.get("connection")?.toLowerCase() ?? "";
  let keep = version === "1.1" ? !connection.includes("close") : connection.includes("keep-alive");
  let body: Uint8Array;
  const coding = headers.get("transfer-encoding");
  const length = headers.get("content-length");
  if (status === 204 || status === 304 || status === 101) {
    body = new Uint8Array(0);
    if (status === 101) keep = false;
  } else if (coding !== null) {
    if (!/(?:^|,)\s*chunked\s*$/i.test(coding)) {
      // Another coding last: the body runs to the end of the connection.
      keep = false;
      body = await untilEnd(r, bodyMax);
    } else {
      const read = await chunked(r, bodyMax);
      body = read.body;
      keep &&= read.whole;
    }
  } else if (length !== null) {
    if (!/^\d{1,15}$/.test(length)) throw new Error(`malformed content-length: ${length}`);
    const n = Number(length);
    body = new Uint8Array(Math.min(n, bodyMax));
    let at = 0;
    while (at < body.byteLength) {
      const k = await r.take(body, at, body.byteLength - at);
      if (k === 0) throw new Error("connection closed mid-body");
      at += k;
    }
    keep &&= n <= bodyMax;
  } else {
    keep = false;
    body = await untilEnd(r, bodyMax);
  }
  // Bytes past the answer (nothing was asked for them) leave the connection unusable.
  keep &&= r.start === r.end;
  return { status, statusText, headers, body, reusable: keep };
}

async function untilEnd(r: Bytes, max: number): Promise<Uint8Array> {
  const body = new Uint8Array(max);
  let at = 0;
  while (at < max) {
    const k = await r.take(body, at, max - at);
    if (k === 0) break;
    at += k;
  }
  return body.subarray(0, at);
}

/** A chunked body, at most `max` bytes of it; `whole` when read to its last chunk. */
async function chunked(r: Bytes, max: number): Promise<{ body: Uint8Array; whole: boolean }> {
  let body = new Uint8Array(0);
  for (;;) {
    const sizeLine = await r.line(1024);
    const m = /^([0-9a-fA-F]{1,12})\s*(?:;.*)?$/.exec(sizeLine);
    if (m === null) {
      throw new Error(`malformed chunk size: ${JSON.stringify(sizeLine.slice(0, 40))}`);
    }
    const size = parseInt(m[1]!, 16);
    if (size === 0) {
      // Trailer fields, if any, then the empty line.
      while ((await r.line(HEAD_MAX)) !== "");
      return { body, whole: true };
    }
    if (body.byteLength + size > max) return { body, whole: false };
    const grown = new Uint8Array(body.byteLength + size);
    grown.set(body);
    let at = body.byteLength;
    while (at < grown.byteLength) {
      const k = await r.take(grown, at, grown.byteLength - at);
      if (k === 0) throw new Error("connection closed mid-body");
      at += k;
    }
    body = grown;
    if ((await r.line(2)) !== "") throw new Error("malformed chunk end");
  }
}
