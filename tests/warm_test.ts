import assert from "node:assert/strict";
import { join } from "node:path";
import { createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { md5Hex, objectKey } from "../lib/key.ts";
import { MemoryLogger } from "../lib/log.ts";
import { rawTarget } from "../lib/proxy.ts";
import { LocalStore } from "../lib/store/local.ts";
import { type PutOptions, type PutResult, StoreError } from "../lib/store/store.ts";
import {
  formatSummary,
  newCounts,
  parseList,
  progressBar,
  runWarm,
  targetOf,
  UploadOutcomes,
  warmAll,
  type WarmCounts,
  type WarmIO,
  warmRequest,
} from "../lib/warm.ts";
import { exists, freePort } from "./support/net_fs.ts";

const ROOT = new URL("..", import.meta.url).pathname;

// ---------------------------------------------------------------------------------------------
// A stand-in imgproxy: /health 200, "missing" paths 404, "text" paths 200 text/plain, any other
// path a PNG; it records every raw target and the most requests it had in flight at once.

interface StandIn {
  url: string;
  targets: string[];
  health: number;
  maxInFlight: number;
  /** Called with each image request's target as it arrives. */
  onRequest: (target: string) => void;
  close(): Promise<void>;
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function pngFor(target: string): Uint8Array {
  return new Uint8Array([...PNG_MAGIC, ...new TextEncoder().encode(target)]);
}

function startStandIn(delayMs = 0): StandIn {
  let inFlight = 0;
  const state: StandIn = {
    url: "",
    targets: [],
    health: 0,
    maxInFlight: 0,
    onRequest: () => {},
    close: () => server.shutdown(),
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const target = rawTarget(req)!;
    if (target === "/health") {
      state.health++;
      return new Response("imgproxy is running");
    }
    state.targets.push(target);
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    state.onRequest(target);
    try {
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      if (target.includes("missing")) return new Response("Not Found", { status: 404 });
      if (target.includes("text")) {
        return new Response("hello", { headers: { "content-type": "text/plain" } });
      }
      return new Response(pngFor(target) as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": "image/png", "cache-control": "max-age=31536000, public" },
      });
    } finally {
      inFlight--;
    }
  });
  state.url = `http://127.0.0.1:${server.addr.port}`;
  return state;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function warm(
  args: string[],
  list: string,
  env: Record<string, string>,
  extra: Partial<WarmIO> = {},
): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await runWarm(args, {
    env: (name) => env[name],
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    isTerminal: false,
    readInput: (path) => {
      assert.equal(path, "list.txt");
      return Promise.resolve(list);
    },
    ...extra,
  });
  return { code, stdout, stderr };
}

