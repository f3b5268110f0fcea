/**
 * Integration tests of the proxy over real sockets: the app from lib/app.ts served with
 * `Deno.serve`, a stand-in imgproxy, and a local directory or s3rver as the store.
 */
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { join, relative } from "node:path";
import { type App, createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { contextOf } from "../lib/context.ts";
import { LocalStore } from "../lib/store/local.ts";
import type { PutOptions, PutResult, Store } from "../lib/store/store.ts";
import {
  type FakeImgproxy,
  type FakeImgproxyOptions,
  imageBytes,
  rawRequest,
  signPath,
  startFakeImgproxy,
} from "./support/fake_imgproxy.ts";
import { S3RVER_CREDENTIALS, startS3, type TestS3 } from "./support/s3.ts";
import { S3Client } from "@aws-sdk/client-s3";
import { s3ClientConfig, S3Store } from "../lib/store/s3.ts";

const md5 = (s: string) => createHash("md5").update(s, "utf8").digest("hex");

interface Harness {
  fake: FakeImgproxy;
  app: App;
  logger: MemoryLogger;
  url: string;
  port: number;
  dir: string;
  /** Waits for the uploader to finish (closes it: call once, at the end). */
  drain(): Promise<void>;
  /** Keys in the local store (no sidecars), after a drain. */
  localKeys(): Promise<string[]>;
  close(): Promise<void>;
}

async function walk(dir: string, root = dir): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) out.push(...await walk(p, root));
    else out.push(relative(root, p));
  }
  return out.sort();
}

