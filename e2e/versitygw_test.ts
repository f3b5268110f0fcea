/**
 * Conditional writes and error classification against a real S3 server (versitygw), which
 * honours `If-None-Match: *` (s3rver, used by the default suite, ignores it). The proxy runs
 * in-process here (lib/ as is) over real sockets; its upstream is a tiny STAND-IN for imgproxy
 * that answers each request with different bytes, so an overwrite would show.
 */
import assert from "node:assert/strict";
import { type App, createApp } from "../lib/app.ts";
import { loadConfig, type S3StoreConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { S3Store } from "../lib/store/s3.ts";
import type { StoreError } from "../lib/store/store.ts";
import { Uploader } from "../lib/uploader.ts";
import {
  equalBytes,
  get,
  keyOf,
  s3Client,
  SECRET_KEY,
  Versitygw,
  waitFor,
} from "./support/harness.ts";

const BUCKET = "conditional";

function storeConfig(gw: Versitygw, bucket = BUCKET): S3StoreConfig {
  return {
    kind: "s3",
    bucket,
    endpoint: gw.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    conditionalWrite: true,
  };
}

/** Runs `fn` with a fresh versitygw holding the test bucket. */
async function withGateway(fn: (gw: Versitygw) => Promise<void>): Promise<void> {
  const gw = await Versitygw.start();
  try {
    await gw.createBucket(BUCKET);
    await fn(gw);
  } finally {
    await gw.close();
  }
}

const bytes = (s: string) => new TextEncoder().encode(s);

/** An imgproxy-like upstream whose every answer differs (`image/png`, public, counted). */
function countingUpstream() {
  let n = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    n++;
    return new Response(bytes(`image bytes, answer #${n}`), {
      headers: { "content-type": "image/png", "cache-control": "max-age=3600, public" },
    });
  });
  return { server, url: `http://127.0.0.1:${server.addr.port}`, count: () => n };
}

/** Queues one body on an uploader the way the proxy does. */
function upload(uploader: Uploader, key: string, body: Uint8Array) {
  const c = uploader.begin(
    key,
    { path: `/${key}`, contentType: "image/png", cacheControl: null },
    body.byteLength,
  );
  assert.equal(typeof c, "object", `upload of ${key} was skipped: ${String(c)}`);
  if (typeof c === "string") return;
  c.add(body);
  c.finish();
}

Deno.test("versitygw: S3Store.put with ifAbsent → stored, then exists (412); the object keeps the first bytes", async () => {
  await withGateway(async (gw) => {
    const store = new S3Store(storeConfig(gw), s3Client(gw.endpoint, SECRET_KEY));
    const opts = { contentType: "image/png", cacheControl: "max-age=60, public", ifAbsent: true };
    assert.equal(await store.put("k1", bytes("first"), opts), "stored");
    assert.equal(await store.put("k1", bytes("second"), opts), "exists");
    const obj = await gw.get(BUCKET, "k1");
    assert.ok(obj && equalBytes(obj.body, bytes("first")), "the second put overwrote the object");
    assert.equal(obj.contentType, "image/png");
    assert.equal(obj.cacheControl, "max-age=60, public");
    assert.deepEqual((await gw.puts(BUCKET, "k1")).map((p) => p.status), [200, 412]);
    // Without ifAbsent the store does overwrite: the 412 above really came from the condition.
    assert.equal(await store.put("k1", bytes("third"), { ...opts, ifAbsent: false }), "stored");
    assert.ok(equalBytes((await gw.get(BUCKET, "k1"))!.body, bytes("third")));
    store.client.destroy();
  });
});

