/**
 * A stand-in imgproxy for integration tests, served with `Deno.serve` on 127.0.0.1, port 0.
 *
 * It answers like imgproxy does: `/health`, the landing page,
 * `/favicon.ico`, HEAD/OPTIONS 200 with a one-space text/plain body (as imgproxy 4.0.12 sends), other methods 404, and processing paths
 * `/{signature}/{options...}/plain/{source}[@ext]` or `/{signature}/{options...}/{base64}[.ext]`
 * with deterministic bytes derived from the path. Special words in the source select failures
 * and stream shapes:
 *
 * | source contains | answer |
 * |---|---|
 * | `missing` | 404 "Invalid URL" (v4 passes the source 4xx), or the fallback image when set |
 * | `broken` | 422 |
 * | `fail500` | 502 (v4: source answered 5xx) |
 * | `notmod` | 304, no body |
 * | `nostore` / `private` / `nocache` | `Cache-Control: no-store` / `private` / `no-cache` |
 * | `cookie` | two `Set-Cookie` headers |
 * | `slowhead` | headers after `slowHeadersMs` |
 * | `slowbody` | `slowChunks` chunks `slowChunkMs` apart (Content-Length set) |
 * | `cut` | Content-Length announced, half the body sent, connection closed (with `chunked` too: no Content-Length) |
 * | `chunked` | no Content-Length (chunked transfer), several chunks |
 * | `large` | `largeBytes` bytes |
 * | `hop` | hop-by-hop response headers (`Connection: x-hop-resp`, `Keep-Alive`...) |
 *
 * Every request is recorded with its raw request target and headers.
 */
import { createHmac } from "node:crypto";
import { rawTarget } from "../../lib/context.ts";

/** Settings of the stand-in, mirroring imgproxy's environment variables. */
export interface FakeImgproxyOptions {
  /** IMGPROXY_KEY / IMGPROXY_SALT, hex. Both or neither. */
  key?: string;
  salt?: string;
  /** IMGPROXY_SECRET: demands `Authorization: Bearer <secret>`. */
  secret?: string;
  /** IMGPROXY_AUTO_WEBP + IMGPROXY_AUTO_AVIF: `Vary: Accept` and format negotiation. */
  varyAccept?: boolean;
  /** IMGPROXY_TTL (default 31536000). */
  ttl?: number;
  /** IMGPROXY_FALLBACK_IMAGE_DATA (its bytes) and IMGPROXY_FALLBACK_IMAGE_TTL. */
  fallback?: { bytes: Uint8Array; ttl?: number };
  /** Delay before the headers of a `slowhead` source (default 2000 ms). */
  slowHeadersMs?: number;
  /** Chunks of a `slowbody` answer and the pause before each (default 5 × 150 ms). */
  slowChunks?: number;
  slowChunkMs?: number;
  /** Size of a `large` answer (default 3 MiB). */
  largeBytes?: number;
  /** `/health` answers 500 when false. */
  healthy?: boolean;
}

/** One request the stand-in received. */
export interface RecordedRequest {
  method: string;
  /** The request target exactly as it arrived (path and query). */
  target: string;
  headers: Headers;
}

/** The running stand-in. */
export interface FakeImgproxy {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Bodies whose stream the client (the proxy) cancelled, by target. */
  cancelled: string[];
  /** The targets whose body was fully handed over. */
  completed: string[];
  /** `slowhead` requests whose client (the proxy) gave up before the headers, by target. */
  abandoned: string[];
  /** Waits until a body for a target containing `text` is cancelled (or `ms` passes). */
  waitCancelled(text: string, ms?: number): Promise<boolean>;
  /** Waits until a request for a target containing `text` is abandoned (or `ms` passes). */
  waitAbandoned(text: string, ms?: number): Promise<boolean>;
  /** Waits until a request for a target containing `text` has arrived (or `ms` passes). */
  waitRequested(text: string, ms?: number): Promise<boolean>;
  close(): Promise<void>;
}

