import assert from "node:assert/strict";
import { createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { md5Hex } from "../lib/key.ts";
import { MemoryLogger } from "../lib/log.ts";
import { rawTarget } from "../lib/context.ts";
import { LocalStore } from "../lib/store/local.ts";
import { type PutOptions, type PutResult, StoreError } from "../lib/store/store.ts";
import { UploadOutcomes } from "../lib/upload_outcomes.ts";
import { warmRequest } from "../lib/warm_one.ts";
import { newCounts, warmAll } from "../lib/warm_run.ts";
import { withSetup } from "./support/warm_stand_in.ts";

Deno.test("warmRequest keeps the target that new Request() would normalise", () => {
  const target = "/rs:fit:10/plain/local:///a/../%2e%2e/b\\c d%20e.png?q=%2E";
  assert.notEqual(rawTarget(new Request("http://warm.invalid" + target)), target);
  const ctx = warmRequest(target);
  assert.equal(ctx.target, target);
  assert.equal(ctx.req.method, "GET");
  assert.equal(new URL(ctx.req.url).protocol, "http:");
});

Deno.test("UploadOutcomes: outcomes of watched keys only, in order; next() times out with null", async () => {
  const outcomes = new UploadOutcomes();
  outcomes.record("k", { kind: "stored" }); // not watched: dropped
  outcomes.watch("k");
  assert.equal(await outcomes.next("k", 0), null);
  const waiting = outcomes.next("k", 5000);
  outcomes.record("k", { kind: "skipped", reason: "in-progress" });
  outcomes.record("k", { kind: "exists" });
  outcomes.record("other", { kind: "failed", reason: "x" });
  assert.deepEqual(await waiting, { kind: "skipped", reason: "in-progress" });
  assert.deepEqual(await outcomes.next("k", 5000), { kind: "exists" });
  const pending = outcomes.next("k", 5000);
  outcomes.unwatch("k"); // a waiter is released at once
  assert.equal(await pending, null);
  assert.equal(await outcomes.next("other", 0), null);
});

Deno.test("an upload the store refuses is a failure with the store's reason", async () => {
  await withSetup(0, async (standIn, env, dir) => {
    class RefusingStore extends LocalStore {
      override put(): Promise<PutResult> {
        return Promise.reject(new StoreError("Access Denied", false, "AccessDenied"));
      }
    }
    const config = loadConfig((n) => env[n]);
    const store = new RefusingStore(dir);
    const logger = new MemoryLogger();
    const outcomes = new UploadOutcomes();
    const app = await createApp(config, logger, { store, onUploadSettled: outcomes.record });
    const counts = newCounts(2);
    await warmAll(app, outcomes, ["/r/1.png", "/r/2.png"], counts, {
      concurrency: 2,
      settleTimeoutMs: 5000,
      pollIntervalMs: 50,
    });
    await app.uploader.drain(1000);
    assert.equal(counts.failed, 2);
    assert.deepEqual([...counts.reasons], [["upload failed: Access Denied", 2]]);
    assert.equal(standIn.targets.length, 2);
    // The app's logger is an ordinary one: the uploader's own lines still reach it (the
    // second failure as a count: repeated errors are aggregated).
    app.warnings.flush();
    assert.equal(logger.find("Upload failed").length, 2);
    assert.match(logger.find("Upload failed")[1]!, /repeated=1 /);
  });
});

Deno.test("per-key outcomes: a put that answers exists is already present; one that never settles hits the deadline", async () => {
  await withSetup(0, async (standIn, env, dir) => {
    class OddStore extends LocalStore {
      override put(key: string, _body: Uint8Array, opts: PutOptions) {
        if (key === md5Hex("/exists.png")) return Promise.resolve<PutResult>("exists");
        // Never settles until the uploader's drain aborts it.
        return new Promise<PutResult>((_, reject) =>
          opts.signal?.addEventListener("abort", () => reject(opts.signal!.reason), {
            once: true,
          })
        );
      }
    }
    const config = loadConfig((n) => env[n]);
    const outcomes = new UploadOutcomes();
    const app = await createApp(config, new MemoryLogger(), {
      store: new OddStore(dir),
      onUploadSettled: outcomes.record,
    });
    const counts = newCounts(2);
    const started = Date.now();
    await warmAll(app, outcomes, ["/exists.png", "/hangs.png"], counts, {
      concurrency: 2,
      settleTimeoutMs: 300,
      pollIntervalMs: 50,
    });
    assert.ok(Date.now() - started < 5000, "the deadline bounds the wait");
    assert.equal(counts.present, 1);
    assert.equal(counts.stored, 0);
    assert.deepEqual([...counts.reasons], [["upload did not settle within 0.3 s", 1]]);
    assert.equal(standIn.targets.length, 2);
    const { lost } = await app.uploader.drain(50);
    assert.deepEqual(lost, [md5Hex("/hangs.png")]);
  });
});
