/**
 * Shared machinery of the end-to-end suite: real processes (versitygw, imgproxy or its
 * stand-in, entrypoint.sh, the proxy) over real sockets, every wait bounded, every child
 * killed and awaited. The tests import it all from here: children (child.ts), which imgproxy
 * (imgproxy_choice.ts), versitygw (versitygw.ts), and below, the source server, the delaying
 * relay and image helpers.
 */
import { md5Hex } from "../../lib/key.ts";
import { freePort } from "../../tests/support/net_fs.ts";
import { ROOT, sleep } from "./child.ts";

export * from "./child.ts";
export * from "./imgproxy_choice.ts";
export * from "./versitygw.ts";
export { freePort };

export const FIXTURES = `${ROOT}/e2e/fixtures`;

// ---------------------------------------------------------------------------------------------
// Source images and a delaying TCP relay

/**
 * Serves e2e/fixtures over HTTP on 127.0.0.1 (the sources imgproxy fetches): `/NAME` is the
 * fixture, `/status/NNN/NAME` answers status NNN, `/cache-control/N/NAME` is the fixture with
 * `Cache-Control: max-age=N, public` (`/cache-control/no-store/NAME`: `no-store`), and
 * `/validators/NAME` is the fixture with an ETag and a Last-Modified, answering a matching
 * `If-None-Match` or a not-older `If-Modified-Since` with 304.
 */
export const SOURCE_LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT";

export class SourceServer {
  readonly requests: string[] = [];
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  readonly base: string;

  constructor() {
    const types: Record<string, string> = { jpg: "image/jpeg", png: "image/png" };
    this.server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      async (req) => {
        const path = new URL(req.url).pathname;
        this.requests.push(path);
        const status = /^\/status\/(\d{3})\//.exec(path);
        if (status) return new Response(`status ${status[1]}`, { status: Number(status[1]) });
        const cc = /^\/cache-control\/(\d+|no-store)(\/.*)$/.exec(path);
        const extra: Record<string, string> = cc
          ? { "cache-control": cc[1] === "no-store" ? "no-store" : `max-age=${cc[1]}, public` }
          : {};
        const validated = /^\/validators(\/.*)$/.exec(path);
        const name = (cc?.[2] ?? validated?.[1] ?? path).slice(1);
        if (validated) {
          const v = { etag: `"v1-${name}"`, "last-modified": SOURCE_LAST_MODIFIED };
          const ims = Date.parse(req.headers.get("if-modified-since") ?? "");
          if (
            req.headers.get("if-none-match") === v.etag ||
            (!req.headers.has("if-none-match") && ims >= Date.parse(SOURCE_LAST_MODIFIED))
          ) {
            return new Response(null, { status: 304, headers: v });
          }
          Object.assign(extra, v);
        }
        if (!/^[a-z0-9_-]+\.(jpg|png)$/.test(name)) {
          return new Response("not found", {
            status: 404,
          });
        }
        try {
          const body = await Deno.readFile(`${FIXTURES}/${name}`);
          return new Response(body, {
            headers: { "content-type": types[name.split(".")[1]!]!, ...extra },
          });
        } catch {
          return new Response("not found", { status: 404 });
        }
      },
    );
    this.base = `http://127.0.0.1:${this.server.addr.port}`;
  }

  close(): Promise<void> {
    return this.server.shutdown();
  }
}

/**
 * A TCP relay in front of a server that holds back every chunk the server sends for `delayMs`
 * (so S3 answers arrive late, keeping uploads pending). Requests pass at once.
 */
export class DelayRelay {
  readonly listener: Deno.Listener;
  readonly port: number;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;

  constructor(readonly target: number, readonly delayMs: number) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#accepting = (async () => {
      try {
        for await (const conn of listener) this.#track(this.#relay(conn));
      } catch {
        // listener closed
      }
    })();
  }

  #track(p: Promise<void>) {
    this.#tasks.add(p);
    p.finally(() => this.#tasks.delete(p));
  }

  async #relay(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: this.target });
    } catch {
      client.close();
      return;
    }
    this.#conns.add(client);
    this.#conns.add(server);
    const pipe = async (from: Deno.Conn, to: Deno.Conn, delay: number) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          const chunk = buf.slice(0, n);
          if (delay > 0) await sleep(delay);
          let off = 0;
          while (off < chunk.length) off += await to.write(chunk.subarray(off));
        }
      } catch {
        // either side closed
      }
      try {
        to.closeWrite();
      } catch {
        // closed
      }
    };
    await Promise.all([pipe(client, server, 0), pipe(server, client, this.delayMs)]);
    for (const c of [client, server]) {
      this.#conns.delete(c);
      try {
        c.close();
      } catch {
        // closed
      }
    }
  }

  async close(): Promise<void> {
    this.listener.close();
    await this.#accepting;
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
    await Promise.all([...this.#tasks]);
  }
}

// ---------------------------------------------------------------------------------------------
// Images

/** Format and size read from an image's header (PNG, JPEG, WebP, AVIF). */
export function imageInfo(b: Uint8Array): { format: string; width: number; height: number } {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ascii = (o: number, n: number) => String.fromCharCode(...b.subarray(o, o + n));
  if (b[0] === 0x89 && ascii(1, 3) === "PNG") {
    return { format: "png", width: dv.getUint32(16), height: dv.getUint32(20) };
  }
  if (b[0] === 0xff && b[1] === 0xd8) {
    let o = 2;
    while (o + 9 < b.length) {
      if (b[o] !== 0xff) throw new Error(`bad JPEG marker at ${o}`);
      const marker = b[o + 1]!;
      const len = dv.getUint16(o + 2);
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return { format: "jpeg", height: dv.getUint16(o + 5), width: dv.getUint16(o + 7) };
      }
      o += 2 + len;
    }
    throw new Error("JPEG without a frame header");
  }
  if (ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") {
    const kind = ascii(12, 4);
    if (kind === "VP8 ") {
      return {
        format: "webp",
        width: dv.getUint16(26, true) & 0x3fff,
        height: dv.getUint16(28, true) & 0x3fff,
      };
    }
    if (kind === "VP8L") {
      const bits = dv.getUint32(21, true);
      return { format: "webp", width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
    }
    if (kind === "VP8X") {
      const w = 1 + (b[24]! | b[25]! << 8 | b[26]! << 16);
      const h = 1 + (b[27]! | b[28]! << 8 | b[29]! << 16);
      return { format: "webp", width: w, height: h };
    }
  }
  if (ascii(4, 4) === "ftyp" && ["avif", "avis"].includes(ascii(8, 4))) {
    // The size is in the first `ispe` (image spatial extents) property: version/flags, w, h.
    for (let o = 12; o + 16 <= b.length; o++) {
      if (ascii(o, 4) === "ispe") {
        return { format: "avif", width: dv.getUint32(o + 8), height: dv.getUint32(o + 12) };
      }
    }
    throw new Error("AVIF without an ispe box");
  }
  throw new Error(`unknown image format (first bytes ${[...b.subarray(0, 12)].join(",")})`);
}

/** The object key the proxy uses for a raw path. */
export const keyOf = (path: string, suffix = "") => md5Hex(path) + suffix;

/** Fetches and returns status, headers and the whole body. */
export async function get(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: Uint8Array }> {
  const res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(20_000) });
  const body = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body };
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}
