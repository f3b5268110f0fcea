/**
 * Encoded answers from imgproxy over real sockets, on both upstream paths (fetch for a plain
 * target, node:http for one fetch would rewrite): the client gets the bytes and the
 * Content-Encoding imgproxy sent, unchanged, and an encoded body is never stored under the
 * image's key.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { objectKey } from "../lib/key.ts";
import { MemoryLogger } from "../lib/log.ts";
import { rawRequest } from "./support/fake_imgproxy.ts";
import { exists } from "./support/net_fs.ts";
import { within } from "./support/within.ts";

const image = new Uint8Array(4096).map((_, i) => (i * 7) % 251);
const encoders: Record<string, (b: Uint8Array) => Uint8Array> = {
  gzip: (b) => new Uint8Array(gzipSync(Buffer.from(b))),
  "x-gzip": (b) => new Uint8Array(gzipSync(Buffer.from(b))),
  GZIP: (b) => new Uint8Array(gzipSync(Buffer.from(b))),
  deflate: (b) => new Uint8Array(deflateSync(Buffer.from(b))),
  br: (b) => new Uint8Array(brotliCompressSync(Buffer.from(b))),
  "identity, gzip": (b) => new Uint8Array(gzipSync(Buffer.from(b))),
  "gzip, identity": (b) => new Uint8Array(gzipSync(Buffer.from(b))),
  "gzip, br": (b) => new Uint8Array(brotliCompressSync(gzipSync(Buffer.from(b)))),
  zstd: (b) => b.map((x) => x ^ 0x5a), // any bytes: the proxy must not care
};

/** An imgproxy stand-in that answers `/<encoding>/...` with the image encoded that way. */
function encodingUpstream() {
  const seen: { target: string; acceptEncoding: string | null }[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const target = req.url.slice(req.url.indexOf("/", 8));
    seen.push({ target, acceptEncoding: req.headers.get("accept-encoding") });
    const encoding = decodeURIComponent(target.split("/")[1]!);
    const body = encoding === "identity" ? image : encoders[encoding]!(image);
    return new Response(body as Uint8Array<ArrayBuffer>, {
      headers: {
        "content-type": "image/jpeg",
        "cache-control": "max-age=3600, public",
        "content-encoding": encoding,
      },
    });
  });
  return { server, seen, url: `http://127.0.0.1:${server.addr.port}` };
}

Deno.test("encoded answers pass through unchanged on both upstream paths and are never stored", async () => {
  const upstream = encodingUpstream();
  const dir = await Deno.makeTempDir({ prefix: "encoding-" });
  const env: Record<string, string> = { IMGPROXY_URL: upstream.url, CACHE_DIR: dir };
  const settled = new Map<string, () => void>();
  const app = await createApp(loadConfig((n) => env[n]), new MemoryLogger(), {
    onUploadSettled: (key) => settled.get(key)?.(),
  });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  try {
    for (const encoding of [...Object.keys(encoders), "identity"]) {
      const sent = encoding === "identity" ? image : encoders[encoding]!(image);
      // A plain target goes through fetch; "/./" makes fetch unusable, so node:http.
      for (const via of ["fetch", "node:http"]) {
        const path = `/${encodeURIComponent(encoding)}/${via === "fetch" ? "" : "./"}${via}.jpg`;
        const res = await rawRequest(server.addr.port, `GET ${path} HTTP/1.1`, {
          "accept-encoding": "gzip, deflate, br",
        });
        const what = `${encoding} via ${via}`;
        assert.equal(res.status, 200, what);
        assert.equal(res.headers.get("content-encoding"), encoding, what);
        assert.equal(res.headers.get("content-length"), String(sent.byteLength), what);
        assert.deepEqual(res.body, sent, `${what}: the body was changed`);
        const key = objectKey(path, "", "");
        if (encoding === "identity") {
          await within(
            `the upload of ${key}`,
            new Promise<void>((r) => {
              settled.set(key, r);
              if (app.uploader.pending === 0) r();
            }),
          );
          assert.equal(res.headers.get("x-cache"), "MISS", what);
        } else {
          assert.equal(res.headers.get("x-cache"), "BYPASS; reason=content-encoding", what);
        }
        assert.equal(await exists(`${dir}/${key}`), encoding === "identity", `${what}: stored?`);
        if (encoding === "identity") assert.deepEqual(await Deno.readFile(`${dir}/${key}`), image);
      }
    }
    await app.uploader.drain(5000);
    const stored = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => !n.includes("."));
    assert.equal(stored.length, 2, `only the identity answers are stored: ${stored}`);
    // imgproxy was asked for identity every time, on both paths.
    assert.deepEqual(new Set(upstream.seen.map((s) => s.acceptEncoding)), new Set(["identity"]));
    assert.equal(upstream.seen.length, 2 * (Object.keys(encoders).length + 1));
  } finally {
    await server.shutdown();
    await upstream.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("imgproxy is asked for identity on a read-mode miss and on a pass-through request too", async () => {
  const upstream = encodingUpstream();
  const dir = await Deno.makeTempDir({ prefix: "encoding-read-" });
  const env: Record<string, string> = {
    IMGPROXY_URL: upstream.url,
    CACHE_DIR: dir,
    CACHE_MODE: "read",
  };
  const app = await createApp(loadConfig((n) => env[n]), new MemoryLogger());
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  try {
    const asked = { "accept-encoding": "gzip, deflate, br" };
    const miss = await rawRequest(server.addr.port, "GET /identity/read.jpg HTTP/1.1", asked);
    assert.equal(miss.headers.get("x-cache-lookup"), "miss");
    const pass = await rawRequest(server.addr.port, "HEAD /identity/pass.jpg HTTP/1.1", asked);
    assert.equal(pass.status, 200);
    assert.deepEqual(upstream.seen, [
      { target: "/identity/read.jpg", acceptEncoding: "identity" },
      { target: "/identity/pass.jpg", acceptEncoding: "identity" },
    ]);
    await app.uploader.drain(5000);
  } finally {
    await server.shutdown();
    await upstream.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
