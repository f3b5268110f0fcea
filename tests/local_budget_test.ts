/**
 * The bounded local store (CACHE_DIR_MAX_BYTES) on a real directory: least-recently-used
 * eviction where a hit counts as a use, eviction under concurrent writes and hits, the start-up
 * accounting of an existing directory (crash leftovers included) without holding requests, and
 * nothing outside the directory ever removed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createApp, createStore, drainUploads, logStartup } from "../lib/app.ts";
import { ConfigError, loadConfig } from "../lib/config.ts";
import { md5Hex } from "../lib/key.ts";
import { MemoryLogger } from "../lib/log.ts";
import { BoundedLocalStore } from "../lib/store/bounded_local.ts";
import { LocalStore } from "../lib/store/local.ts";
import { LocalBudget } from "../lib/store/local_budget.ts";
import type { ReadDir } from "../lib/store/local_walk.ts";
import type { PutOptions } from "../lib/store/store.ts";
import { startFakeImgproxy } from "./support/fake_imgproxy.ts";
import { exists, withTempDir } from "./support/net_fs.ts";

const META: PutOptions = { contentType: "image/png", cacheControl: null, ifAbsent: true };
/** What an object of `n` body bytes with `options` takes on disk, sidecar included (measured). */
async function measure(options: PutOptions, n: number): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "budget-size-" });
  try {
    const store = new LocalStore(dir);
    await store.put("sample", new Uint8Array(n), options);
    return await store.sizeOf("sample");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
const SIZE_100 = await measure(META, 100);
/** Objects in these tests have 100-byte bodies (sidecar sizes depend on the digits of length). */
const size = (n: number) => {
  assert.equal(n, 100);
  return SIZE_100;
};
const body = (key: string, n: number) => new Uint8Array(n).fill(key.length + n);

/** Every file under `dir` (relative), without following links. */
async function files(dir: string, rel = ""): Promise<{ path: string; bytes: number }[]> {
  const out: { path: string; bytes: number }[] = [];
  for await (const e of Deno.readDir(rel === "" ? dir : join(dir, rel))) {
    const p = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory) out.push(...await files(dir, p));
    else if (e.isFile) out.push({ path: p, bytes: (await Deno.lstat(join(dir, p))).size });
  }
  return out;
}

const du = async (dir: string) => (await files(dir)).reduce((n, f) => n + f.bytes, 0);

const withDir = (fn: (dir: string) => Promise<void>) => withTempDir("budget-", fn);

function bounded(dir: string, maxBytes: number, readDir?: ReadDir) {
  const logger = new MemoryLogger();
  const store = new BoundedLocalStore(new LocalStore(dir), maxBytes, readDir);
  store.start(logger);
  return { store, logger };
}

Deno.test("LocalBudget keeps bytes in use order: set and touch make a key the newest", () => {
  const b = new LocalBudget();
  b.set("a", 10);
  b.set("b", 20);
  b.set("c", 30);
  assert.equal(b.totalBytes, 60);
  b.touch("a");
  assert.equal(b.oldest(new Set()), "b");
  assert.equal(b.oldest(new Set(["b"])), "c");
  b.set("b", 5); // rewritten: newer, smaller
  assert.equal(b.totalBytes, 45);
  assert.equal(b.oldest(new Set()), "c");
  assert.equal(b.remove("c"), 30);
  assert.equal(b.remove("c"), 0);
  // Found on disk: older than anything recorded meanwhile, oldest use first.
  b.addScanned([
    { key: "x", bytes: 1, usedAt: 200 },
    { key: "y", bytes: 2, usedAt: 100 },
    { key: "a", bytes: 99, usedAt: 300 }, // recorded meanwhile: the newer entry stays
  ]);
  const order: string[] = [];
  const skip = new Set<string>();
  for (let k = b.oldest(skip); k !== undefined; k = b.oldest(skip)) {
    order.push(k);
    skip.add(k);
  }
  assert.deepEqual(order, ["y", "x", "a", "b"]);
  assert.equal(b.totalBytes, 2 + 1 + 10 + 5);
});

Deno.test("past the bound the least recently used objects go, and a hit counts as a use", async () => {
  await withDir(async (dir) => {
    const { store, logger } = bounded(dir, 5 * size(100));
    await store.settled();
    for (let i = 0; i < 5; i++) await store.put(`k${i}`, body(`k${i}`, 100), META);
    const hit = await store.open("k0");
    assert.ok(hit);
    await hit.body.cancel();
    await store.put("k5", body("k5", 100), META);
    await store.settled();
    assert.equal(await store.has("k0"), true, "used, so kept");
    assert.equal(await store.has("k1"), false, "least recently used, so removed");
    for (const k of ["k2", "k3", "k4", "k5"]) assert.equal(await store.has(k), true, k);
    assert.equal(store.stats.evictions, 1);
    assert.equal(store.stats.evictedBytes, size(100));
    assert.equal(await du(dir), store.budget.totalBytes);
    assert.ok(!await exists(join(dir, "k1.meta.json")), "the sidecar goes with the object");
    assert.equal(logger.find("Evicted least recently used objects").length, 1);
  });
});