Deno.test("versitygw: two proxy instances sharing a bucket, dedup memory off (UPLOAD_DEDUP_KEYS=0) → stored once [stand-in upstream: a different body per answer, which real imgproxy never sends]", async () => {
  await withGateway(async (gw) => {
    const upstream = countingUpstream();
    const env: Record<string, string> = {
      S3_BUCKET: BUCKET,
      S3_ENDPOINT: gw.endpoint,
      S3_REGION: "us-east-1",
      IMGPROXY_URL: upstream.url,
      IMGPROXY_BIND: "127.0.0.1:0",
      UPLOAD_DEDUP_KEYS: "0",
      UPLOAD_RETRIES: "0",
    };
    const config = loadConfig((n) => env[n]);
    const apps: { app: App; logger: MemoryLogger; store: S3Store }[] = [];
    const servers: Deno.HttpServer<Deno.NetAddr>[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const logger = new MemoryLogger();
        const store = new S3Store(storeConfig(gw), s3Client(gw.endpoint, SECRET_KEY));
        const app = await createApp(config, logger, { store });
        apps.push({ app, logger, store });
        servers.push(
          Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app.handler),
        );
      }
      const path = "/insecure/rs:fit:10:10/plain/https://example.com/a.png";
      const key = keyOf(path);
      // A, B, then A again: each one asks imgproxy (different bytes) and tries to store.
      const order = [0, 1, 0];
      const answers = [];
      for (const [step, i] of order.entries()) {
        const res = await get(`http://127.0.0.1:${servers[i]!.addr.port}${path}`);
        assert.equal(res.status, 200);
        answers.push(res.body);
        await waitFor(
          `attempt ${step + 1} to reach versitygw`,
          async () => (await gw.puts(BUCKET, key)).length === step + 1 || undefined,
        );
        await waitFor(
          "the uploader to settle",
          () => apps[i]!.app.uploader.pending === 0 || undefined,
        );
      }
      assert.equal(upstream.count(), 3);
      assert.deepEqual((await gw.puts(BUCKET, key)).map((p) => p.status), [200, 412, 412]);
      const obj = await gw.get(BUCKET, key);
      assert.ok(obj && equalBytes(obj.body, answers[0]!), "the object is not the first answer");
      const [a, b] = apps;
      assert.equal(a!.app.uploader.stats.stored, 1);
      assert.equal(a!.app.uploader.stats.alreadyPresent, 1);
      assert.equal(b!.app.uploader.stats.stored, 0);
      assert.equal(b!.app.uploader.stats.alreadyPresent, 1);
      assert.equal(a!.logger.find("Uploaded to S3").length, 1);
      assert.equal(b!.logger.find("Uploaded to S3").length, 0);
    } finally {
      for (const s of servers) await s.shutdown();
      for (const { app, store } of apps) {
        await app.uploader.drain(1000);
        store.client.destroy();
      }
      await upstream.server.shutdown();
    }
  });
});

Deno.test("versitygw: a full proxy request stores the exact bytes with Content-Type and Cache-Control [stand-in upstream: a different body per answer, which real imgproxy never sends]", async () => {
  await withGateway(async (gw) => {
    const upstream = countingUpstream();
    const env: Record<string, string> = {
      S3_BUCKET: BUCKET,
      S3_ENDPOINT: gw.endpoint,
      S3_FOLDER: "/processed/",
      IMGPROXY_URL: upstream.url,
    };
    const logger = new MemoryLogger();
    const store = new S3Store(storeConfig(gw), s3Client(gw.endpoint, SECRET_KEY));
    const app = await createApp(loadConfig((n) => env[n]), logger, { store });
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app.handler);
    try {
      const path = "/insecure/rs:fill:300:300/plain/https://example.com/image.jpg";
      const res = await get(`http://127.0.0.1:${server.addr.port}${path}`);
      assert.equal(res.status, 200);
      const obj = await gw.waitForObject(BUCKET, `processed/${keyOf(path)}`);
      // The object is visible as soon as versitygw has it, a moment before its answer
      // reaches the uploader and the success is logged.
      await waitFor("the uploader to settle", () => app.uploader.pending === 0 || undefined);
      assert.ok(equalBytes(obj.body, res.body));
      assert.equal(obj.contentType, "image/png");
      assert.equal(obj.cacheControl, "max-age=3600, public");
      assert.equal(
        logger.find(`Uploaded to S3 path=${path} bucket=${BUCKET} key=processed/`).length,
        1,
      );
    } finally {
      await server.shutdown();
      await app.uploader.drain(1000);
      store.client.destroy();
      await upstream.server.shutdown();
    }
  });
});

/** Uploads one body with a retry budget and returns the uploader's stats and log. */
async function uploadOnce(store: S3Store) {
  const logger = new MemoryLogger();
  const uploader = new Uploader(store, {
    concurrency: 1,
    maxBytesInFlight: 1 << 20,
    maxObjectBytes: 1 << 20,
    retries: 3,
    retryBaseDelayMs: 50,
    retryMaxDelayMs: 100,
    dedupKeys: 100,
    conditionalWrite: true,
  }, logger);
  upload(uploader, "k", bytes("body"));
  const { lost } = await uploader.drain(10_000);
  return { stats: uploader.stats, logger, lost };
}

