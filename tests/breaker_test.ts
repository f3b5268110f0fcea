/**
 * The store breaker: its states on an injected clock, then over real sockets with a store that
 * accepts connections and never answers.
 */
import assert from "node:assert/strict";
import { opsRoutes } from "../lib/app.ts";
import { Breaker, isOutage } from "../lib/breaker.ts";
import { MemoryLogger } from "../lib/log.ts";
import { serveOps } from "./support/ops_server.ts";
import { StoreError } from "../lib/store/store.ts";
import { startHungStore } from "./support/hung_store.ts";
import { serveInProcess } from "./support/in_process.ts";
import { within } from "./support/within.ts";

function clocked(failures = 3, coolDownMs = 1000) {
  const clock = { now: 0 };
  const logger = new MemoryLogger();
  const breaker = new Breaker(
    { name: "lookups", failures, coolDownMs, now: () => clock.now },
    logger,
  );
  return { clock, logger, breaker };
}

Deno.test("Breaker opens after N failures in a row, skips during the cool-down, then lets one probe through", () => {
  const { clock, logger, breaker } = clocked();
  breaker.failure("a");
  breaker.failure("b");
  breaker.success(); // a success in between starts the count again
  breaker.failure("c");
  breaker.failure("d");
  assert.equal(breaker.state, "closed");
  assert.ok(breaker.allow());
  breaker.failure("e");
  assert.equal(breaker.state, "open");
  assert.equal(breaker.allow(), false);
  assert.equal(breaker.allow(), false);
  assert.equal(breaker.skipped, 2);
  clock.now = 999;
  assert.equal(breaker.isOpen(), true);
  clock.now = 1000;
  assert.equal(breaker.state, "half-open");
  assert.equal(breaker.isOpen(), false);
  assert.equal(breaker.allow(), true, "the probe");
  assert.equal(breaker.allow(), false, "only one probe at a time");
  breaker.failure("still down");
  assert.equal(breaker.state, "open", "a failed probe starts another cool-down");
  clock.now = 1500;
  assert.equal(breaker.allow(), false);
  clock.now = 2000;
  assert.equal(breaker.allow(), true);
  breaker.success();
  assert.equal(breaker.state, "closed");
  assert.ok(breaker.allow());
  // Each transition is logged once: one opening, one closing, nothing for the failed probe.
  assert.equal(logger.find("breaker open").length, 1);
  assert.match(
    logger.find("breaker open")[0]!,
    /WARN .* calls=lookups failures=3 coolDownSec=1 reason=e$/,
  );
  assert.equal(logger.find("breaker closed").length, 1);
  assert.equal(logger.lines.length, 2);
});

Deno.test("Breaker: a probe that never reports does not block the next one; 0 failures never opens", () => {
  const { clock, breaker } = clocked(1, 100);
  breaker.failure("x");
  clock.now = 100;
  assert.ok(breaker.allow());
  clock.now = 150;
  assert.equal(breaker.allow(), false);
  clock.now = 200;
  assert.ok(breaker.allow(), "the first probe was lost (its caller cancelled)");

  const off = clocked(0).breaker;
  for (let i = 0; i < 100; i++) off.failure("x");
  assert.equal(off.state, "closed");
});

Deno.test("isOutage(): timeouts and errors that may pass count, errors the store answered with do not", () => {
  assert.equal(isOutage(new Error("x"), true), true);
  assert.equal(isOutage(new StoreError("503", true, "ServiceUnavailable"), false), true);
  assert.equal(isOutage(new TypeError("connection refused"), false), true);
  assert.equal(isOutage(new StoreError("403", false, "AccessDenied"), false), false);
});

const image = (i: number) => `/insecure/rs:fit:10:10/plain/http://example.com/cat${i}.jpg`;