Deno.test("concurrent writes and hits while evicting: under the bound, accounted exactly, every object whole", async () => {
  await withDir(async (dir) => {
    const max = 20_000; // room for about 20 of the objects below
    const { store } = bounded(dir, max);
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 150; i++) {
      const key = `sub/k${i % 60}`; // rewrites of the same keys too
      const n = 500 + (i % 7) * 100;
      writes.push(store.put(key, body(key, n), { ...META, ifAbsent: i % 3 !== 0 }));
      writes.push(
        store.open(`sub/k${(i * 7) % 60}`).then((o) => o?.body.cancel()),
      );
    }
    await Promise.all(writes);
    await store.settled();
    assert.ok(store.stats.evictions > 0);
    assert.ok(store.budget.totalBytes <= max, `${store.budget.totalBytes} > ${max}`);
    const all = await files(dir);
    assert.equal(all.reduce((n, f) => n + f.bytes, 0), store.budget.totalBytes);
    assert.deepEqual(all.filter((f) => f.path.includes(".tmp-")), [], "no temporary files");
    const objects = all.filter((f) => !f.path.endsWith(".meta.json")).map((f) => f.path);
    const sidecars = all.filter((f) => f.path.endsWith(".meta.json")).map((f) =>
      f.path.slice(0, -".meta.json".length)
    );
    assert.deepEqual(objects.sort(), sidecars.sort(), "every object has its sidecar and back");
    for (const key of objects) {
      const obj = await store.get(key);
      assert.ok(obj, key);
      assert.deepEqual(obj.body, body(key, obj.body.byteLength), key);
    }
  });
});