async function withSetup(
  delayMs: number,
  fn: (s: StandIn, env: Record<string, string>, dir: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "warm-test-" });
  const standIn = startStandIn(delayMs);
  try {
    await fn(standIn, {
      IMGPROXY_URL: standIn.url,
      CACHE_DIR: dir,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "5",
    }, dir);
  } finally {
    await standIn.close();
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The list

Deno.test("targetOf: paths kept byte-for-byte, URLs cut after the authority", () => {
  const table: [string, string | null][] = [
    [
      "/rs:fit:300:300/plain/https://example.com/a.jpg",
      "/rs:fit:300:300/plain/https://example.com/a.jpg",
    ],
    ["  /a/b.png\r", "/a/b.png"],
    ["/a/../b/%2e%2e/c\\d.png?x=%2E", "/a/../b/%2e%2e/c\\d.png?x=%2E"],
    ["/a.png#fragment", "/a.png"],
    [
      "https://cdn.example.com/sig/rs:fit:5/plain/local:///x/../y.png",
      "/sig/rs:fit:5/plain/local:///x/../y.png",
    ],
    ["HTTP://user@host:8080/p%2e%2e/q?w=1#f", "/p%2e%2e/q?w=1"],
    ["http://host", "/"],
    ["http://host?x=1", "/?x=1"],
    ["https:///nohost", null],
    ["ftp://host/a.png", null],
    ["images/a.png", null],
  ];
  for (const [line, want] of table) assert.equal(targetOf(line), want, line);
});

Deno.test("parseList skips blank lines and comments, reports unusable lines with numbers", () => {
  const entries = parseList(
    "# header\n\n/a.png\r\n   # indented comment\nnot a path\nhttp://h/b\n/c d.png\n/e\tf\n" +
      "/plain/https://ex.com/café.jpg\n/plain/https://ex.com/caf%C3%A9.jpg\n",
  );
  assert.deepEqual(entries, [
    { line: 3, target: "/a.png" },
    { line: 5, error: "not a path or http(s) URL", text: "not a path" },
    { line: 6, target: "/b" },
    // No HTTP client sends a literal space (they send %20): it could not reach imgproxy.
    { line: 7, error: "space or control character (write %20)", text: "/c d.png" },
    { line: 8, error: "space or control character (write %20)", text: "/e\tf" },
    // Browsers send caf%C3%A9: a raw é would warm a key no page asks for.
    {
      line: 9,
      error: "non-ASCII character (percent-encode its UTF-8 bytes, as browsers do)",
      text: "/plain/https://ex.com/café.jpg",
    },
    { line: 10, target: "/plain/https://ex.com/caf%C3%A9.jpg" },
  ]);
});

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

Deno.test("progress bar and summary text", () => {
  const counts: WarmCounts = {
    total: 10,
    done: 5,
    stored: 3,
    present: 1,
    failed: 1,
    duplicates: 2,
    excluded: 0,
    reasons: new Map([["HTTP 404", 1]]),
    interrupted: false,
  };
  assert.equal(
    progressBar(counts, 10),
    "[#####.....]  50% 5/10 (3 stored, 1 already present, 1 failed)",
  );
  counts.reasons.set("not cacheable (content-type)", 3);
  assert.equal(
    formatSummary(counts, 1.25),
    "Warm-up finished: 10 paths in 1.3 s: 3 stored, 1 already present, 1 failed; " +
      "2 duplicate lines skipped\n" +
      "  failed 3 × not cacheable (content-type)\n" +
      "  failed 1 × HTTP 404\n",
  );
});

// ---------------------------------------------------------------------------------------------
// Runs over real sockets

const TRICKY = [
  "/rs:fill:10:10/plain/local:///a/../b.png",
  "/rs:fill:10:10/plain/local:///x/%2e%2e/y.png",
  "/rs:fit:5:5/plain/http://example.com/c%20d.png@webp",
  "/rs:fit:5:5/plain/local:///dir\\g%20h%2Fi.png",
  "/insecure/w:20/plain/local:///e.png?cb=1",
];

Deno.test("a run stores every path under the key of its raw path; a second run asks imgproxy nothing", async () => {
  await withSetup(0, async (standIn, env, dir) => {
    env.S3_FOLDER = "/warm/cache/";
    const list = [
      "# images to warm",
      "",
      ...TRICKY,
      "https://cdn.example.com/rs:fit:1:1/plain/local:///f.png#top",
      TRICKY[0]!, // duplicate
    ].join("\n");
    const first = await warm(["list.txt"], list, env);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stderr, "");
    assert.match(
      first.stdout,
      /^Warm-up finished: 6 paths in [\d.]+ s: 6 stored, 0 already present, 0 failed; 1 duplicate lines skipped\n$/m,
    );
    const expected = [...TRICKY, "/rs:fit:1:1/plain/local:///f.png"];
    // imgproxy received each path byte-for-byte, once.
    assert.deepEqual([...standIn.targets].sort(), [...expected].sort());
    assert.equal(standIn.health, 1);
    for (const target of expected) {
      const path = target.split("?")[0]!;
      const file = join(dir, "warm/cache", md5Hex(path));
      assert.deepEqual(await Deno.readFile(file), pngFor(target), target);
      assert.equal(objectKey(path, "warm/cache"), `warm/cache/${md5Hex(path)}`);
    }

    const seen = standIn.targets.length;
    const second = await warm(["list.txt"], list, env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(
      second.stdout,
      /^Warm-up finished: 6 paths in [\d.]+ s: 0 stored, 6 already present, 0 failed; 1 duplicate lines skipped\n$/m,
    );
    assert.equal(standIn.targets.length, seen, "no image request on the second run");
    assert.equal(standIn.health, 1, "not even a health check on the second run");
  });
});

Deno.test("failures are counted and grouped by reason; good paths are still stored", async () => {
  await withSetup(0, async (standIn, env, dir) => {
    const list = ["/missing/1.png", "/ok/1.png", "/missing/2.png", "/text/1", "nonsense"].join(
      "\n",
    );
    const run = await warm(["list.txt", "--every", "1000"], list, env);
    assert.equal(run.code, 1);
    const lines = run.stdout.trimEnd().split("\n");
    const summary = lines.slice(lines.findIndex((l) => l.startsWith("Warm-up")));
    assert.match(
      summary[0]!,
      /^Warm-up finished: 5 paths in [\d.]+ s: 1 stored, 0 already present, 4 failed$/,
    );
    assert.deepEqual(summary.slice(1), [
      "  failed 2 × HTTP 404",
      "  failed 1 × not a path or http(s) URL",
      "  failed 1 × not cacheable (content-type)",
    ]);
    assert.match(run.stderr, /^failed line 5: not a path or http\(s\) URL: nonsense$/m);
    assert.match(run.stderr, /^failed \/missing\/1\.png: HTTP 404$/m);
    assert.ok(await exists(join(dir, md5Hex("/ok/1.png"))));
    assert.ok(!await exists(join(dir, md5Hex("/missing/1.png"))));
    assert.equal(standIn.targets.length, 4);
  });
});

Deno.test("cache rules: lines CACHE_ONLY/CACHE_SKIP leave out are skipped, said why, never requested", async () => {
  await withSetup(0, async (standIn, env, dir) => {
    env.CACHE_ONLY = "^/pr:";
    env.CACHE_SKIP = "%2e%2e";
    const list = [
      "/pr:thumb/plain/local:///a.png",
      "/rs:fill:9:9/plain/local:///b.png",
      "/pr:thumb/plain/local:///x/%2e%2e/c.png",
      // Decoded, this is the first line's neighbour: the raw bytes decide, and they match.
      "/pr:thumb/plain/local:///x/%2E%2E/d.png",
    ].join("\n");
    const run = await warm(["list.txt"], list, env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^Warm-up finished: 2 paths in [\d.]+ s: 2 stored, 0 already present, 0 failed; 2 lines skipped by CACHE_ONLY\/CACHE_SKIP\n$/m,
    );
    assert.match(
      run.stderr,
      /^skipped line 2: outside CACHE_ONLY: \/rs:fill:9:9\/plain\/local:\/\/\/b\.png$/m,
    );
    assert.match(
      run.stderr,
      /^skipped line 3: matches CACHE_SKIP: \/pr:thumb\/plain\/local:\/\/\/x\/%2e%2e\/c\.png$/m,
    );
    assert.deepEqual([...standIn.targets].sort(), [
      "/pr:thumb/plain/local:///a.png",
      "/pr:thumb/plain/local:///x/%2E%2E/d.png",
    ]);
    assert.ok(await exists(join(dir, md5Hex("/pr:thumb/plain/local:///x/%2E%2E/d.png"))));
    assert.ok(!await exists(join(dir, md5Hex("/rs:fill:9:9/plain/local:///b.png"))));
  });
});

Deno.test("concurrency bound: --concurrency N requests at most N at once (default 4)", async () => {
  await withSetup(40, async (standIn, env) => {
    const list = Array.from({ length: 12 }, (_, i) => `/c3/${i}.png`).join("\n");
    const run = await warm(["--concurrency", "3", "list.txt"], list, env);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(standIn.targets.length, 12);
    assert.equal(standIn.maxInFlight, 3);

    standIn.maxInFlight = 0;
    const list4 = Array.from({ length: 12 }, (_, i) => `/c4/${i}.png`).join("\n");
    const run4 = await warm(["list.txt"], list4, env);
    assert.equal(run4.code, 0, run4.stderr);
    assert.equal(standIn.maxInFlight, 4);

    standIn.maxInFlight = 0;
    const list1 = Array.from({ length: 4 }, (_, i) => `/c1/${i}.png`).join("\n");
    const run1 = await warm(["-c", "1", "list.txt"], list1, env);
    assert.equal(run1.code, 0, run1.stderr);
    assert.equal(standIn.maxInFlight, 1);
  });
});

Deno.test("interrupt: no new paths, in-flight ones finish and are stored, exit 130; a rerun continues", async () => {
  await withSetup(30, async (standIn, env, dir) => {
    const paths = Array.from({ length: 10 }, (_, i) => `/int/${i}.png`);
    const list = paths.join("\n");
    const interrupt = new AbortController();
    standIn.onRequest = () => {
      if (standIn.targets.length === 3) interrupt.abort();
    };
    const first = await warm(["-c", "2", "list.txt"], list, env, { interrupt: interrupt.signal });
    assert.equal(first.code, 130, first.stderr);
    // The third request was already under way (2 workers): 3 or 4 paths made it, all stored.
    const n = standIn.targets.length;
    assert.ok(n >= 3 && n <= 4, `requests: ${n}`);
    assert.match(
      first.stdout,
      new RegExp(
        `^Warm-up interrupted after ${n} of 10 paths in [\\d.]+ s: ${n} stored, 0 already present, 0 failed$`,
        "m",
      ),
    );
    assert.match(first.stdout, /^Run the same command again to continue/m);
    for (const t of standIn.targets) assert.ok(await exists(join(dir, md5Hex(t))), t);

    standIn.onRequest = () => {};
    const second = await warm(["-c", "2", "list.txt"], list, env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(
      second.stdout,
      new RegExp(
        `^Warm-up finished: 10 paths in [\\d.]+ s: ${
          10 - n
        } stored, ${n} already present, 0 failed$`,
        "m",
      ),
    );
    assert.equal(standIn.targets.length, 10, "each path requested once over both runs");
    assert.deepEqual(new Set(standIn.targets), new Set(paths));
  });
});

Deno.test("output: progress lines every N paths off a terminal, a redrawn bar on one", async () => {
  await withSetup(0, async (_standIn, env) => {
    const list = Array.from({ length: 5 }, (_, i) => `/p/${i}.png`).join("\n");
    const plain = await warm(["-c", "1", "--every", "2", "list.txt"], list, env);
    assert.equal(plain.code, 0);
    assert.ok(!plain.stdout.includes("\r"));
    const progress = plain.stdout.split("\n").filter((l) => l.startsWith("progress"));
    assert.deepEqual(progress, [
      "progress 2/5: 2 stored, 0 already present, 0 failed",
      "progress 4/5: 4 stored, 0 already present, 0 failed",
    ]);

    const tty = await warm(["list.txt"], list, env, { isTerminal: true });
    assert.equal(tty.code, 0);
    assert.ok(tty.stdout.startsWith("\r\x1b[2K[......"), JSON.stringify(tty.stdout.slice(0, 40)));
    assert.ok(
      tty.stdout.includes(
        "\r\x1b[2K[" + "#".repeat(30) + "] 100% 5/5 (0 stored, 5 already present",
      ),
    );
    assert.match(tty.stdout, /\nWarm-up finished: 5 paths/);
  });
});

/** Warms a two-path list against an imgproxy address nothing listens on. */
async function warmWithoutImgproxy(healthTimeoutSec: string, extra: Partial<WarmIO> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "warm-test-" });
  try {
    return await warm(["list.txt"], "/a.png\n/b.png\n", {
      IMGPROXY_URL: `http://127.0.0.1:${freePort()}`,
      CACHE_DIR: dir,
      HEALTH_CHECK_TIMEOUT_IN_SEC: healthTimeoutSec,
    }, extra);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("an imgproxy that never gets ready stops the run with exit 1", async () => {
  const run = await warmWithoutImgproxy("1");
  assert.equal(run.code, 1);
  assert.match(run.stderr, /imgproxy did not become ready in time/);
  assert.match(run.stderr, /is not ready; stopped/);
});

Deno.test("Ctrl-C while waiting for imgproxy stops the wait at once: exit 130, not 1", async () => {
  const interrupt = new AbortController();
  setTimeout(() => interrupt.abort(), 300);
  const started = Date.now();
  const run = await warmWithoutImgproxy("30", { interrupt: interrupt.signal });
  const took = Date.now() - started;
  assert.equal(run.code, 130, run.stderr);
  assert.ok(took < 5000, `the run took ${took} ms after Ctrl-C at 300 ms`);
  assert.doesNotMatch(run.stderr, /is not ready; stopped/);
  assert.match(run.stdout, /^Warm-up interrupted /m);
});

Deno.test("usage and configuration errors exit 2 before any request", async () => {
  const bad = await warm([], "", {});
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /expected exactly one list file/);
  assert.equal((await warm(["list.txt", "-c", "0"], "", {})).code, 2);
  const conf = await warm(["list.txt"], "/a.png", { IMGPROXY_URL: "not a url" });
  assert.equal(conf.code, 2);
  assert.match(conf.stderr, /IMGPROXY_URL/);
  // A store the run could not write to stops it before any request, naming the variable.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "not a directory");
    const store = await warm(["list.txt"], "/a.png", { CACHE_DIR: `${dir}/file/cache` });
    assert.equal(store.code, 2);
    assert.match(store.stderr, /the store cannot work as configured: CACHE_DIR: cannot create/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const help = await warm(["--help"], "", {});
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task warm/);
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

Deno.test("deno task warm: real subprocess with the task's flags; SIGINT exits 130 after the summary", async () => {
  await withSetup(150, async (standIn, env, dir) => {
    const listFile = join(dir, "list.txt");
    const paths = Array.from({ length: 20 }, (_, i) => `/sub/${i}.png`);
    await Deno.writeTextFile(listFile, paths.join("\n") + "\n");
    const cacheDir = join(dir, "cache");
    const started = Promise.withResolvers<void>();
    standIn.onRequest = () => {
      if (standIn.targets.length === 2) started.resolve();
    };
    const tasks = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks;
    assert.equal(tasks.warm, "sh ./bin/warm", "the task runs bin/warm (scoped flags)");
    // The list lies outside CACHE_DIR: only bin/warm's --read lets the run open it.
    const child = new Deno.Command("deno", {
      args: ["task", "--quiet", "warm", "-c", "2", listFile],
      cwd: ROOT,
      env: { ...env, CACHE_DIR: cacheDir, S3_BUCKET: "", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = child.output();
    await started.promise;
    child.kill("SIGINT");
    const { code, stdout, stderr } = await output;
    const out = new TextDecoder().decode(stdout);
    const err = new TextDecoder().decode(stderr);
    assert.equal(code, 130, out + err);
    assert.match(err, /Interrupted: finishing the paths in flight/);
    const n = standIn.targets.length;
    assert.ok(n >= 2 && n < 20, `requests: ${n}`);
    assert.match(
      out,
      new RegExp(`^Warm-up interrupted after ${n} of 20 paths .*: ${n} stored`, "m"),
    );
    for (const t of standIn.targets) assert.ok(await exists(join(cacheDir, md5Hex(t))), t);
  });
});

Deno.test("bin/warm: --no-listen always, --read for the list file wherever it is among the options", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warm-bin-" });
  try {
    // A stand-in for deno: the permissions call prints its own arguments as "flags" (P:…),
    // the final call prints every argument, one a line.
    const fake = join(dir, "deno");
    await Deno.writeTextFile(
      fake,
      `#!/bin/sh
if [ "$2" = --quiet ]; then
  seen=0
  for a in "$@"; do
    [ "$seen" = 1 ] && printf 'P:%s\\n' "$a"
    case $a in */lib/permissions.ts) seen=1 ;; esac
  done
else
  printf '%s\\n' "$@"
fi
`,
      { mode: 0o755 },
    );
    const run = async (args: string[]) => {
      const out = await new Deno.Command("sh", {
        args: [join(ROOT, "bin/warm"), ...args],
        env: { DENO: fake },
        stdout: "piped",
        stderr: "inherit",
      }).output();
      assert.equal(out.code, 0);
      const lines = new TextDecoder().decode(out.stdout).trimEnd().split("\n");
      const script = lines.indexOf(join(ROOT, "warm.ts"));
      assert.ok(script > 0, lines.join("\n"));
      return {
        perms: lines.filter((l) => l.startsWith("P:")).map((l) => l.slice(2)),
        passed: lines.slice(script + 1),
      };
    };
    const cases: [string[], string | null][] = [
      [["-c", "2", "list.txt"], "list.txt"],
      [["list.txt", "-c", "2"], "list.txt"],
      [["--every=5", "-v", "--settle-timeout", "3", "my list.txt"], "my list.txt"],
      [["--interval", "1", "-vc", "3", "a.txt", "--concurrency", "2"], "a.txt"],
      [["--", "-odd.txt"], "-odd.txt"],
      [["-c", "2", "-"], null], // standard input: nothing to read
      [["--help"], null],
    ];
    for (const [args, file] of cases) {
      const { perms, passed } = await run(args);
      assert.deepEqual(perms, file === null ? ["--no-listen"] : ["--no-listen", "--read", file]);
      assert.deepEqual(passed, args, "warm.ts gets the arguments unchanged");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bin/warm reads the list from standard input with -", async () => {
  await withSetup(0, async (standIn, env, dir) => {
    const child = new Deno.Command("sh", {
      args: [join(ROOT, "bin/warm"), "-"],
      env: { ...env, S3_BUCKET: "", NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("# two paths\n/in/1.png\n/in/2.png\n"));
    await writer.close();
    const { code, stdout, stderr } = await child.output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(code, 0, out + new TextDecoder().decode(stderr));
    assert.match(out, /^Warm-up finished: 2 paths in [\d.]+ s: 2 stored, 0 already present/m);
    assert.equal(standIn.targets.length, 2);
    for (const t of standIn.targets) assert.ok(await exists(join(dir, md5Hex(t))), t);
  });
});
