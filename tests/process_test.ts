/**
 * The real program as a subprocess, started by `sh bin/start` with exactly the permission flags
 * lib/permissions.ts computes, against the stand-in imgproxy and a local directory or s3rver.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type FakeImgproxy, imageBytes, startFakeImgproxy } from "./support/fake_imgproxy.ts";
import { freePort } from "./support/net_fs.ts";
import { start, stop, withFakeImgproxy, withProcess } from "./support/process.ts";
import { startS3, type TestS3 } from "./support/s3.ts";

const md5 = (s: string) => createHash("md5").update(s, "utf8").digest("hex");

const PATH = "/_/rs:fill:300:300/plain/http://example.com/images/cat.jpg";

/** Starts the proxy, gets one image through it, checks it is stored, stops it with SIGTERM. */
async function roundTrip(
  fake: FakeImgproxy,
  env: Record<string, string>,
  findStored: (key: string) => Promise<Uint8Array | null>,
  storedLine: string,
  clearEnv = false,
): Promise<string> {
  const port = freePort();
  const proxy = start({
    ...env,
    IMGPROXY_URL: fake.url,
    IMGPROXY_BIND: `127.0.0.1:${port}`,
    HEALTH_CHECK_TIMEOUT_IN_SEC: "10",
  }, clearEnv);
  try {
    await proxy.waitFor("imgproxy is ready");
    await proxy.waitFor("Listening");
    const res = await fetch(`http://127.0.0.1:${port}${PATH}`);
    const body = await res.bytes();
    assert.equal(res.status, 200);
    assert.deepEqual(body, imageBytes(`${PATH}|jpeg`));
    const key = md5(PATH);
    const line = await proxy.waitFor(storedLine);
    assert.ok(line.includes(`key=${key}`), line);
    assert.deepEqual(await findStored(key), body);
  } catch (err) {
    stop(proxy);
    await proxy.done;
    throw err;
  }
  stop(proxy);
  const { code, output } = await proxy.done;
  assert.equal(code, 0, output);
  assert.match(output, /INFO Uploads drained stored=1 /);
  assert.doesNotMatch(output, /NotCapable|Requires \w+ access|Uncaught|error: /, output);
  return output;
}

Deno.test("process stores an image in CACHE_DIR with the documented flags and exits 0 on SIGTERM", async () => {
  await withFakeImgproxy("process-local-", async (fake, dir) => {
    const output = await roundTrip(
      fake,
      { CACHE_DIR: dir },
      async (key) => await Deno.readFile(`${dir}/${key}`).catch(() => null),
      "Stored in cache directory",
    );
    assert.match(output, /S3_BUCKET is not set: storing processed images in a local directory/);
  });
});

function s3Env(s3: TestS3): Record<string, string> {
  return { ...s3.env, S3_CONDITIONAL_WRITE: "false", UPLOAD_RETRIES: "0" };
}

Deno.test("process uploads an image to S3 with the documented flags and exits 0 on SIGTERM", async () => {
  const fake = startFakeImgproxy();
  const s3 = await startS3();
  try {
    const output = await roundTrip(
      fake,
      s3Env(s3),
      async (key) => (await s3.waitFor(key))?.body ?? null,
      "Uploaded to S3",
    );
    assert.match(output, /INFO Uploaded to S3 path=\S+ bucket=test-bucket key=[0-9a-f]{32}/);
  } finally {
    await fake.close();
    await s3.stop();
  }
});