Deno.test("versitygw: a put to a missing bucket is not retried", async () => {
  await withGateway(async (gw) => {
    const store = new S3Store(
      storeConfig(gw, "no-such-bucket"),
      s3Client(gw.endpoint, SECRET_KEY),
    );
    const { stats, logger, lost } = await uploadOnce(store);
    assert.deepEqual(lost, []);
    assert.equal(stats.failed, 1);
    assert.equal(stats.retries, 0);
    assert.equal(logger.find("will retry").length, 0);
    assert.match(logger.find("Upload failed")[0] ?? "", /NoSuchBucket/);
    assert.deepEqual((await gw.puts("no-such-bucket", "k")).map((p) => p.status), [404]);
    store.client.destroy();
  });
});

Deno.test("versitygw: a 403 (wrong secret) is not retried", async () => {
  await withGateway(async (gw) => {
    const store = new S3Store(storeConfig(gw), s3Client(gw.endpoint, "not-the-secret"));
    const { stats, logger } = await uploadOnce(store);
    assert.equal(stats.failed, 1);
    assert.equal(stats.retries, 0);
    assert.match(logger.find("Upload failed")[0] ?? "", /HTTP 403/);
    assert.equal(await gw.get(BUCKET, "k"), null);
    const attempts = (await gw.log()).filter((l) => l.op === "s3_PutObject" || l.status === 403);
    assert.ok(attempts.length <= 1, `expected at most one logged attempt, got ${attempts.length}`);
    store.client.destroy();
  });
});

Deno.test("versitygw: a network failure (gateway gone) is retried, then given up", async () => {
  const gw = await Versitygw.start();
  const endpoint = gw.endpoint;
  await gw.close(); // nothing listens there any more: network errors
  const store = new S3Store(
    { ...storeConfig(gw), endpoint },
    s3Client(endpoint, SECRET_KEY),
  );
  const { stats, logger } = await uploadOnce(store);
  assert.equal(stats.failed, 1);
  assert.equal(stats.retries, 3, "network errors are retried up to UPLOAD_RETRIES times");
  assert.equal(logger.find("will retry").length, 3);
  store.client.destroy();
});

Deno.test("versitygw: has, open and get by signed fetch, for a key that needs escaping; absent keys; a 403 is a permanent error", async () => {
  await withGateway(async (gw) => {
    const store = new S3Store(storeConfig(gw), s3Client(gw.endpoint, SECRET_KEY));
    const denied = new S3Store(storeConfig(gw), s3Client(gw.endpoint, "not-the-secret"));
    try {
      const key = "a folder/é+~!'()*&$=;:@,/0123456789abcdef.png";
      const body = bytes("streamed image bytes");
      assert.equal(
        await store.put(key, body, {
          contentType: "image/png",
          cacheControl: "max-age=60, public",
          ifAbsent: true,
        }),
        "stored",
      );
      // What the SDK reads back is what was sent.
      const viaSdk = await gw.get(BUCKET, key);
      assert.ok(viaSdk !== null && equalBytes(viaSdk.body, body));
      assert.equal(await store.has(key), true);
      assert.equal(await store.has(key + ".missing"), false);
      const opened = await store.open(key);
      assert.ok(opened !== null);
      assert.equal(opened.contentLength, body.byteLength);
      assert.equal(opened.contentType, "image/png");
      assert.equal(opened.cacheControl, "max-age=60, public");
      assert.ok(equalBytes(await new Response(opened.body).bytes(), body));
      assert.equal(await store.open(key + ".missing"), null);
      const got = await store.get(key);
      assert.ok(got !== null && equalBytes(got.body, body));
      assert.equal(await store.get(key + ".missing"), null);
      for (const read of [() => denied.has(key), () => denied.open(key)]) {
        await assert.rejects(read(), (err: StoreError) => {
          assert.equal(err.name, "StoreError");
          assert.equal(err.retryable, false);
          assert.match(err.message, /HTTP 403/);
          return true;
        });
      }
    } finally {
      store.client.destroy();
      denied.client.destroy();
    }
  });
});