async function setup(
  options: {
    fake?: FakeImgproxyOptions;
    env?: Record<string, string>;
    s3?: TestS3;
    store?: (dir: string) => Store;
  } = {},
): Promise<Harness> {
  const fake = startFakeImgproxy(options.fake);
  const dir = await Deno.makeTempDir({ prefix: "proxy-test-" });
  const env: Record<string, string> = {
    IMGPROXY_URL: fake.url,
    CACHE_DIR: dir,
    HEALTH_CHECK_TIMEOUT_IN_SEC: "0",
    ...options.s3?.env,
    ...options.env,
  };
  const logger = new MemoryLogger();
  const config = loadConfig((name) => env[name]);
  let store: Store | undefined = options.store?.(dir);
  if (options.s3 && config.store.kind === "s3") {
    // The SDK's default chain reads credentials from the process environment, which tests
    // share: give the proxy's own client configuration s3rver's keys explicitly.
    const client = new S3Client({
      ...s3ClientConfig(config.store),
      credentials: S3RVER_CREDENTIALS,
    });
    store = new S3Store(config.store, client);
  }
  const app = await createApp(config, logger, store ? { store } : {});
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  let drained = false;
  const drain = async () => {
    if (drained) return;
    drained = true;
    const { lost } = await app.uploader.drain(10_000);
    assert.deepEqual(lost, []);
  };
  return {
    fake,
    app,
    logger,
    url: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    dir,
    drain,
    async localKeys() {
      await drain();
      const files = await walk(dir);
      assert.deepEqual(files.filter((f) => f.includes(".tmp-")), [], "no temporary files left");
      return files.filter((f) => !f.endsWith(".meta.json"));
    },
    async close() {
      await server.shutdown();
      await server.finished;
      await drain();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** GETs through the proxy and reads the whole body. */
async function get(h: Harness, path: string, init?: RequestInit) {
  const res = await fetch(h.url + path, init);
  const body = await res.bytes();
  return { res, body };
}

const IMG = "/_/rs:fill:300:300/plain/http://example.com/images/cat.jpg";

Deno.test("proxy stores a GET image under md5 of the raw path", async () => {
  const h = await setup();
  try {
    const { res, body } = await get(h, IMG);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/jpeg");
    assert.equal(res.headers.get("cache-control"), "max-age=31536000, public");
    assert.equal(res.headers.get("content-length"), "2048");
    assert.equal(res.headers.get("content-disposition"), 'inline; filename="image.jpeg"');
    assert.equal(res.headers.get("server"), "imgproxy");
    assert.match(res.headers.get("x-request-id") ?? "", /^fake-\d+$/);
    assert.equal(res.headers.get("x-cache"), "MISS");
    assert.deepEqual(body, imageBytes(`${IMG}|jpeg`));

    const key = md5(IMG);
    assert.deepEqual(await h.localKeys(), [key]);
    const stored = await h.app.store.get(key);
    assert.ok(stored);
    assert.deepEqual(stored.body, body);
    assert.equal(stored.contentType, "image/jpeg");
    assert.equal(stored.cacheControl, "max-age=31536000, public");
    assert.equal(h.logger.find("Stored in cache directory").length, 1);
  } finally {
    await h.close();
  }
});

Deno.test("proxy stores the documented example path under c9009a400f110797b2710ce2a5bd60a4", async () => {
  const h = await setup();
  try {
    const path = "/resize:fill:300:300/plain/https://example.com/image.jpg";
    const { res } = await get(h, path);
    assert.equal(res.status, 200);
    assert.deepEqual(await h.localKeys(), ["c9009a400f110797b2710ce2a5bd60a4"]);
  } finally {
    await h.close();
  }
});

Deno.test("proxy stores under S3_FOLDER/md5 with stray slashes trimmed", async () => {
  const h = await setup({ env: { S3_FOLDER: "/images/processed/" } });
  try {
    const { res } = await get(h, IMG);
    assert.equal(res.status, 200);
    assert.deepEqual(await h.localKeys(), [`images/processed/${md5(IMG)}`]);
  } finally {
    await h.close();
  }
});

Deno.test("proxy uploads a GET image to S3 with its bytes, type and cache control", async () => {
  const s3 = await startS3();
  const h = await setup({ s3, env: { S3_FOLDER: "cache/" } });
  try {
    const png = IMG.replace("cat.jpg", "dog.jpg@png");
    const { res, body } = await get(h, png);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/png");
    await h.drain();
    const key = `cache/${md5(png)}`;
    assert.deepEqual(await s3.list(), [key]);
    const obj = await s3.get(key);
    assert.ok(obj);
    assert.deepEqual(obj.body, body);
    assert.equal(obj.contentType, "image/png");
    assert.equal(obj.cacheControl, "max-age=31536000, public");
    assert.deepEqual(
      h.logger.find("Uploaded to S3").map((l) => l.replace(/^\S+ \S+ /, "")),
      [`INFO Uploaded to S3 path=${png} bucket=${s3.bucket} key=${key}`],
    );
  } finally {
    await h.close();
    (h.app.store as S3Store).client.destroy();
    await s3.stop();
  }
});

/** Targets `fetch` would rewrite; imgproxy must receive them byte-for-byte. */
const RAW_TARGETS = [
  "/_/rs:fill:10:10/plain/http://example.com/a/../b.jpg",
  "/_/plain/http://example.com/%2e%2e/x.jpg",
  "/_/plain/http://example.com/./%2E/y.jpg",
  "/_/plain/http://example.com//double//slash.jpg",
  '/_/plain/http://example.com/q"{}`|^.jpg',
  "/_/plain/http://example.com/back\\slash.jpg",
  "/_/plain/http://example.com/café/日本.jpg",
  "/_/plain/http://example.com/%20sp%41ce.jpg?x=1&y=%2e%2e/../z",
];

Deno.test("proxy sends imgproxy the raw path and query byte-for-byte and keys the raw path", async () => {
  const h = await setup();
  try {
    for (const target of RAW_TARGETS) {
      const res = await rawRequest(h.port, `GET ${target} HTTP/1.1`);
      assert.equal(res.status, 200, target);
      const path = target.split("?")[0]!;
      assert.deepEqual(res.body, imageBytes(`${path}|jpeg`), target);
    }
    assert.deepEqual(h.fake.requests.map((r) => r.target), RAW_TARGETS);
    const keys = RAW_TARGETS.map((t) => md5(t.split("?")[0]!)).sort();
    assert.deepEqual(await h.localKeys(), keys);
  } finally {
    await h.close();
  }
});

Deno.test("proxy key ignores the query string, which still reaches imgproxy", async () => {
  const h = await setup({ env: { COALESCE_REQUESTS: "false" } });
  try {
    for (const q of ["?a=1", "?a=2&b=%2e%2e", ""]) {
      const { res } = await get(h, IMG + q);
      assert.equal(res.status, 200);
    }
    assert.deepEqual(h.fake.requests.map((r) => r.target), [
      IMG + "?a=1",
      IMG + "?a=2&b=%2e%2e",
      IMG,
    ]);
    assert.deepEqual(await h.localKeys(), [md5(IMG)]);
  } finally {
    await h.close();
  }
});

Deno.test("proxy forwards HEAD, OPTIONS and POST but stores nothing for them", async () => {
  const h = await setup();
  try {
    for (const method of ["HEAD", "OPTIONS", "POST"]) {
      const res = await fetch(h.url + IMG, {
        method,
        body: method === "POST" ? "data" : undefined,
      });
      const body = await res.bytes();
      assert.equal(res.status, method === "POST" ? 404 : 200, method);
      // imgproxy answers OPTIONS with a one-space body (HEAD's never crosses the wire).
      if (method !== "POST") assert.equal(body.byteLength, method === "HEAD" ? 0 : 1, method);
      assert.equal(res.headers.get("x-cache"), "BYPASS; reason=method", method);
    }
    assert.deepEqual(h.fake.requests.map((r) => r.method), ["HEAD", "OPTIONS", "POST"]);
    assert.deepEqual(await h.localKeys(), []);
  } finally {
    await h.close();
  }
});

Deno.test("proxy stores nothing for 304, 403, 404, 422, 502, the landing page and /health", async () => {
  const key = "943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881";
  const salt = "520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5";
  const h = await setup({ fake: { key, salt } });
  const signed = (p: string) => `/${signPath(key, salt, p)}${p}`;
  try {
    const cases: [string, number][] = [
      [signed("/rs:fit:10:10/plain/http://example.com/notmod.jpg"), 304],
      ["/badsignature/rs:fit:10:10/plain/http://example.com/cat.jpg", 403],
      [signed("/rs:fit:10:10/plain/http://example.com/missing.jpg"), 404],
      [signed("/rs:fit:10:10/plain/http://example.com/broken.jpg"), 422],
      [signed("/rs:fit:10:10/plain/http://example.com/fail500.jpg"), 502],
      ["/", 200],
      ["/health", 200],
      ["/favicon.ico", 404],
    ];
    for (const [path, status] of cases) {
      const { res } = await get(h, path);
      assert.equal(res.status, status, path);
      assert.match(res.headers.get("x-cache") ?? "", /^BYPASS; reason=/, path);
    }
    assert.deepEqual(await h.localKeys(), []);
  } finally {
    await h.close();
  }
});

Deno.test("proxy stores nothing for an answer with Vary: Accept with CACHE_VARIANTS=off", async () => {
  const h = await setup({ fake: { varyAccept: true }, env: { CACHE_VARIANTS: "off" } });
  try {
    const { res } = await get(h, IMG, { headers: { accept: "image/webp,*/*" } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/webp");
    assert.equal(res.headers.get("vary"), "Accept");
    assert.equal(res.headers.get("x-cache"), "BYPASS; reason=vary");
    await get(h, IMG, { headers: { accept: "*/*" } });
    assert.deepEqual(await h.localKeys(), []);
    // Said once, with what to change.
    assert.equal(h.logger.find("WARN").length, 1, h.logger.lines.join("\n"));
    assert.equal(h.logger.find("set CACHE_VARIANTS=accept").length, 1);
  } finally {
    await h.close();
  }
});

Deno.test("proxy stores each answer under the key of the format it is in, by default", async () => {
  const h = await setup({ fake: { varyAccept: true } });
  try {
    const variants: [string, string, string][] = [
      ["image/avif,image/webp,*/*", "image/avif", "-avif"],
      ["image/webp,*/*", "image/webp", "-webp"],
      ["*/*", "image/jpeg", ""],
    ];
    const bodies = new Map<string, Uint8Array>();
    for (const [accept, type, suffix] of variants) {
      const { res, body } = await get(h, IMG, { headers: { accept } });
      assert.equal(res.headers.get("content-type"), type);
      assert.equal(res.headers.get("x-cache"), "MISS");
      bodies.set(md5(IMG) + suffix, body);
    }
    assert.deepEqual(await h.localKeys(), [...bodies.keys()].sort());
    for (const [k, body] of bodies) {
      const stored = await h.app.store.get(k);
      assert.deepEqual(stored?.body, body, k);
    }
    assert.equal((await h.app.store.get(md5(IMG) + "-webp"))?.contentType, "image/webp");
  } finally {
    await h.close();
  }
});

Deno.test("proxy stores nothing marked no-store, private or no-cache, or with Set-Cookie", async () => {
  const h = await setup();
  try {
    const cases: [string, string][] = [
      ["nostore", "cache-control"],
      ["private", "cache-control"],
      ["nocache", "cache-control"],
      ["cookie", "set-cookie"],
    ];
    for (const [word, reason] of cases) {
      const { res } = await get(h, `/_/plain/http://example.com/${word}.jpg`);
      assert.equal(res.status, 200, word);
      assert.equal(res.headers.get("x-cache"), `BYPASS; reason=${reason}`, word);
      if (word === "cookie") {
        assert.deepEqual(res.headers.getSetCookie(), ["a=1; Path=/", "b=2; Path=/"]);
      }
    }
    assert.deepEqual(await h.localKeys(), []);
  } finally {
    await h.close();
  }
});

Deno.test("proxy does not store imgproxy's fallback image but stores real images", async () => {
  const placeholder = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4]);
  const h = await setup({
    fake: { fallback: { bytes: placeholder, ttl: 60 } },
    env: {
      IMGPROXY_FALLBACK_IMAGE_DATA: btoa(String.fromCharCode(...placeholder)),
      IMGPROXY_FALLBACK_IMAGE_TTL: "60",
    },
  });
  try {
    const missing = "/_/rs:fit:10:10/plain/http://example.com/missing.jpg";
    const fb = await get(h, missing);
    assert.equal(fb.res.status, 200);
    assert.deepEqual(fb.body, placeholder);
    assert.equal(fb.res.headers.get("x-cache"), "BYPASS; reason=fallback-image");
    const real = await get(h, IMG);
    assert.equal(real.res.headers.get("x-cache"), "MISS");
    assert.deepEqual(await h.localKeys(), [md5(IMG)]);
  } finally {
    await h.close();
  }
});

Deno.test("proxy does not store a body cut mid-stream and the client sees an error", async () => {
  const h = await setup();
  try {
    const res = await fetch(h.url + "/_/plain/http://example.com/cut.jpg");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), "2048");
    await assert.rejects(res.bytes());
    assert.deepEqual(await h.localKeys(), []);
    assert.equal(h.app.uploader.stats.skipped.incomplete, 1);
  } finally {
    await h.close();
  }
});

Deno.test("proxy stores a chunked body of unknown length", async () => {
  const h = await setup();
  try {
    const path = "/_/plain/http://example.com/chunked.jpg";
    const { res, body } = await get(h, path);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), null);
    assert.deepEqual(body, imageBytes(`${path}|jpeg`));
    assert.deepEqual(await h.localKeys(), [md5(path)]);
    assert.deepEqual((await h.app.store.get(md5(path)))?.body, body);
  } finally {
    await h.close();
  }
});

