import assert from "node:assert/strict";
import { join } from "node:path";
import { md5Hex, objectKey } from "../lib/key.ts";
import { runWarm, type WarmIO } from "../lib/warm.ts";
import { exists, freePort } from "./support/net_fs.ts";
import { pngFor, withSetup } from "./support/warm_stand_in.ts";

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
