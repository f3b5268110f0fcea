/**
 * Cache rules (CACHE_ONLY / CACHE_SKIP): the table of verdicts, the configuration errors, and
 * the proxy over real sockets in write and read mode, with raw paths the URL parser would
 * rewrite (`%2e%2e`, `..`).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type App, createApp } from "../lib/app.ts";
import { type CacheRules, ruleFor } from "../lib/cache_rules.ts";
import { ConfigError, loadConfig } from "../lib/config.ts";
import { md5Hex } from "../lib/key.ts";
import { MemoryLogger } from "../lib/log.ts";
import { main } from "../main.ts";
import { type FakeImgproxy, rawRequest, startFakeImgproxy } from "./support/fake_imgproxy.ts";
import { exists } from "./support/net_fs.ts";

const rules = (only: string | null, skip: string | null): CacheRules => ({
  only: only === null ? null : new RegExp(only),
  skip: skip === null ? null : new RegExp(skip),
});

Deno.test("ruleFor() matches the raw path: outside CACHE_ONLY, inside CACHE_SKIP, else cached", () => {
  const table: [CacheRules, string, ReturnType<typeof ruleFor>][] = [
    [rules(null, null), "/anything", null],
    [rules("^/pr:", null), "/pr:thumb/plain/a.png", null],
    [rules("^/pr:", null), "/rs:fill:1:1/plain/a.png", "outside CACHE_ONLY"],
    [rules(null, "/tiles/"), "/x/plain/http://h/tiles/1.png", "matches CACHE_SKIP"],
    [rules("^/pr:", "/tiles/"), "/pr:a/plain/http://h/tiles/1.png", "matches CACHE_SKIP"],
    [rules("^/pr:", "/tiles/"), "/rs/plain/http://h/tiles/1.png", "outside CACHE_ONLY"],
    // Encoded bytes are matched as sent: %2F is not "/", %2e%2e is not "..".
    [rules(null, "/tiles/"), "/x/plain/http://h%2Ftiles%2F1.png", null],
    [rules(null, "%2[eE]%2[eE]"), "/x/plain/local:///a/%2E%2e/b.png", "matches CACHE_SKIP"],
    [rules(null, "\\.\\./"), "/x/plain/local:///a/%2e%2e/b.png", null],
  ];
  for (const [r, path, want] of table) assert.equal(ruleFor(r, path), want, path);
});

Deno.test("loadConfig() refuses a bad CACHE_ONLY or CACHE_SKIP, naming the variable", () => {
  const env: Record<string, string> = { CACHE_ONLY: "^/pr:(", CACHE_SKIP: "[z-a]" };
  assert.throws(() => loadConfig((n) => env[n]), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.problems.length, 2);
    assert.match(err.problems[0]!, /^CACHE_ONLY: expected a regular expression, got "\^\/pr:\("/);
    assert.match(err.problems[1]!, /^CACHE_SKIP: expected a regular expression, got "\[z-a\]"/);
    return true;
  });
  const ok = loadConfig((n) =>
    ({ CACHE_ONLY: "^/pr:", CACHE_SKIP: "" } as Record<string, string>)[n]
  );
  assert.equal(ok.cacheRules.only?.source, "^\\/pr:");
  assert.equal(ok.cacheRules.skip, null);
});

Deno.test("main() exits 2 on a bad CACHE_SKIP before listening", async () => {
  const logger = new MemoryLogger();
  const env: Record<string, string> = { CACHE_SKIP: "(unclosed" };
  assert.equal(await main((n) => env[n], logger), 2);
  assert.match(logger.lines.join("\n"), /CACHE_SKIP: expected a regular expression/);
});

interface Harness {
  fake: FakeImgproxy;
  app: App;
  port: number;
  dir: string;
  close(): Promise<void>;
}

async function setup(env: Record<string, string>, cacheRules?: CacheRules): Promise<Harness> {
  const fake = startFakeImgproxy();
  const dir = await Deno.makeTempDir({ prefix: "rules-test-" });
  const config = loadConfig((n) =>
    ({
      IMGPROXY_URL: fake.url,
      CACHE_DIR: dir,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "0",
      // Instruments only (nothing listens): the bypass counter is read from the registry.
      METRICS_BIND: "127.0.0.1:1",
      ...env,
    } as Record<string, string>)[n]
  );
  const app = await createApp(
    cacheRules === undefined ? config : { ...config, cacheRules },
    new MemoryLogger(),
  );
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  return {
    fake,
    app,
    port: server.addr.port,
    dir,
    async close() {
      await server.shutdown();
      assert.deepEqual((await app.uploader.drain(10_000)).lost, []);
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const GOOD = "/pr:thumb/plain/local:///x/../a.png";
const OUTSIDE = "/rs:fill:9:9/plain/local:///a.png";
const SKIPPED = "/pr:thumb/plain/local:///x/%2e%2e/a.png";

Deno.test("write mode: paths the rules leave out are answered BYPASS; reason=rule and not stored", async () => {
  const h = await setup({ CACHE_ONLY: "^/pr:", CACHE_SKIP: "%2e%2e" });
  try {
    for (const path of [GOOD, OUTSIDE, SKIPPED]) {
      const res = await rawRequest(h.port, `GET ${path} HTTP/1.1`);
      assert.equal(res.status, 200, path);
      assert.equal(
        res.headers.get("x-cache"),
        path === GOOD ? "MISS" : "BYPASS; reason=rule",
        path,
      );
    }
    // imgproxy got each raw path as sent, the left-out ones included.
    assert.deepEqual(h.fake.requests.map((r) => r.target), [GOOD, OUTSIDE, SKIPPED]);
    await h.app.uploader.drain(10_000);
    assert.ok(await exists(join(h.dir, md5Hex(GOOD))), "the cached path is stored");
    assert.ok(!await exists(join(h.dir, md5Hex(OUTSIDE))));
    assert.ok(!await exists(join(h.dir, md5Hex(SKIPPED))));
    const text = h.app.registry.render();
    assert.match(text, /^imgproxy_cache_bypasses_total\{reason="rule"\} 2$/m);
    assert.match(text, /^imgproxy_cache_requests_total\{status="200",cache="bypass"\} 2$/m);
  } finally {
    await h.close();
  }
});

Deno.test("read mode: a path the rules leave out is not looked up, even when its object is stored", async () => {
  const h = await setup({ CACHE_MODE: "read", CACHE_SKIP: "%2e%2e" });
  try {
    // An object already stored under the left-out path's key (e.g. before the rule was added).
    await h.app.store.put(md5Hex(SKIPPED), new TextEncoder().encode("old"), {
      contentType: "image/png",
      cacheControl: null,
      ifAbsent: false,
    });
    const res = await rawRequest(h.port, `GET ${SKIPPED} HTTP/1.1`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-cache"), "BYPASS; reason=rule");
    assert.equal(res.headers.get("x-cache-lookup"), null, "no lookup was made");
    assert.notDeepEqual(res.body, new TextEncoder().encode("old"));
    assert.equal(h.fake.requests.length, 1, "imgproxy answered");

    // A cached path is still looked up and answered from the store once stored.
    const first = await rawRequest(h.port, `GET ${GOOD} HTTP/1.1`);
    assert.equal(first.headers.get("x-cache"), "MISS");
    await h.app.uploader.drain(10_000);
    const second = await rawRequest(h.port, `GET ${GOOD} HTTP/1.1`);
    assert.equal(second.headers.get("x-cache"), "HIT");
    assert.deepEqual(second.body, first.body);
  } finally {
    await h.close();
  }
});

/** A rule that records each path it is asked to judge. */
class CountingRule extends RegExp {
  readonly asked: string[] = [];
  override test(path: string): boolean {
    this.asked.push(path);
    return super.test(path);
  }
}