Deno.test("proxy streams a body above UPLOAD_MAX_OBJECT_BYTES fully but does not store it", async () => {
  const h = await setup({
    fake: { largeBytes: 3 << 20 },
    env: { UPLOAD_MAX_OBJECT_BYTES: String(1 << 20) },
  });
  try {
    for (const word of ["large", "chunked-large"]) {
      const path = `/_/plain/http://example.com/${word}.jpg`;
      const { res, body } = await get(h, path);
      assert.equal(res.status, 200, word);
      assert.equal(body.byteLength, 3 << 20, word);
      assert.deepEqual(body, imageBytes(`${path}|jpeg`, 3 << 20), word);
    }
    assert.deepEqual(await h.localKeys(), []);
  } finally {
    await h.close();
  }
});

Deno.test("proxy streams the first bytes of a slow body before the body is complete", async () => {
  const h = await setup({ fake: { slowChunks: 5, slowChunkMs: 150 } });
  try {
    const start = performance.now();
    const res = await fetch(h.url + "/_/plain/http://example.com/slowbody.jpg");
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = performance.now() - start;
    assert.ok(!first.done && first.value.byteLength > 0);
    let total = first.value.byteLength;
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      total += r.value.byteLength;
    }
    const endAt = performance.now() - start;
    assert.equal(total, 2048);
    assert.ok(endAt - firstAt >= 400, `first chunk at ${firstAt} ms, end at ${endAt} ms`);
    assert.equal((await h.localKeys()).length, 1);
  } finally {
    await h.close();
  }
});