Deno.test("start-up accounting: existing objects by last use, crash leftovers first, temp files and links left alone", async () => {
  const outside = await Deno.makeTempDir({ prefix: "budget-outside-" });
  try {
    await withDir(async (dir) => {
      const plain = new LocalStore(dir);
      const keys = Array.from(
        { length: 12 },
        (_, i) => (i % 2 ? `a/b/${md5Hex(`k${i}`)}` : md5Hex(`k${i}`)),
      );
      for (const [i, key] of keys.entries()) {
        await plain.put(key, body(key, 100), META);
        const t = new Date(Date.UTC(2026, 0, 1, 0, i)); // k0 oldest ... k11 newest
        await Deno.utime(join(dir, key), t, t);
      }
      // A crash mid-eviction: a sidecar whose object is gone.
      const orphan = `${md5Hex("orphan")}-webp.meta.json`;
      await Deno.writeTextFile(join(dir, orphan), '{"contentType":"image/png"}');
      // A file an operator left there is not an object.
      await Deno.writeTextFile(join(dir, "NOTES.txt"), "keep");
      // A write under way (or crashed): its temporary file is not an object.
      await Deno.writeTextFile(join(dir, `${md5Hex("k99")}.tmp-1234`), "x".repeat(5000));
      // Links to the outside are never followed nor removed.
      await Deno.writeTextFile(join(outside, "precious"), "keep".repeat(1000));
      await Deno.symlink(outside, join(dir, "linkdir"));
      await Deno.symlink(join(outside, "precious"), join(dir, "linkfile"));

      const { store, logger } = bounded(dir, 8 * size(100));
      await store.settled();
      assert.ok(store.scanned);
      assert.equal(logger.find("Cache directory accounted").length, 1);
      assert.ok(!await exists(join(dir, orphan)), "the leftover went first");
      assert.equal(await Deno.readTextFile(join(dir, "NOTES.txt")), "keep");
      for (const [i, key] of keys.entries()) {
        assert.equal(await store.has(key), i >= 4, key); // the 4 least recently used went
      }
      assert.ok(await exists(join(dir, `${md5Hex("k99")}.tmp-1234`)));
      assert.equal(await Deno.readTextFile(join(outside, "precious")), "keep".repeat(1000));
      assert.ok((await Deno.lstat(join(dir, "linkdir"))).isSymlink);
      assert.ok((await Deno.lstat(join(dir, "linkfile"))).isSymlink);
      assert.equal(store.budget.totalBytes, 8 * size(100));
    });
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("a start-up scan still under way holds no write and no hit; eviction waits for it", async () => {
  await withDir(async (dir) => {
    const plain = new LocalStore(dir);
    const old = [0, 1, 2].map((i) => md5Hex(`old${i}`));
    for (const k of old) await plain.put(k, body("o", 100), META);
    const gate = Promise.withResolvers<void>();
    const slowReadDir: ReadDir = async function* (path) {
      await gate.promise; // a huge directory, still being read
      yield* Deno.readDir(path);
    };
    const { store } = bounded(dir, 4 * size(100), slowReadDir);
    assert.equal(await store.put("new0", body("n", 100), META), "stored");
    assert.equal(await store.put("new1", body("n", 100), META), "stored");
    const hit = await store.get(old[0]!);
    assert.ok(hit, "hits are served while the directory is being accounted");
    assert.equal(store.scanned, false);
    assert.equal(store.stats.evictions, 0, "no eviction before the directory is known");
    gate.resolve();
    await store.settled();
    // 5 objects found, 4 allowed: the oldest found on disk that was not used since goes.
    assert.equal(store.stats.evictions, 1);
    assert.equal(await store.has("new0"), true);
    assert.equal(await store.has("new1"), true);
    assert.equal(await store.has(old[0]!), true, "used during the scan");
    assert.equal(
      [await store.has(old[1]!), await store.has(old[2]!)].filter((x) => !x).length,
      1,
    );
    assert.equal(await du(dir), store.budget.totalBytes);
  });
});

/** A local store whose removals wait for `gate`. */
class SlowDeleteStore extends LocalStore {
  readonly gate = Promise.withResolvers<void>();
  started = Promise.withResolvers<string>();
  override async delete(key: string): Promise<void> {
    this.started.resolve(key);
    await this.gate.promise;
    return super.delete(key);
  }
}

Deno.test("a stuck eviction blocks no write and no hit; a write of the key being removed waits for it", async () => {
  await withDir(async (dir) => {
    const inner = new SlowDeleteStore(dir);
    const store = new BoundedLocalStore(inner, 2 * size(100));
    store.start(new MemoryLogger());
    await store.settled();
    await store.put("a", body("a", 100), META);
    await store.put("b", body("b", 100), META);
    await store.put("c", body("c", 100), META); // over: "a" is being removed, stuck
    assert.equal(await inner.started.promise, "a");
    // Writes and hits go on while the removal is stuck.
    assert.equal(await store.put("d", body("d", 100), META), "stored");
    assert.ok(await store.get("b"));
    // A new write of "a" waits for the removal, then stores a whole object.
    const rewrite = store.put("a", body("a", 100), { ...META, ifAbsent: false });
    inner.gate.resolve();
    assert.equal(await rewrite, "stored");
    await store.settled();
    assert.ok(await store.get("a"), "the rewritten object has its sidecar");
    assert.ok(store.budget.totalBytes <= 2 * size(100));
    assert.equal(await du(dir), store.budget.totalBytes);
  });
});

Deno.test("the proxy with CACHE_DIR_MAX_BYTES: says so at start-up, evicts, counts evictions, stops on drain", async () => {
  await withDir(async (dir) => {
    const env: Record<string, string> = {
      CACHE_DIR: dir,
      CACHE_DIR_MAX_BYTES: String(2 * size(100)),
      METRICS_BIND: "127.0.0.1:0",
    };
    const logger = new MemoryLogger();
    const config = loadConfig((n) => env[n]);
    const bounded = await createStore(config);
    assert.ok(bounded instanceof BoundedLocalStore);
    const app = await createApp(config, logger, { store: bounded });
    logStartup(app, logger);
    assert.equal(logger.find("Cache directory bounded").length, 1, logger.lines.join("\n"));
    await bounded.settled(); // the start-up scan (started by createApp) is done
    for (const k of ["a", "b", "c"]) await app.store.put(k, body(k, 100), META);
    await drainUploads(app, logger);
    const text = app.registry.render();
    assert.match(text, /^imgproxy_cache_evictions_total 1$/m);
    assert.match(text, new RegExp(`^imgproxy_cache_evicted_bytes_total ${size(100)}$`, "m"));
    assert.match(text, new RegExp(`^imgproxy_cache_dir_bytes ${2 * size(100)}$`, "m"));
    assert.equal(await du(dir), 2 * size(100));

    const unbounded = new MemoryLogger();
    const plain = await createApp(loadConfig((n) => ({ CACHE_DIR: dir })[n]), unbounded);
    logStartup(plain, unbounded);
    assert.equal(unbounded.find("CACHE_DIR_MAX_BYTES is not set").length, 1);
    await drainUploads(plain, unbounded);
  });
});

Deno.test("loadConfig(): CACHE_DIR_MAX_BYTES is a byte count for the local store only", () => {
  const load = (env: Record<string, string>) => () => loadConfig((n) => env[n]);
  assert.equal(loadConfig((n) => ({ CACHE_DIR_MAX_BYTES: "1048576" })[n]).store.kind, "local");
  const store = loadConfig((n) => ({ CACHE_DIR_MAX_BYTES: "1048576" })[n]).store;
  assert.equal(store.kind === "local" && store.maxBytes, 1048576);
  for (const bad of ["10G", "-1", "0", "1.5"]) {
    assert.throws(load({ CACHE_DIR_MAX_BYTES: bad }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /CACHE_DIR_MAX_BYTES: expected a whole number/);
      return true;
    }, bad);
  }
  assert.throws(
    load({ CACHE_DIR_MAX_BYTES: "1000", S3_BUCKET: "b" }),
    /CACHE_DIR_MAX_BYTES: .*S3_BUCKET/,
  );
});

Deno.test("over real sockets: concurrent misses stored and evicted under the bound, hits served from what is left", async () => {
  const fake = startFakeImgproxy();
  await withDir(async (dir) => {
    // The stand-in's images are 2048 bytes; its Cache-Control makes each sidecar the same size.
    const objectBytes = await measure(
      { contentType: "image/jpeg", cacheControl: "max-age=31536000, public", ifAbsent: true },
      2048,
    );
    const max = 10 * objectBytes;
    const env: Record<string, string> = {
      IMGPROXY_URL: fake.url,
      CACHE_DIR: dir,
      CACHE_DIR_MAX_BYTES: String(max),
      CACHE_MODE: "read",
      HEALTH_CHECK_TIMEOUT_IN_SEC: "0",
    };
    const app = await createApp(loadConfig((n) => env[n]), new MemoryLogger());
    const store = app.store as BoundedLocalStore;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.handler);
    try {
      const url = (i: number) =>
        `http://127.0.0.1:${server.addr.port}/_/rs:fit:${i}:${i}/plain/local:///p${i}.jpg`;
      const answers = await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const res = await fetch(url(i));
          await res.body?.cancel();
          return res.status;
        }),
      );
      assert.deepEqual(new Set(answers), new Set([200]));
      assert.deepEqual((await app.uploader.drain(10_000)).lost, []);
      await store.settled();
      assert.equal(app.uploader.stats.stored, 40);
      const all = await files(dir);
      const left = all.filter((f) => !f.path.endsWith(".meta.json")).length;
      // Sidecars differ a little (the file name imgproxy gives each image): about 10 fit.
      assert.ok(left >= 5 && left <= 10, `${left} objects left`);
      assert.equal(store.stats.evictions, 40 - left);
      assert.ok(store.budget.totalBytes <= max);
      assert.equal(all.reduce((n, f) => n + f.bytes, 0), store.budget.totalBytes);
      // What is left is whole, and served as hits.
      let hits = 0;
      for (let i = 0; i < 40; i++) {
        const res = await fetch(url(i));
        await res.body?.cancel();
        if (res.headers.get("x-cache") === "HIT") hits++;
      }
      assert.equal(hits, left);
    } finally {
      await server.shutdown();
      await store.close();
    }
  });
  await fake.close();
});