const encoder = new TextEncoder();

/** Deterministic bytes for a path: a repeated digest-derived pattern of `size` bytes. */
export function imageBytes(seed: string, size = 2048): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  const h = createHmac("sha256", "fake-imgproxy").update(seed).digest();
  for (let i = 0; i < size; i++) out[i] = (h[i % h.length]! + Math.floor(i / h.length)) & 0xff;
  return out;
}

/** Signs a path (the part after the signature segment) like imgproxy: see the facts file. */
export function signPath(keyHex: string, saltHex: string, path: string, size = 32): string {
  const mac = createHmac("sha256", Buffer.from(keyHex, "hex"));
  mac.update(Buffer.concat([Buffer.from(saltHex, "hex"), Buffer.from(path, "utf8")]));
  return mac.digest().subarray(0, size).toString("base64url");
}

const TYPES: Record<string, string> = {
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  avif: "image/avif",
  gif: "image/gif",
  svg: "image/svg+xml",
};

function textResponse(status: number, text: string, extra: Record<string, string> = {}) {
  return new Response(text, { status, headers: { "content-type": "text/plain", ...extra } });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts the stand-in imgproxy. */
export function startFakeImgproxy(options: FakeImgproxyOptions = {}): FakeImgproxy {
  const requests: RecordedRequest[] = [];
  const cancelled: string[] = [];
  const completed: string[] = [];
  const abandoned: string[] = [];
  const ttl = options.ttl ?? 31536000;
  let requestId = 0;

  const common = (): Record<string, string> => ({
    server: "imgproxy",
    "x-request-id": `fake-${++requestId}`,
  });

  function stream(
    target: string,
    bytes: Uint8Array,
    pieces: number,
    pauseMs: number,
    cutAt: number | null,
  ): ReadableStream<Uint8Array> {
    let i = 0;
    const size = Math.ceil(bytes.byteLength / pieces);
    return new ReadableStream<Uint8Array>({
      async pull(c) {
        if (pauseMs > 0) await sleep(pauseMs);
        const start = i * size;
        if (cutAt !== null && start >= cutAt) {
          // Close early: the server sees fewer bytes than Content-Length and drops the
          // connection, as a crashed or killed imgproxy would.
          c.error(new Error("fake imgproxy: body cut on purpose"));
          return;
        }
        if (start >= bytes.byteLength) {
          completed.push(target);
          c.close();
          return;
        }
        c.enqueue(bytes.subarray(start, Math.min(start + size, bytes.byteLength)));
        i++;
      },
      cancel() {
        cancelled.push(target);
      },
    }, { highWaterMark: 0 });
  }

  async function handle(req: Request): Promise<Response> {
    const target = rawTarget(req) ?? "?";
    requests.push({ method: req.method, target, headers: new Headers(req.headers) });
    await req.body?.cancel();
    const path = target.split("?")[0]!;
    if (req.method === "HEAD" || req.method === "OPTIONS") {
      // imgproxy 4.0.12 (seen): 200, text/plain, a one-space body, a public Cache-Control,
      // with no processing and no signature check. (HEAD's body is dropped on the wire.)
      return textResponse(200, " ", {
        ...common(),
        "cache-control": "max-age=31536000, public",
      });
    }
    if (req.method !== "GET") return textResponse(404, " ", common());
    if (path === "/health") {
      const ok = options.healthy ?? true;
      return textResponse(ok ? 200 : 500, ok ? "imgproxy is running" : "Error", {
        ...common(),
        "cache-control": "no-cache",
      });
    }
    if (path === "/") {
      return new Response("<!doctype html><title>imgproxy</title>", {
        headers: { ...common(), "content-type": "text/html" },
      });
    }
    if (path === "/favicon.ico") return textResponse(404, "Not found", common());
    if (options.secret !== undefined) {
      if (req.headers.get("authorization") !== `Bearer ${options.secret}`) {
        return textResponse(403, "Forbidden", common());
      }
    }
    const segments = path.slice(1).split("/");
    const signature = segments[0] ?? "";
    const rest = path.slice(1 + signature.length);
    if (signature === "") return textResponse(404, "Invalid URL", common());
    if (options.key !== undefined && options.salt !== undefined) {
      if (signPath(options.key, options.salt, rest) !== signature) {
        return textResponse(403, "Forbidden", common());
      }
    }
    // Options contain ":"; the first segment without one starts the source.
    let i = 1;
    while (i < segments.length && segments[i]!.includes(":")) i++;
    let source: string;
    let ext: string | undefined;
    if (segments[i] === "plain") {
      source = segments.slice(i + 1).join("/");
      const at = source.lastIndexOf("@");
      if (at !== -1) [source, ext] = [source.slice(0, at), source.slice(at + 1)];
    } else {
      let b64 = segments.slice(i).join("");
      const dot = b64.lastIndexOf(".");
      if (dot !== -1) [b64, ext] = [b64.slice(0, dot), b64.slice(dot + 1)];
      if (!/^[A-Za-z0-9_-]*=*$/.test(b64)) return textResponse(403, "Invalid URL", common());
      source = Buffer.from(b64.replace(/=+$/, ""), "base64url").toString("utf8");
    }
    if (source === "") return textResponse(404, "Invalid URL", common());

    let type = ext === undefined ? "image/jpeg" : TYPES[ext.toLowerCase()];
    if (type === undefined) return textResponse(404, "Invalid URL", common());
    const headers: Record<string, string> = {
      ...common(),
      "cache-control": `max-age=${ttl}, public`,
      "content-security-policy": "script-src 'none'",
    };
    if (options.varyAccept) {
      headers["vary"] = "Accept";
      const accept = req.headers.get("accept") ?? "";
      if (accept.includes("image/avif")) type = "image/avif";
      else if (accept.includes("image/webp")) type = "image/webp";
    }
    const format = type.slice("image/".length);

    if (source.includes("missing")) {
      if (options.fallback !== undefined) {
        const fttl = options.fallback.ttl ?? ttl;
        return new Response(options.fallback.bytes.slice(), {
          headers: {
            ...headers,
            "content-type": "image/png",
            "cache-control": `max-age=${fttl}, public`,
            "content-disposition": 'inline; filename="fallback.png"',
          },
        });
      }
      return textResponse(404, "Invalid URL", common());
    }
    if (source.includes("broken")) {
      return textResponse(422, "Broken or unsupported image", common());
    }
    if (source.includes("fail500")) return textResponse(502, "Source answered 500", common());
    if (source.includes("notmod")) return new Response(null, { status: 304, headers: common() });
    if (source.includes("nostore")) headers["cache-control"] = "no-store";
    if (source.includes("private")) headers["cache-control"] = "max-age=60, private";
    if (source.includes("nocache")) headers["cache-control"] = "no-cache";
    if (source.includes("slowhead")) {
      // Like imgproxy, stop working on a request whose client has gone.
      const gone = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          req.signal.removeEventListener("abort", left);
          resolve(false);
        }, options.slowHeadersMs ?? 2000);
        const left = () => {
          clearTimeout(timer);
          resolve(true);
        };
        req.signal.addEventListener("abort", left, { once: true });
      });
      if (gone) {
        abandoned.push(target);
        return textResponse(499, "Client Closed Request", common());
      }
    }

    const size = source.includes("large") ? options.largeBytes ?? 3 << 20 : 2048;
    const bytes = imageBytes(`${path}|${format}`, size);
    headers["content-type"] = type;
    headers["content-disposition"] = `inline; filename="image.${format}"`;
    const res = (body: BodyInit, withLength: boolean) => {
      const h = new Headers(headers);
      if (withLength) h.set("content-length", String(bytes.byteLength));
      if (source.includes("hop")) {
        // Hop-by-hop headers a proxy must not pass on (one named by Connection).
        h.set("connection", "x-hop-resp");
        h.set("x-hop-resp", "1");
        h.set("keep-alive", "timeout=99");
        h.set("proxy-authenticate", "Basic");
      }
      if (source.includes("cookie")) {
        h.append("set-cookie", "a=1; Path=/");
        h.append("set-cookie", "b=2; Path=/");
      }
      return new Response(body, { headers: h });
    };
    if (source.includes("cut")) {
      return res(stream(target, bytes, 4, 0, bytes.byteLength / 2), !source.includes("chunked"));
    }
    if (source.includes("chunked")) return res(stream(target, bytes, 4, 5, null), false);
    if (source.includes("slowbody")) {
      return res(
        stream(target, bytes, options.slowChunks ?? 5, options.slowChunkMs ?? 150, null),
        true,
      );
    }
    if (size > 65536) return res(stream(target, bytes, 16, 0, null), true);
    completed.push(target);
    return res(bytes, true);
  }

  const server = Deno.serve({
    port: 0,
    hostname: "127.0.0.1",
    onListen() {},
    onError(err) {
      return textResponse(500, `fake imgproxy failed: ${err}`);
    },
  }, handle);
  const port = server.addr.port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    cancelled,
    abandoned,
    completed,
    waitCancelled: (text, ms) => waitUntil(() => cancelled.some((t) => t.includes(text)), ms),
    waitAbandoned: (text, ms) => waitUntil(() => abandoned.some((t) => t.includes(text)), ms),
    waitRequested: (text, ms) => waitUntil(() => requests.some((r) => r.target.includes(text)), ms),
    async close() {
      await server.shutdown();
      await server.finished;
    },
  };
}