Deno.test("proxy cancels the upstream request when the client goes away mid-body", async () => {
  const h = await setup({ fake: { slowChunks: 40, slowChunkMs: 50 } });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port });
    const path = "/_/plain/http://example.com/slowbody.jpg";
    await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    assert.ok(n !== null && n > 0);
    assert.match(new TextDecoder().decode(buf.subarray(0, n)), /^HTTP\/1\.1 200/);
    conn.close();
    assert.ok(await h.fake.waitCancelled("slowbody"), "imgproxy's body was cancelled");
    assert.deepEqual(h.fake.completed, []);
    assert.deepEqual(await h.localKeys(), []);
  } finally {
    await h.close();
  }
});

/** Sends a GET for `path` on a connection of its own and returns it, the answer not read. */
async function sendGet(h: Harness, path: string, extra = ""): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port });
  await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`));
  return conn;
}

for (const shared of [true, false]) {
  // A Range header keeps a request out of coalescing: its own signal, followed by the proxy.
  const extra = shared ? "" : "Range: bytes=0-\r\n";
  const how = shared ? "a coalesced request" : "a request not coalesced";
  Deno.test(`proxy cancels ${how} to imgproxy when its client leaves before the answer`, async () => {
    const h = await setup({ fake: { slowHeadersMs: 20_000 } });
    try {
      const conn = await sendGet(h, "/_/plain/http://example.com/slowhead-gone.jpg", extra);
      // imgproxy has the request before the client leaves.
      assert.ok(await h.fake.waitRequested("slowhead-gone", 10_000), "imgproxy got the request");
      conn.close();
      assert.ok(
        await h.fake.waitAbandoned("slowhead-gone", 10_000),
        "imgproxy's request cancelled",
      );
    } finally {
      await h.close();
    }
  });
}

/**
 * `n` identical requests made in-process, each with a signal of its own: the first leads and
 * the others join it before imgproxy is asked (each layer runs synchronously up to its first
 * wait).
 */
function coalescedCalls(h: Harness, path: string, n: number) {
  const clients = Array.from({ length: n }, () => new AbortController());
  const answers = clients.map((c) =>
    h.app.handle(contextOf(new Request(`http://x${path}`, { signal: c.signal })))
  );
  return { clients, answers };
}

