/**
 * The store check's pieces that the end-to-end suite (e2e/store_check_test.ts, versitygw) does
 * not reach: the local directory's file-system requirements, S3 error text decoding, and the
 * background re-check's bounded life (stopped on shutdown, no timer left behind).
 */
import assert from "node:assert/strict";
import { loadConfig, type S3StoreConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { type CheckFs, checkLocalDir, denoFs } from "../lib/store/local_check.ts";
import { decodeXmlText } from "../lib/store/s3_request.ts";
import type { S3CheckResult } from "../lib/store/s3_check.ts";
import { checkStoreAtStartup, newStoreCheckStats, type S3Probe } from "../lib/store_check.ts";

/** Deno's file system, with one call made to fail like `error`. */
function failing(call: keyof CheckFs, error: Error): CheckFs {
  const fs: CheckFs = { ...denoFs };
  fs[call] = () => Promise.reject(error);
  return fs;
}

async function listed(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("checkLocalDir() accepts a writable directory (and the folder under it) and leaves nothing behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.deepEqual(await checkLocalDir(`${dir}/cache`, "a/b"), { kind: "ok" });
    assert.deepEqual(await listed(`${dir}/cache/a/b`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkLocalDir() refuses a file system without hard links, naming CACHE_DIR, and cleans up", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // What FAT, some FUSE and SMB mounts answer to link().
    const err = new Deno.errors.PermissionDenied("Operation not permitted (os error 1)");
    const r = await checkLocalDir(dir, "", failing("link", err));
    assert.equal(r.kind, "misconfigured");
    assert.match(r.kind === "misconfigured" ? r.message : "", /^CACHE_DIR: cannot hard-link/);
    assert.match(r.kind === "misconfigured" ? r.message : "", /local file system/);
    assert.deepEqual(await listed(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkLocalDir() refuses a failed rename and a path under a file; a full disk only degrades", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rename = await checkLocalDir(dir, "", failing("rename", new Error("EXDEV")));
    assert.match(rename.kind === "misconfigured" ? rename.message : "", /cannot rename/);
    assert.deepEqual(await listed(dir), []);
    await Deno.writeTextFile(`${dir}/file`, "x");
    const under = await checkLocalDir(`${dir}/file/cache`, "");
    assert.match(under.kind === "misconfigured" ? under.message : "", /^CACHE_DIR: cannot create/);
    const full = new Error("No space left on device (os error 28)");
    assert.equal((await checkLocalDir(dir, "", failing("writeFile", full))).kind, "degraded");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decodeXmlText() decodes named and numeric references as S3 stores send them", () => {
  assert.equal(
    decodeXmlText("the region &#34;auto&#34; is wrong; expecting &#x22;us-east-1&#x22;"),
    'the region "auto" is wrong; expecting "us-east-1"',
  );
  assert.equal(decodeXmlText("a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;"), `a <b> & "c" 'd'`);
  assert.equal(decodeXmlText("&#0; &#xFFFFFFF; &unknown;"), "&#0; &#xFFFFFFF; &unknown;");
});

const S3_ENV: Record<string, string> = {
  S3_BUCKET: "b",
  S3_ENDPOINT: "http://127.0.0.1:9",
  AWS_ACCESS_KEY_ID: "k",
  AWS_SECRET_ACCESS_KEY: "s",
};

/** A probe that gives `answers` in turn (the last one forever), counting its calls. */
function scripted(...answers: S3CheckResult[]) {
  const calls: (AbortSignal | undefined)[] = [];
  const probe: S3Probe = (_config, _timeout, signal) => {
    calls.push(signal);
    return Promise.resolve(answers[Math.min(calls.length - 1, answers.length - 1)]!);
  };
  return { probe, calls };
}

const down: S3CheckResult = { kind: "unreachable", reason: "ECONNREFUSED" };

Deno.test("checkStoreAtStartup(): a store down at start → serve, WARN; checked again with growing waits until it answers", async () => {
  const config = loadConfig((name) => S3_ENV[name]);
  const logger = new MemoryLogger();
  const stats = newStoreCheckStats();
  const s3 = config.store as S3StoreConfig;
  const { probe, calls } = scripted(down, down, down, { kind: "ok", config: s3, notes: [] });
  const verdict = await checkStoreAtStartup(config, logger, { stats, probe, intervalMs: 1 });
  assert.equal(verdict.kind, "serve");
  if (verdict.kind !== "serve" || verdict.recheck === null) throw new Error("no recheck");
  assert.equal(logger.find("WARN The store does not answer").length, 1);
  await verdict.recheck.done;
  assert.equal(calls.length, 4);
  assert.deepEqual(stats, { ok: 1, unreachable: 3, misconfigured: 0 });
  assert.deepEqual(
    logger.find("The store still does not answer").map((l) => /nextInSec=(\S+)/.exec(l)?.[1]),
    ["0.002", "0.004"],
  );
  assert.equal(logger.find("INFO The store answers now").length, 1);
  await verdict.recheck.stop();
  // It had ended: nothing was stopped.
  assert.equal(logger.find("Stopped checking the store").length, 0);
});

Deno.test("StoreRecheck: stop() ends the checking at once, a pending wait included", async () => {
  const config = loadConfig((name) => S3_ENV[name]);
  const { probe, calls } = scripted(down);
  const logger = new MemoryLogger();
  const verdict = await checkStoreAtStartup(config, logger, {
    probe,
    intervalMs: 60_000, // a wait that would outlive the test (the sanitizers would say)
  });
  if (verdict.kind !== "serve" || verdict.recheck === null) throw new Error("no recheck");
  await verdict.recheck.stop();
  await verdict.recheck.done;
  assert.equal(calls.length, 1);
  await verdict.recheck.stop();
  // Once, however often it is stopped.
  const stopped = logger.find("Stopped checking the store");
  assert.equal(stopped.length, 1);
  assert.match(stopped[0]!, /INFO .* endpoint=http:\/\/127\.0\.0\.1:9 attempts=0$/);
});

Deno.test("StoreRecheck: a store that answers but is misconfigured is an ERROR and no longer checked", async () => {
  const config = loadConfig((name) => S3_ENV[name]);
  const logger = new MemoryLogger();
  const answer: S3CheckResult = {
    kind: "misconfigured",
    message: 'S3_BUCKET: bucket "b" does not exist',
  };
  const { probe, calls } = scripted(down, answer);
  const verdict = await checkStoreAtStartup(config, logger, { probe, intervalMs: 1 });
  if (verdict.kind !== "serve" || verdict.recheck === null) throw new Error("no recheck");
  await verdict.recheck.done;
  assert.equal(calls.length, 2);
  const errors = logger.find(" ERROR ");
  assert.equal(errors.length, 1, logger.lines.join("\n"));
  assert.match(errors[0]!, /S3_BUCKET/);
});

Deno.test("StoreRecheck: a store that answers and names another region → WARN with the region to set, storing resumes", async () => {
  const config = loadConfig((name) => S3_ENV[name]);
  const s3 = config.store as S3StoreConfig;
  const logger = new MemoryLogger();
  const { probe } = scripted(down, {
    kind: "ok",
    config: { ...s3, region: "eu-west-1" },
    notes: ["S3_REGION: the store expects region eu-west-1"],
  });
  const verdict = await checkStoreAtStartup(config, logger, { probe, intervalMs: 1 });
  if (verdict.kind !== "serve" || verdict.recheck === null) throw new Error("no recheck");
  await verdict.recheck.done;
  assert.equal(logger.find(" ERROR ").length, 0);
  assert.equal(logger.find("WARN S3_REGION: the store expects region eu-west-1").length, 1);
  assert.equal(logger.find("INFO The store answers now").length, 1);
});

Deno.test("checkStoreAtStartup(): misconfigured → stop with the message; a named region → the store uses it, WARN says so", async () => {
  const config = loadConfig((name) => S3_ENV[name]);
  const s3 = config.store as S3StoreConfig;
  const stop = await checkStoreAtStartup(config, new MemoryLogger(), {
    probe: scripted({ kind: "misconfigured", message: "AWS_SECRET_ACCESS_KEY: rejected" }).probe,
  });
  assert.deepEqual(stop, { kind: "stop", message: "AWS_SECRET_ACCESS_KEY: rejected" });
  const logger = new MemoryLogger();
  const moved = await checkStoreAtStartup(config, logger, {
    probe: scripted({
      kind: "ok",
      config: { ...s3, region: "us-west-2" },
      notes: ["S3_REGION: the store expects region us-west-2"],
    }).probe,
  });
  assert.equal(
    moved.kind === "serve" && moved.config.store.kind === "s3" && moved.config.store.region,
    "us-west-2",
  );
  assert.equal(moved.kind === "serve" && moved.recheck, null);
  assert.equal(logger.find("WARN S3_REGION: the store expects region us-west-2").length, 1);
});