/** Raw HTTP/1.1 exchange over TCP: sends `head` (request line + headers) and reads to close. */
export async function rawRequest(
  port: number,
  requestLine: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; head: string; headers: Headers; body: Uint8Array }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let text = requestLine + "\r\n";
  const all = { host: `127.0.0.1:${port}`, connection: "close", ...headers };
  for (const [k, v] of Object.entries(all)) text += `${k}: ${v}\r\n`;
  await writeAll(conn, encoder.encode(text + "\r\n"));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
  } finally {
    conn.close();
  }
  const bytes = concat(chunks);
  const end = indexOf(bytes, encoder.encode("\r\n\r\n"));
  const head = new TextDecoder().decode(bytes.subarray(0, end));
  const [statusLine, ...lines] = head.split("\r\n");
  const out = new Headers();
  for (const line of lines) {
    const c = line.indexOf(":");
    out.append(line.slice(0, c).trim(), line.slice(c + 1).trim());
  }
  let body = bytes.subarray(end + 4);
  if ((out.get("transfer-encoding") ?? "").includes("chunked")) body = dechunk(body);
  return { status: Number(statusLine!.split(" ")[1]), head, headers: out, body };
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) off += await conn.write(data.subarray(off));
}

/** Concatenates byte arrays. */
export function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function dechunk(data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let off = 0;
  const crlf = encoder.encode("\r\n");
  for (;;) {
    const rel = indexOf(data.subarray(off), crlf);
    if (rel === -1) break;
    const size = parseInt(new TextDecoder().decode(data.subarray(off, off + rel)), 16);
    off += rel + 2;
    if (!(size > 0)) break;
    parts.push(data.subarray(off, off + size));
    off += size + 2;
  }
  return concat(parts);
}

/** Byte encoding of a UTF-8 string (handy for raw targets). */
export const utf8 = (s: string): Uint8Array => encoder.encode(s);

/** Waits until `done()` holds (true), or `ms` passes (false). */
async function waitUntil(done: () => boolean, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (done()) return true;
    await sleep(10);
  }
  return false;
}