Deno.test("proxy keeps a coalesced request to imgproxy while one of its clients waits", async () => {
  const h = await setup({ fake: { slowHeadersMs: 1000 } });
  try {
    const path = "/_/plain/http://example.com/slowhead-stay.jpg";
    const { clients, answers } = coalescedCalls(h, path, 3);
    clients[0]!.abort();
    clients[1]!.abort();
    const res = await answers[2]!;
    assert.equal(res.status, 200);
    assert.equal((await res.bytes()).byteLength, 2048);
    assert.deepEqual(h.fake.abandoned, []);
    assert.equal(h.fake.requests.length, 1);
    await Promise.allSettled(answers);
  } finally {
    await h.close();
  }
});

Deno.test("proxy cancels a coalesced request to imgproxy when the last of its clients leaves", async () => {
  const h = await setup({ fake: { slowHeadersMs: 20_000 } });
  try {
    const path = "/_/plain/http://example.com/slowhead-all.jpg";
    const { clients, answers } = coalescedCalls(h, path, 3);
    assert.ok(await h.fake.waitRequested("slowhead-all", 10_000), "imgproxy got the request");
    for (const c of clients) c.abort();
    assert.ok(await h.fake.waitAbandoned("slowhead-all", 10_000), "imgproxy's request cancelled");
    assert.equal(h.fake.requests.length, 1);
    await Promise.allSettled(answers);
  } finally {
    await h.close();
  }
});

Deno.test("proxy answers 504 to every coalesced client when imgproxy is too slow, and cancels its request", async () => {
  const h = await setup({ fake: { slowHeadersMs: 20_000 }, env: { UPSTREAM_TIMEOUT_IN_SEC: "1" } });
  try {
    const path = "/_/plain/http://example.com/slowhead-timeout.jpg";
    const { answers } = coalescedCalls(h, path, 2);
    const statuses = [];
    for (const a of answers) {
      const res = await a;
      await res.body?.cancel();
      statuses.push(res.status);
    }
    assert.deepEqual(statuses, [504, 504]);
    assert.ok(
      await h.fake.waitAbandoned("slowhead-timeout", 10_000),
      "imgproxy's request cancelled",
    );
    assert.equal(h.fake.requests.length, 1);
  } finally {
    await h.close();
  }
});

