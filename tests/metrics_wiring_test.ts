import assert from "node:assert/strict";
import { createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { serveMetrics } from "./support/ops_server.ts";
import { CONTENT_TYPE } from "../lib/prometheus.ts";
import { serveInProcess } from "./support/in_process.ts";

/** Finds one sample's value in an exposition. */
function sample(text: string, prefix: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(prefix + " "));
  return line === undefined ? undefined : Number(line.slice(prefix.length + 1));
}

Deno.test("METRICS_BIND serves the proxy's requests, uploads and latencies over a socket", async () => {
  const dir = await Deno.makeTempDir({ prefix: "metrics-wiring-" });
  const { app, port, close } = await serveInProcess({
    CACHE_DIR: dir,
    METRICS_BIND: "127.0.0.1:0",
  });
  const stop = new AbortController();
  const metrics = serveMetrics(
    { hostname: "127.0.0.1", port: 0, signal: stop.signal },
    app.registry,
  );
  try {
    const base = `http://127.0.0.1:${port}`;
    const image = "/insecure/rs:fit:10:10/plain/http://example.com/cat.jpg";
    await (await fetch(base + image)).bytes();
    await (await fetch(base + image, { method: "HEAD" })).bytes();
    await (await fetch(base + "/insecure/plain/http://example.com/missing.jpg")).bytes();
    await app.uploader.drain(2000);
    const res = await fetch(`http://127.0.0.1:${metrics.addr.port}/metrics`);
    assert.equal(res.headers.get("content-type"), CONTENT_TYPE);
    const text = await res.text();
    assert.equal(sample(text, 'imgproxy_cache_requests_total{status="200",cache="miss"}'), 1);
    assert.equal(sample(text, 'imgproxy_cache_requests_total{status="200",cache="bypass"}'), 1);
    assert.equal(sample(text, 'imgproxy_cache_requests_total{status="404",cache="bypass"}'), 1);
    assert.equal(sample(text, 'imgproxy_cache_uploads_total{outcome="stored"}'), 1);
    assert.equal(sample(text, "imgproxy_cache_upstream_duration_seconds_count"), 3);
    assert.equal(
      sample(text, 'imgproxy_cache_store_duration_seconds_count{operation="put"}'),
      1,
    );
    assert.equal(sample(text, "imgproxy_cache_upload_queue_depth"), 0);
  } finally {
    stop.abort();
    await metrics.finished;
    await close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without METRICS_BIND no instruments are put in the request path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "metrics-wiring-" });
  try {
    const env: Record<string, string> = { CACHE_DIR: dir };
    const app = await createApp(loadConfig((n) => env[n]), new MemoryLogger());
    assert.equal(app.registry.render(), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