Deno.test("process uploads to S3 with HOME unset and no NotCapable crash", async () => {
  const fake = startFakeImgproxy();
  const s3 = await startS3();
  try {
    const home = Deno.env.get("HOME");
    const denoDir = Deno.env.get("DENO_DIR") ?? `${home}/.cache/deno`;
    await roundTrip(
      fake,
      { ...s3Env(s3), PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", DENO_DIR: denoDir },
      async (key) => (await s3.waitFor(key))?.body ?? null,
      "Uploaded to S3",
      true,
    );
  } finally {
    await fake.close();
    await s3.stop();
  }
});

Deno.test("process exits 2 on bad configuration with one message listing every problem", async () => {
  const proxy = start({
    IMGPROXY_BIND: "not-an-address",
    IMGPROXY_URL: "ftp://127.0.0.1:1",
    UPLOAD_CONCURRENCY: "many",
    CACHE_VARIANTS: "sometimes",
  });
  const { code, output } = await proxy.done;
  assert.equal(code, 2, output);
  assert.equal(output.match(/Invalid configuration/g)?.length, 1, output);
  for (const name of ["IMGPROXY_BIND", "IMGPROXY_URL", "UPLOAD_CONCURRENCY", "CACHE_VARIANTS"]) {
    assert.match(output, new RegExp(`${name}: expected`), output);
  }
  assert.doesNotMatch(output, /Listening| {4}at /, output);
});

Deno.test("process exits non-zero when imgproxy never becomes healthy", async () => {
  await withFakeImgproxy("process-unhealthy-", async (fake, dir) => {
    const port = freePort();
    const proxy = start({
      IMGPROXY_URL: fake.url,
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "1",
      CACHE_DIR: dir,
    });
    const { code, output } = await proxy.done;
    assert.notEqual(code, 0, output);
    assert.match(output, /Waiting for imgproxy to be ready/);
    assert.match(output, /imgproxy did not become ready in time/);
    assert.doesNotMatch(output, /Listening/);
    assert.ok(fake.requests.some((r) => r.target === "/health"));
  }, { healthy: false });
});

Deno.test("process finishes a response in flight on SIGTERM and stores it before exiting", async () => {
  // 5 chunks, one every 300 ms: SIGTERM arrives while the body is streaming.
  await withProcess({ slowChunks: 5, slowChunkMs: 300 }, {}, async (proxy, base, dir) => {
    const path = "/_/rs:fit:10:10/plain/http://example.com/slowbody.jpg";
    const res = await fetch(base + path);
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.equal(first.done, false);
    stop(proxy);
    let received = first.value!.byteLength;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
    }
    assert.equal(received, Number(res.headers.get("content-length")));
    const { code, output } = await proxy.done;
    assert.equal(code, 0, output);
    assert.match(output, /INFO Uploads drained stored=1 /);
    assert.equal((await Deno.readFile(`${dir}/${md5(path)}`)).byteLength, received);
  });
});

Deno.test("process exits 0 by the drain deadline when a response never ends", async () => {
  // 100 chunks 200 ms apart: far longer than the 1 s deadline.
  const fake = { slowChunks: 100, slowChunkMs: 200 };
  await withProcess(fake, { UPLOAD_DRAIN_TIMEOUT_IN_SEC: "1" }, async (proxy, base) => {
    const res = await fetch(`${base}/_/plain/http://example.com/slowbody.jpg`);
    const reader = res.body!.getReader();
    await reader.read();
    const started = Date.now();
    stop(proxy);
    const { code, output } = await proxy.done;
    assert.equal(code, 0, output);
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    assert.match(output, /Responses still in flight at the deadline/);
    assert.match(output, /INFO Uploads drained /);
    await reader.read().then(() => reader.cancel()).catch(() => {});
  });
});

Deno.test("process serves METRICS_BIND under the documented flags, and CACHE_MODE=read hits", async () => {
  const metricsPort = freePort();
  const env = { CACHE_MODE: "read", METRICS_BIND: `127.0.0.1:${metricsPort}` };
  await withProcess({}, env, async (proxy, base) => {
    await proxy.waitFor("Serving metrics");
    const first = await fetch(base + PATH);
    assert.equal(first.headers.get("x-cache"), "MISS");
    const body = await first.bytes();
    await proxy.waitFor("Stored in cache directory");
    const second = await fetch(base + PATH);
    assert.equal(second.headers.get("x-cache"), "HIT");
    assert.deepEqual(await second.bytes(), body);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(text, /^imgproxy_cache_requests_total\{status="200",cache="miss"\} 1$/m);
    assert.match(text, /^imgproxy_cache_requests_total\{status="200",cache="hit"\} 1$/m);
    assert.match(text, /^imgproxy_cache_uploads_total\{outcome="stored"\} 1$/m);
    stop(proxy);
    const { code, output } = await proxy.done;
    assert.equal(code, 0, output);
    assert.doesNotMatch(output, /NotCapable|Requires \w+ access|Uncaught/, output);
  });
});

Deno.test("process: a second SIGTERM more than a second later exits at once with 143", async () => {
  const fake = { slowChunks: 100, slowChunkMs: 200 };
  await withProcess(fake, { UPLOAD_DRAIN_TIMEOUT_IN_SEC: "30" }, async (proxy, base) => {
    const res = await fetch(`${base}/_/plain/http://example.com/slowbody.jpg`);
    const reader = res.body!.getReader();
    await reader.read();
    stop(proxy);
    await proxy.waitFor("Shutting down");
    await new Promise((r) => setTimeout(r, 1100));
    const started = Date.now();
    stop(proxy);
    const { code, output } = await proxy.done;
    assert.equal(code, 143, output); // 128 + SIGTERM's 15, as a shell reports it
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
    assert.match(output, /WARN Second signal: exiting without waiting signal=SIGTERM/);
    await reader.read().then(() => reader.cancel()).catch(() => {});
  });
});
