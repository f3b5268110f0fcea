/**
 * /livez and /readyz on the operations listener, over real sockets: imgproxy's `/health` and a
 * store lookup decide readiness; a hung store is a server that accepts and never answers.
 */
import assert from "node:assert/strict";
import { createApp, opsRoutes } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { serveOps } from "./support/ops_server.ts";
import type { Store } from "../lib/store/store.ts";
import { startFakeImgproxy } from "./support/fake_imgproxy.ts";
import { startHungStore } from "./support/hung_store.ts";
import { freePort } from "./support/net_fs.ts";
import { start, stop } from "./support/process.ts";

async function withOps(
  vars: Record<string, string>,
  store: Store | undefined,
  fn: (base: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "health-" });
  const env: Record<string, string> = { CACHE_DIR: dir, METRICS_BIND: "127.0.0.1:0", ...vars };
  const app = await createApp(loadConfig((n) => env[n]), new MemoryLogger(), { store });
  const stop = new AbortController();
  const server = serveOps({ hostname: "127.0.0.1", port: 0, signal: stop.signal }, opsRoutes(app));
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`);
  } finally {
    stop.abort();
    await server.finished;
    await app.uploader.drain(1000);
    await Deno.remove(dir, { recursive: true });
  }
}

async function get(url: string, method = "GET") {
  const res = await fetch(url, { method });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

Deno.test("/readyz is 200 when imgproxy's /health answers 200 and the store answers a lookup", async () => {
  const fake = startFakeImgproxy();
  try {
    await withOps({ IMGPROXY_URL: fake.url }, undefined, async (base) => {
      const ready = await get(`${base}/readyz`);
      assert.deepEqual([ready.status, ready.text], [200, "ready\n"]);
      assert.equal(ready.headers.get("cache-control"), "no-store");
      const live = await get(`${base}/livez`);
      assert.deepEqual([live.status, live.text], [200, "live\n"]);
      const head = await get(`${base}/readyz`, "HEAD");
      assert.deepEqual([head.status, head.text], [200, ""]);
      const post = await get(`${base}/livez`, "POST");
      assert.equal(post.status, 405);
      assert.equal((await get(`${base}/health`)).status, 404);
      assert.equal((await get(`${base}/metrics`)).status, 200);
      assert.ok(fake.requests.some((r) => r.target === "/health"), "imgproxy was asked");
    });
  } finally {
    await fake.close();
  }
});

Deno.test("/readyz is 503 naming imgproxy when its /health fails or nothing listens; /livez stays 200", async () => {
  const sick = startFakeImgproxy({ healthy: false });
  try {
    await withOps({ IMGPROXY_URL: sick.url }, undefined, async (base) => {
      const res = await get(`${base}/readyz`);
      assert.equal(res.status, 503);
      assert.equal(res.text, "not ready\nimgproxy: /health answered 500\n");
      assert.equal((await get(`${base}/livez`)).status, 200);
    });
  } finally {
    await sick.close();
  }
  await withOps({ IMGPROXY_URL: `http://127.0.0.1:${freePort()}` }, undefined, async (base) => {
    const res = await get(`${base}/readyz`);
    assert.equal(res.status, 503);
    assert.match(res.text, /^not ready\nimgproxy: .+\n$/);
    assert.doesNotMatch(res.text, /store:/);
  });
});

Deno.test("/readyz is 503 naming the store when it accepts and never answers, within the lookup timeout", async () => {
  const fake = startFakeImgproxy();
  const hung = startHungStore();
  try {
    await withOps(
      { IMGPROXY_URL: fake.url, STORE_LOOKUP_TIMEOUT_MS: "200" },
      hung.store,
      async (base) => {
        const start = performance.now();
        const res = await get(`${base}/readyz`);
        const tookMs = performance.now() - start;
        assert.equal(res.status, 503);
        assert.equal(res.text, "not ready\nstore: no answer within 200 ms\n");
        assert.ok(hung.connections >= 1, "the store was asked");
        // Bounded by the lookup timeout, not by the store (generous margin under load).
        assert.ok(tookMs < 5000, `took ${tookMs} ms`);
        assert.equal((await get(`${base}/livez`)).status, 200);
      },
    );
  } finally {
    await hung.close();
    await fake.close();
  }
});

/** Runs bin/healthcheck with `env`; returns its exit code and output. */
async function healthcheck(env: Record<string, string>) {
  const out = await new Deno.Command("sh", {
    args: [new URL("../bin/healthcheck", import.meta.url).pathname],
    env: { DENO: Deno.execPath(), ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

Deno.test("the real process serves /livez and /readyz, and bin/healthcheck follows /readyz", async () => {
  const fake = startFakeImgproxy();
  const sick = startFakeImgproxy({ healthy: false });
  const dir = await Deno.makeTempDir({ prefix: "health-process-" });
  const runs: { fake: typeof fake; ok: boolean }[] = [{ fake, ok: true }, {
    fake: sick,
    ok: false,
  }];
  try {
    for (const run of runs) {
      const ops = `127.0.0.1:${freePort()}`;
      const proxy = start({
        CACHE_DIR: dir,
        IMGPROXY_URL: run.fake.url,
        IMGPROXY_BIND: `127.0.0.1:${freePort()}`,
        METRICS_BIND: ops,
        // Do not wait for the sick imgproxy: readiness is what reports it.
        HEALTH_CHECK_TIMEOUT_IN_SEC: "0",
      });
      try {
        await proxy.waitFor("Serving metrics and health");
        assert.equal((await get(`http://${ops}/livez`)).status, 200);
        // The process metrics are read under the program's own (narrow) permissions.
        const metrics = await get(`http://${ops}/metrics`);
        assert.match(metrics.text, /^process_cpu_seconds_total \d/m);
        assert.match(metrics.text, /^process_resident_memory_bytes \d/m);
        assert.match(metrics.text, /^imgproxy_cache_build_info\{version=/m);
        const ready = await get(`http://${ops}/readyz`);
        assert.equal(ready.status, run.ok ? 200 : 503, ready.text);
        const check = await healthcheck({ METRICS_BIND: ops });
        assert.equal(check.code, run.ok ? 0 : 1, check.text);
        if (!run.ok) assert.match(check.text, /503 not ready; imgproxy: \/health answered 500/);
      } finally {
        stop(proxy);
      }
      const { code, output } = await proxy.done;
      assert.equal(code, 0, output);
    }
  } finally {
    await fake.close();
    await sick.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bin/healthcheck without METRICS_BIND runs `imgproxy health` (through the proxy's address)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "healthcheck-" });
  try {
    const bin = `${dir}/imgproxy`;
    await Deno.writeTextFile(bin, '#!/bin/sh\necho "called with $*"\nexit 3\n');
    await Deno.chmod(bin, 0o755);
    const check = await healthcheck({ IMGPROXY_BIN: bin });
    assert.equal(check.code, 3);
    assert.equal(check.text, "called with health\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