Deno.test("read mode: each request is judged by the rules once, whether missed, left out or hit", async () => {
  // Coalesced, the proxy gets a context shared by the clients asking; not, the request's own.
  for (const coalesce of ["true", "false"]) {
    const skip = new CountingRule("%2e%2e");
    const h = await setup({ CACHE_MODE: "read", COALESCE_REQUESTS: coalesce }, {
      only: null,
      skip,
    });
    try {
      const miss = await rawRequest(h.port, `GET ${GOOD} HTTP/1.1`);
      assert.equal(miss.headers.get("x-cache"), "MISS");
      assert.deepEqual(skip.asked, [GOOD], "a miss is judged by the lookup, not again");
      const left = await rawRequest(h.port, `GET ${SKIPPED} HTTP/1.1`);
      assert.equal(left.headers.get("x-cache"), "BYPASS; reason=rule");
      assert.deepEqual(skip.asked, [GOOD, SKIPPED]);
      await h.app.uploader.drain(10_000);
      const hit = await rawRequest(h.port, `GET ${GOOD} HTTP/1.1`);
      assert.equal(hit.headers.get("x-cache"), "HIT");
      assert.deepEqual(skip.asked, [GOOD, SKIPPED, GOOD], `COALESCE_REQUESTS=${coalesce}`);
    } finally {
      await h.close();
    }
  }
});