Deno.test("start-up with CACHE_DIR_MAX_BYTES: one walk removes a crashed run's leftovers and accounts only what is left", async () => {
  await withDir(async (dir) => {
    const plain = new LocalStore(dir);
    const kept = [md5Hex("k0"), `a/${md5Hex("k1")}-webp`];
    for (const key of kept) await plain.put(key, body(key, 100), META);
    const uuid = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b";
    const leftovers = [
      `${md5Hex("t")}.tmp-${uuid}`,
      `a/${md5Hex("t")}.meta.json.tmp-${uuid}`,
      md5Hex("no-sidecar"),
      `a/${md5Hex("no-object")}-avif.meta.json`,
    ];
    const old = new Date(Date.now() - 3600e3);
    for (const name of leftovers) {
      await Deno.writeTextFile(join(dir, name), "x".repeat(1000));
      await Deno.utime(join(dir, name), old, old);
    }
    const walked: string[] = [];
    const readDir: ReadDir = (path) => {
      walked.push(path);
      return Deno.readDir(path);
    };
    const env: Record<string, string> = { CACHE_DIR: dir, CACHE_DIR_MAX_BYTES: "1000000" };
    const store = new BoundedLocalStore(new LocalStore(dir), 1_000_000, readDir);
    const logger = new MemoryLogger();
    const app = await createApp(loadConfig((n) => env[n]), logger, { store, cleanStore: true });
    await store.settled();
    for (const name of leftovers) assert.ok(!await exists(join(dir, name)), name);
    for (const key of kept) assert.ok(await store.has(key), key);
    const [line] = logger.find("Removed a crashed run's leftovers");
    assert.match(line ?? "", /tempFiles=2 orphans=2 bytes=4000/, logger.lines.join("\n"));
    assert.equal(store.budget.objects, kept.length, "leftovers are not accounted");
    assert.equal(store.budget.totalBytes, await du(dir));
    assert.deepEqual(walked, [dir, join(dir, "a")], "each directory is read once");
    await app.stopStoreWalk();
    await drainUploads(app, logger);
  });
});