Deno.test("proxy answers 502 short text/plain when imgproxy is unreachable", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const h = await setup({ env: { IMGPROXY_URL: `http://127.0.0.1:${deadPort}` } });
  try {
    const res = await fetch(h.url + IMG);
    const text = await res.text();
    assert.equal(res.status, 502);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
    assert.ok(text.length < 100 && !text.includes("    at "), text);
    assert.deepEqual(await h.localKeys(), []);
  } finally {
    await h.close();
  }
});

Deno.test("proxy answers 504 when imgproxy is slower than UPSTREAM_TIMEOUT_IN_SEC", async () => {
  const h = await setup({ fake: { slowHeadersMs: 2000 }, env: { UPSTREAM_TIMEOUT_IN_SEC: "1" } });
  try {
    const start = performance.now();
    const res = await fetch(h.url + "/_/plain/http://example.com/slowhead.jpg");
    const text = await res.text();
    const took = performance.now() - start;
    assert.equal(res.status, 504);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
    assert.ok(text.length < 100 && !text.includes("    at "), text);
    assert.ok(took >= 900 && took < 1900, `answered after ${took} ms`);
  } finally {
    await h.close();
  }
});

Deno.test("proxy drops hop-by-hop headers both ways and sets X-Forwarded-* itself", async () => {
  const h = await setup({ fake: { secret: "s3cret" } });
  try {
    const path = "/_/plain/http://example.com/hop.jpg";
    const res = await rawRequest(h.port, `GET ${path} HTTP/1.1`, {
      host: "images.example.org",
      connection: "close, x-hop-req",
      "x-hop-req": "1",
      "keep-alive": "timeout=5",
      "proxy-authorization": "Basic Zm9vOmJhcg==",
      te: "trailers",
      "x-forwarded-for": "6.6.6.6",
      "x-forwarded-proto": "https",
      "x-forwarded-host": "evil.example",
      forwarded: "for=6.6.6.6",
      authorization: "Bearer s3cret",
      accept: "image/webp,*/*",
      "x-custom": "kept",
    });
    assert.equal(res.status, 200);
    const got = h.fake.requests[0]!.headers;
    for (const name of ["x-hop-req", "keep-alive", "proxy-authorization", "te", "forwarded"]) {
      assert.equal(got.get(name), null, name);
    }
    assert.equal(got.get("x-forwarded-for"), "127.0.0.1");
    assert.equal(got.get("x-forwarded-proto"), "http");
    assert.equal(got.get("x-forwarded-host"), "images.example.org");
    assert.equal(got.get("authorization"), "Bearer s3cret");
    assert.equal(got.get("accept"), "image/webp,*/*");
    assert.equal(got.get("x-custom"), "kept");
    for (const name of ["x-hop-resp", "keep-alive", "proxy-authenticate"]) {
      assert.equal(res.headers.get(name), null, name);
    }
    assert.equal(res.headers.get("server"), "imgproxy");
    // Without the secret imgproxy refuses: Authorization really is what passed it.
    const denied = await get(h, path);
    assert.equal(denied.res.status, 403);
  } finally {
    await h.close();
  }
});

