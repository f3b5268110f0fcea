/**
 * Purge against a real S3 server (versitygw): the S3 store lists a path's variants by prefix
 * and removes them with signed DeleteObject requests; keys of other paths, other folders and
 * look-alike keys stay, and a proxy's POST /purge does the same end to end.
 */
import assert from "node:assert/strict";
import { createApp } from "../lib/app.ts";
import { loadConfig, type S3StoreConfig } from "../lib/config.ts";
import { md5Hex } from "../lib/key.ts";
import { MemoryLogger } from "../lib/log.ts";
import { serveMetrics } from "../tests/support/ops_server.ts";
import { purgePath } from "../lib/purge.ts";
import { S3Store } from "../lib/store/s3.ts";
import { StoreError } from "../lib/store/store.ts";
import { within } from "../tests/support/within.ts";
import { s3Client, SECRET_KEY, Versitygw } from "./support/harness.ts";

const BUCKET = "purge";
const META = { contentType: "image/png", cacheControl: null, ifAbsent: true };
const bytes = (s: string) => new TextEncoder().encode(s);
const IMG = "/_/rs:fill:30:30/plain/local:///cat%20%2e%2e.jpg";
const OTHER = "/_/rs:fill:30:30/plain/local:///dog.jpg";

function storeConfig(gw: Versitygw): S3StoreConfig {
  return {
    kind: "s3",
    bucket: BUCKET,
    endpoint: gw.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    conditionalWrite: true,
  };
}

Deno.test("versitygw: purgePath removes the whole variant key set of a path under the folder, nothing else", async () => {
  const gw = await Versitygw.start();
  try {
    await gw.createBucket(BUCKET);
    const store = new S3Store(storeConfig(gw), s3Client(gw.endpoint, SECRET_KEY));
    const base = `img/${md5Hex(IMG)}`;
    const variants = [base, `${base}-avif`, `${base}-jxl`, `${base}-webp`];
    const keep = [
      `img/${md5Hex(OTHER)}`,
      md5Hex(IMG), // the same hash outside the folder
      `other/${md5Hex(IMG)}-webp`,
      `${base}x`, // a look-alike that is not a variant
      `${base}-png/nested`, // below a variant-like "directory"
    ];
    for (const k of [...variants, ...keep]) {
      assert.equal(await store.put(k, bytes(k), META), "stored", k);
    }
    const forgotten: string[] = [];
    const outcome = await purgePath(
      { store, folder: "img", forget: (k) => forgotten.push(k) },
      `${IMG}?cb=1`,
    );
    assert.deepEqual(outcome, { path: `${IMG}?cb=1`, keys: variants });
    assert.deepEqual(forgotten, [base]);
    assert.deepEqual(await gw.keys(BUCKET), [...keep].sort());
    const deletes = (await gw.log()).filter((l) => l.op === "s3_DeleteObject");
    assert.equal(deletes.length, 4);
    assert.ok(deletes.every((l) => l.status < 300), JSON.stringify(deletes));
    // Purging again finds nothing and fails nothing.
    assert.deepEqual(await purgePath({ store, folder: "img" }, IMG), { path: IMG, keys: [] });
    await store.delete(base);
    // The DELETE is really signed: a wrong secret is refused (and never retried).
    const wrong = new S3Store(storeConfig(gw), s3Client(gw.endpoint, "not-the-secret-key"));
    await assert.rejects(wrong.delete(`img/${md5Hex(OTHER)}`), (err: unknown) => {
      assert.ok(err instanceof StoreError);
      assert.match(err.message, /^DeleteObject img\/\w+: \w+ \(HTTP 403\)/);
      assert.equal(err.retryable, false);
      return true;
    });
    assert.ok((await gw.keys(BUCKET)).includes(`img/${md5Hex(OTHER)}`));
  } finally {
    await gw.close();
  }
});

Deno.test("versitygw: POST /purge on the proxy removes a stored path's variants and the next request stores it again", async () => {
  const gw = await Versitygw.start();
  let n = 0;
  const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    n++;
    return new Response(bytes(`image #${n}`), {
      headers: { "content-type": "image/png", "cache-control": "max-age=3600, public" },
    });
  });
  try {
    await gw.createBucket(BUCKET);
    const token = "e2e-admin-token-0123456789";
    const env: Record<string, string> = {
      S3_BUCKET: BUCKET,
      S3_ENDPOINT: gw.endpoint,
      S3_FOLDER: "img",
      AWS_REGION: "us-east-1",
      IMGPROXY_URL: `http://127.0.0.1:${upstream.addr.port}`,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "0",
      METRICS_BIND: "127.0.0.1:0",
      ADMIN_TOKEN: token,
    };
    const config = loadConfig((k) => env[k]);
    const settled: string[] = [];
    let wake = () => {};
    const app = await createApp(config, new MemoryLogger(), {
      store: new S3Store(storeConfig(gw), s3Client(gw.endpoint, SECRET_KEY)),
      onUploadSettled: (key, o) => {
        settled.push(`${key} ${o.kind}`);
        wake();
      },
    });
    const until = (line: string) =>
      within(
        `upload outcome "${line}"`,
        new Promise<void>((resolve) => {
          wake = () => settled.includes(line) && resolve();
          wake();
        }),
      );
    const proxy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.handler);
    const admin = serveMetrics(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      app.registry,
      app.adminRoutes,
    );
    try {
      const key = `img/${md5Hex(OTHER)}`;
      await (await fetch(`http://127.0.0.1:${proxy.addr.port}${OTHER}`)).body?.cancel();
      await until(`${key} stored`);
      assert.deepEqual(await gw.keys(BUCKET), [key]);
      const res = await fetch(`http://127.0.0.1:${admin.addr.port}/purge`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: `${OTHER}\n`,
      });
      assert.equal(res.status, 200);
      assert.deepEqual((await res.json()).results, [{ path: OTHER, keys: [key] }]);
      assert.deepEqual(await gw.keys(BUCKET), []);
      settled.length = 0;
      await (await fetch(`http://127.0.0.1:${proxy.addr.port}${OTHER}`)).body?.cancel();
      await until(`${key} stored`);
      assert.equal(new TextDecoder().decode((await gw.get(BUCKET, key))!.body), "image #2");
    } finally {
      await proxy.shutdown();
      await admin.shutdown();
      await app.uploader.drain(5000);
    }
  } finally {
    await upstream.shutdown();
    await gw.close();
  }
});
