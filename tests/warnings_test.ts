/**
 * Repeated warnings are aggregated: one line per kind and interval plus one with the count,
 * never one per event, while the counters keep the exact numbers.
 */
import assert from "node:assert/strict";
import { createApp, drainUploads } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { LocalStore } from "../lib/store/local.ts";
import type { PutOptions, PutResult } from "../lib/store/store.ts";
import { AggregatingLogger } from "../lib/warnings.ts";
import { startFakeImgproxy } from "./support/fake_imgproxy.ts";

Deno.test("AggregatingLogger: the first of a kind in full, the repeats as one count at the flush", () => {
  const inner = new MemoryLogger();
  const log = new AggregatingLogger(inner, 60_000);
  for (let i = 0; i < 1000; i++) {
    log.log("WARN", "Upload skipped", { reason: "no-room", key: `k${i}` });
  }
  log.log("WARN", "Upload skipped", { reason: "too-large", key: "big" });
  log.log("INFO", "Listening", { address: "x" });
  log.log("INFO", "Listening", { address: "x" });
  log.log("ERROR", "Upload failed", { reason: "x".repeat(100), key: "a" });
  log.log("ERROR", "Upload failed", { reason: "y".repeat(100), key: "b" });
  assert.equal(inner.lines.length, 5, inner.lines.join("\n"));
  assert.match(inner.lines[0]!, /WARN Upload skipped reason=no-room key=k0$/);
  assert.match(inner.lines[1]!, /WARN Upload skipped reason=too-large key=big$/);
  log.flush();
  assert.equal(inner.lines.length, 7, inner.lines.join("\n"));
  assert.match(inner.lines[5]!, /WARN Upload skipped reason=no-room repeated=999 intervalSec=60$/);
  assert.match(inner.lines[6]!, /ERROR Upload failed repeated=1 intervalSec=60$/);
  // A new interval: the next one is written in full again, and an empty flush writes nothing.
  log.flush();
  log.log("WARN", "Upload skipped", { reason: "no-room", key: "again" });
  assert.match(inner.lines.at(-1)!, /key=again$/);
  log.flush();
  assert.equal(inner.lines.length, 8);
});

Deno.test("a flood of unique misses with no room to store them: two log lines, exact counters", async () => {
  const fake = startFakeImgproxy();
  const dir = await Deno.makeTempDir({ prefix: "warnings-" });
  const logger = new MemoryLogger();
  // Room for one image, held by a write that never ends: every later upload is skipped with
  // reason no-room.
  const env: Record<string, string> = {
    IMGPROXY_URL: fake.url,
    CACHE_DIR: dir,
    UPLOAD_MAX_BYTES_IN_FLIGHT: "3000",
    UPLOAD_MAX_OBJECT_BYTES: "3000",
    UPLOAD_RETRIES: "0",
  };
  class StalledStore extends LocalStore {
    override put(_key: string, _body: Uint8Array, options: PutOptions): Promise<PutResult> {
      return new Promise((_, reject) =>
        options.signal?.addEventListener("abort", () => reject(options.signal!.reason))
      );
    }
  }
  const app = await createApp(loadConfig((n) => env[n]), logger, {
    store: new StalledStore(dir),
  });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  try {
    for (let i = 0; i < 200; i++) {
      const res = await fetch(
        `http://127.0.0.1:${server.addr.port}/_/rs:fit:${i}:1/plain/http://example.com/a.jpg`,
      );
      assert.equal(res.status, 200);
      await res.body?.cancel();
    }
    assert.equal(app.uploader.stats.skipped["no-room"], 199);
    await drainUploads(app, logger, 1000);
    const lines = logger.lines.filter((l) => l.includes("Upload skipped"));
    assert.ok(lines.length <= 4, lines.join("\n"));
    const repeated = lines.map((l) => Number(/repeated=(\d+)/.exec(l)?.[1] ?? 1));
    assert.equal(repeated.reduce((a, b) => a + b, 0), 199, lines.join("\n"));
  } finally {
    await server.shutdown();
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});