/** A store that counts writes, around a real LocalStore. */
class CountingStore implements Store {
  puts = 0;
  readonly inner: LocalStore;
  readonly description = "counting";
  readonly storedMessage = "Stored in cache directory";
  readonly logFields = {};
  constructor(dir: string) {
    this.inner = new LocalStore(dir);
  }
  put(key: string, body: Uint8Array, options: PutOptions): Promise<PutResult> {
    this.puts++;
    return this.inner.put(key, body, options);
  }
  has(key: string) {
    return this.inner.has(key);
  }
  get(key: string) {
    return this.inner.get(key);
  }
  variants(baseKey: string) {
    return this.inner.variants(baseKey);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
}

for (const coalesce of ["true", "false"]) {
  Deno.test(`proxy makes one store write for 20 concurrent identical requests (COALESCE_REQUESTS=${coalesce})`, async () => {
    let store: CountingStore | undefined;
    const h = await setup({
      fake: { slowChunks: 4, slowChunkMs: 50 },
      env: { COALESCE_REQUESTS: coalesce },
      store: (dir) => (store = new CountingStore(dir)),
    });
    try {
      const path = "/_/plain/http://example.com/slowbody.jpg";
      const expected = imageBytes(`${path}|jpeg`);
      const results = await Promise.all(Array.from({ length: 20 }, () => get(h, path)));
      for (const { res, body } of results) {
        assert.equal(res.status, 200);
        assert.deepEqual(body, expected);
      }
      assert.deepEqual(await h.localKeys(), [md5(path)]);
      assert.equal(store!.puts, 1);
      if (coalesce === "true") assert.equal(h.fake.requests.length, 1);
    } finally {
      await h.close();
    }
  });
}

Deno.test("proxy key equals the Go program's Phoenix component's cached_src for an HMAC-signed path", async () => {
  const keyHex = "943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881";
  const saltHex = "520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5";
  // The facts file's test vector checks the signer the stand-in uses.
  assert.equal(
    signPath(
      "736563726574",
      "68656c6c6f",
      "/rs:fill:300:400:0/g:sm/aHR0cDovL2V4YW1w/bGUuY29tL2ltYWdl/cy9jdXJpb3NpdHku/anBn.png",
    ),
    "oKfUtW34Dvo2BGQehJFR4Nr0_rIjOtdtzJ3QFsUcXH8",
  );
  const h = await setup({ fake: { key: keyHex, salt: saltHex } });
  try {
    // As the Go program's `image/1`: Base.encode64(src), HMAC over salt <> img_path, url-safe b64.
    const src = "https://example.com/images/cat.jpg";
    const b64 = Buffer.from(src).toString("base64");
    assert.ok(!/[+/]/.test(b64), "pick a source whose standard base64 is URL-safe");
    const imgPath = `/rs:fill:300:300:1/dpr:2/g:ce/${b64}.webp`;
    const signature = createHmac("sha256", Buffer.from(keyHex, "hex"))
      .update(Buffer.concat([Buffer.from(saltHex, "hex"), Buffer.from(imgPath)]))
      .digest("base64url");
    const fullPath = `/${signature}${imgPath}`;
    const cachedKey = createHash("md5").update(fullPath).digest("hex");

    const { res } = await get(h, fullPath);
    assert.equal(res.status, 200, "the stand-in accepts the signature");
    assert.equal(res.headers.get("content-type"), "image/webp");
    const bad = await get(h, `/${signature.replace(/^./, (c) => c === "A" ? "B" : "A")}${imgPath}`);
    assert.equal(bad.res.status, 403);
    assert.deepEqual(await h.localKeys(), [cachedKey]);
  } finally {
    await h.close();
  }
});

Deno.test("proxy with IMGPROXY_COOKIE_PASSTHROUGH: an answer to a request with cookies is not stored", async () => {
  const h = await setup({ env: { IMGPROXY_COOKIE_PASSTHROUGH: "true" } });
  try {
    const withCookie = await get(h, IMG, { headers: { cookie: "session=alice" } });
    assert.equal(withCookie.res.status, 200);
    assert.equal(withCookie.res.headers.get("x-cache"), "BYPASS; reason=cookie");
    const other = "/_/rs:fill:10:10/plain/http://example.com/images/dog.jpg";
    const without = await get(h, other);
    assert.equal(without.res.headers.get("x-cache"), "MISS");
    assert.deepEqual(await h.localKeys(), [md5(other)]);
  } finally {
    await h.close();
  }
});

Deno.test("proxy gives up a body being stored when imgproxy sends nothing for UPSTREAM_TIMEOUT_IN_SEC", async () => {
  // Headers and a first chunk, then 3 s of silence before each next one: past the 1 s limit.
  const h = await setup({
    fake: { slowChunks: 3, slowChunkMs: 3000 },
    env: { UPSTREAM_TIMEOUT_IN_SEC: "1" },
  });
  try {
    const path = "/_/plain/http://example.com/slowbody.jpg";
    const res = await fetch(h.url + path);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-cache"), "MISS");
    const started = Date.now();
    await assert.rejects(res.bytes());
    const took = Date.now() - started;
    assert.ok(took >= 900 && took < 2900, `the body was given up after ${took} ms`);
    // The reservation is released at once, and nothing is stored.
    assert.equal(h.app.uploader.pending, 0);
    assert.equal(h.app.uploader.stats.bytesInFlight, 0);
    assert.equal(h.app.uploader.stats.skipped.incomplete, 1);
    assert.deepEqual(await h.localKeys(), []);
    assert.equal(h.logger.find("WARN imgproxy stopped sending the body").length, 1);
  } finally {
    await h.close();
  }
});
