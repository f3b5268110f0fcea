/**
 * A TCP server on 127.0.0.1 that records each HTTP/1.1 request exactly as it arrived on the
 * socket (request line, header lines in order and case, body) and answers each with a fixed
 * response, then closes the connection.
 */

/** One request as received. */
export interface Captured {
  /** The request line's bytes, e.g. `GET /b/k HTTP/1.1`. */
  requestLine: string;
  /** Header lines as sent: [name as sent, value]. */
  headers: [string, string][];
  body: Uint8Array;
}

/** A running capture server. */
export interface CaptureServer {
  port: number;
  requests: Captured[];
  close(): Promise<void>;
}

const CRLF2 = [13, 10, 13, 10];

function indexOfEnd(buf: Uint8Array, n: number): number {
  outer: for (let i = 0; i + 4 <= n; i++) {
    for (let j = 0; j < 4; j++) if (buf[i + j] !== CRLF2[j]) continue outer;
    return i;
  }
  return -1;
}

/** Starts a capture server answering every request with `response` (raw HTTP/1.1 bytes). */
export function startCapture(response: (req: Captured) => string): CaptureServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: Captured[] = [];
  const conns = new Set<Deno.Conn>();
  const handle = async (conn: Deno.Conn) => {
    conns.add(conn);
    try {
      let buf = new Uint8Array(64 * 1024);
      let n = 0;
      let end = -1;
      while (end === -1) {
        if (n === buf.length) {
          const bigger = new Uint8Array(buf.length * 2);
          bigger.set(buf);
          buf = bigger;
        }
        const r = await conn.read(buf.subarray(n));
        if (r === null) return;
        n += r;
        end = indexOfEnd(buf, n);
      }
      const head = new TextDecoder("latin1").decode(buf.subarray(0, end));
      const [requestLine, ...lines] = head.split("\r\n");
      const headers = lines.map((l): [string, string] => {
        const i = l.indexOf(":");
        return [l.slice(0, i), l.slice(i + 1).trim()];
      });
      const length = Number(
        headers.find(([k]) => k.toLowerCase() === "content-length")?.[1] ?? "0",
      );
      const body = new Uint8Array(length);
      let got = Math.min(length, n - end - 4);
      body.set(buf.subarray(end + 4, end + 4 + got));
      while (got < length) {
        const r = await conn.read(body.subarray(got));
        if (r === null) break;
        got += r;
      }
      const captured = { requestLine: requestLine!, headers, body };
      requests.push(captured);
      const out = new TextEncoder().encode(response(captured));
      for (let w = 0; w < out.length;) w += await conn.write(out.subarray(w));
    } catch {
      /* the client went away */
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const served = (async () => {
    for await (const conn of listener) void handle(conn);
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    requests,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await served;
    },
  };
}