Deno.test("versitygw: open() reads an object of declared length up to wholeUpTo whole, a larger one as a stream; get() reads either whole", async () => {
  await withGateway(async (gw) => {
    const store = new S3Store(storeConfig(gw), s3Client(gw.endpoint, SECRET_KEY));
    try {
      const small = new Uint8Array(3000).map((_, i) => i & 0xff);
      const large = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
      const meta = { contentType: "image/webp", cacheControl: "max-age=60", ifAbsent: true };
      assert.equal(await store.put("small.webp", small, meta), "stored");
      assert.equal(await store.put("large.webp", large, meta), "stored");
      const whole = await store.open("small.webp", undefined, 3000);
      assert.ok(whole !== null && whole.body instanceof Uint8Array, "not read whole");
      assert.equal(whole.contentLength, 3000);
      assert.equal(whole.length, 3000);
      assert.equal(whole.contentType, "image/webp");
      assert.equal(whole.cacheControl, "max-age=60");
      assert.match(whole.etag ?? "", /^"[^"]+"$/);
      assert.ok(!Number.isNaN(Date.parse(whole.lastModified ?? "")), whole.lastModified);
      assert.ok(equalBytes(whole.body, small));
      const streamed = await store.open("large.webp", undefined, 3000);
      assert.ok(streamed !== null && streamed.body instanceof ReadableStream, "not a stream");
      assert.equal(streamed.contentLength, 5000);
      assert.ok(equalBytes(await new Response(streamed.body).bytes(), large));
      // Without wholeUpTo, as before: a stream whatever the size.
      const plain = await store.open("small.webp");
      assert.ok(plain !== null && plain.body instanceof ReadableStream);
      await plain.body.cancel();
      assert.equal(await store.open("absent.webp", undefined, 3000), null);
      for (const [key, body] of [["small.webp", small], ["large.webp", large]] as const) {
        const got = await store.get(key);
        assert.ok(got !== null && equalBytes(got.body, body), key);
      }
    } finally {
      store.client.destroy();
    }
  });
});

Deno.test("versitygw: CACHE_MODE=read serves a stored image from versitygw without asking imgproxy, read whole: its validators, Cache-Control and length, 304 on a match, a Range with the whole image [stand-in upstream: a different body per answer, which real imgproxy never sends]", async () => {
  await withGateway(async (gw) => {
    const upstream = countingUpstream();
    const env: Record<string, string> = {
      S3_BUCKET: BUCKET,
      S3_ENDPOINT: gw.endpoint,
      IMGPROXY_URL: upstream.url,
      CACHE_MODE: "read",
    };
    const logger = new MemoryLogger();
    const store = new S3Store(storeConfig(gw), s3Client(gw.endpoint, SECRET_KEY));
    const app = await createApp(loadConfig((n) => env[n]), logger, { store });
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app.handler);
    try {
      const url = `http://127.0.0.1:${server.addr.port}/insecure/rs:fit:40/plain/local:///y.png`;
      const first = await get(url);
      assert.equal(first.status, 200);
      assert.equal(first.headers.get("x-cache"), "MISS");
      await waitFor("the uploader to settle", () => app.uploader.pending === 0 || undefined);
      const hit = await get(url);
      assert.equal(hit.status, 200);
      assert.equal(hit.headers.get("x-cache"), "HIT");
      assert.equal(hit.headers.get("content-type"), "image/png");
      assert.equal(hit.headers.get("cache-control"), "max-age=3600, public");
      assert.equal(hit.headers.get("content-length"), String(first.body.byteLength));
      assert.ok(equalBytes(hit.body, first.body));
      const etag = hit.headers.get("etag");
      const lastModified = hit.headers.get("last-modified");
      assert.match(etag ?? "", /^"[^"]+"$/);
      assert.ok(lastModified !== null && !Number.isNaN(Date.parse(lastModified)), lastModified!);
      const conditions: Record<string, string>[] = [
        { "if-none-match": etag! },
        { "if-modified-since": lastModified! },
      ];
      for (const headers of conditions) {
        const res = await get(url, { headers });
        assert.equal(res.status, 304, JSON.stringify(headers));
        assert.equal(res.body.byteLength, 0);
        assert.equal(res.headers.get("etag"), etag);
        assert.equal(res.headers.get("last-modified"), lastModified);
        assert.equal(res.headers.get("cache-control"), "max-age=3600, public");
        assert.equal(res.headers.get("x-cache"), "HIT");
      }
      const stale = await get(url, { headers: { "if-none-match": '"stale"' } });
      assert.equal(stale.status, 200);
      assert.ok(equalBytes(stale.body, first.body));
      // Hits do not answer ranges: the whole image, as imgproxy does.
      const ranged = await get(url, { headers: { range: "bytes=0-3" } });
      assert.equal(ranged.status, 200);
      assert.equal(ranged.headers.get("x-cache"), "HIT");
      assert.ok(equalBytes(ranged.body, first.body));
      assert.equal(upstream.count(), 1);
    } finally {
      await server.shutdown();
      await app.uploader.drain(1000);
      store.client.destroy();
      await upstream.server.shutdown();
    }
  });
});