Deno.test("read mode with a hung store: after STORE_BREAKER_FAILURES lookups time out, requests go to imgproxy without asking the store", async () => {
  const hung = startHungStore();
  const dir = await Deno.makeTempDir({ prefix: "breaker-" });
  const env: Record<string, string> = {
    CACHE_DIR: dir,
    CACHE_MODE: "read",
    STORE_LOOKUP_TIMEOUT_MS: "150",
    STORE_BREAKER_FAILURES: "2",
    STORE_BREAKER_COOL_DOWN_IN_SEC: "600",
    // Uploads to the hung store: given up fast, never retried.
    UPLOAD_RETRIES: "0",
    UPLOAD_ATTEMPT_TIMEOUT_IN_SEC: "1",
    METRICS_BIND: "127.0.0.1:0",
  };
  const { app, logger, port, close } = await serveInProcess(env, { store: hung.store });
  const stop = new AbortController();
  const ops = serveOps({ hostname: "127.0.0.1", port: 0, signal: stop.signal }, opsRoutes(app));
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${base}${image(i)}`);
      await res.bytes();
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-cache-lookup"), "error");
    }
    assert.equal(app.breakers.lookup.state, "open");
    const asked = hung.connections;
    for (let i = 2; i < 6; i++) {
      const res = await fetch(`${base}${image(i)}`);
      await res.bytes();
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-cache-lookup"), "skipped");
    }
    assert.equal(app.breakers.lookup.skipped, 4);
    assert.equal(logger.find("Store failing: breaker open").length, 1, logger.lines.join("\n"));
    // Skipped lookups log nothing (repeated warnings may also be folded into one line).
    const failedLines = logger.find("Store lookup failed").length;
    assert.ok(failedLines >= 1 && failedLines <= 2, `${failedLines} lines`);
    // The uploads of those misses went to the same store and fail on their own; lookups no
    // longer open connections to it.
    await app.uploader.drain(10_000);
    assert.ok(hung.connections - asked <= 6, `${hung.connections - asked} connections`);

    const ready = await fetch(`http://127.0.0.1:${ops.addr.port}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(await ready.text(), /store: lookups paused after repeated failures/);
  } finally {
    stop.abort();
    await ops.finished;
    await close();
    await hung.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("uploads to a hung store: once the upload breaker opens, new bodies are skipped (store-down) instead of filling the budget", async () => {
  const hung = startHungStore();
  const dir = await Deno.makeTempDir({ prefix: "breaker-up-" });
  const env: Record<string, string> = {
    CACHE_DIR: dir,
    STORE_BREAKER_FAILURES: "2",
    STORE_BREAKER_COOL_DOWN_IN_SEC: "600",
    UPLOAD_RETRIES: "0",
    UPLOAD_ATTEMPT_TIMEOUT_IN_SEC: "1",
  };
  const failed = Promise.withResolvers<void>();
  let failures = 0;
  const { app, logger, port, close } = await serveInProcess(env, {
    store: hung.store,
    onUploadSettled: (_key, outcome) => {
      if (outcome.kind === "failed" && ++failures === 2) failed.resolve();
    },
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; i < 2; i++) {
      await (await fetch(`${base}${image(i)}`)).bytes();
    }
    // Both writes wait for the attempt timeout, fail, and open the breaker.
    await within("two failed uploads", failed.promise);
    assert.equal(app.uploader.stats.failed, 2);
    assert.equal(app.breakers.upload.state, "open");
    const connections = hung.connections;
    for (let i = 2; i < 5; i++) {
      const res = await fetch(`${base}${image(i)}`);
      assert.equal(res.status, 200);
      await res.bytes();
    }
    assert.equal(app.uploader.stats.skipped["store-down"], 3);
    assert.equal(app.uploader.stats.bytesInFlight, 0);
    assert.equal(app.uploader.pending, 0);
    assert.equal(hung.connections, connections, "no write was sent to the store");
    assert.equal(logger.find("calls=uploads").length, 1);
  } finally {
    await close();
    await hung.close();
    await Deno.remove(dir, { recursive: true });
  }
});
