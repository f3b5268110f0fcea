/**
 * The local store's start-up cleanup: a crashed run's temporary files, objects without a sidecar
 * and sidecars without an object are removed (older ones only); nothing else is touched. The
 * names it goes by are the ones the store writes.
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { LocalStore } from "../lib/store/local.ts";
import { META_SUFFIX, parseStoreName, tempPath } from "../lib/store/local_names.ts";
import { walkLocalStore } from "../lib/store/local_walk.ts";
import { exists, freePort } from "./support/net_fs.ts";
import { serveEnv, withServe } from "./support/serve_args.ts";
import { start, stop, stopAndWait, withFakeImgproxy } from "./support/process.ts";

const K1 = "0123456789abcdef0123456789abcdef";
const K2 = "fedcba9876543210fedcba9876543210";
const K3 = "00112233445566778899aabbccddeeff";
const UUID = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b";

/** Files a crashed run leaves, and files that must survive, in `dir` (and a folder in it). */
async function crashLeftovers(dir: string, old: Date) {
  const write = async (name: string, mtime = old) => {
    await Deno.mkdir(`${dir}/${name}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.writeFile(`${dir}/${name}`, new Uint8Array(100));
    await Deno.utime(`${dir}/${name}`, mtime, mtime);
  };
  const leftovers = [
    `${K1}.tmp-${UUID}`,
    `${K1}.meta.json.tmp-${UUID}`,
    `${K2}`, // an object whose sidecar never came
    `${K3}-webp.meta.json`, // a sidecar whose object never came
    `folder/sub/${K1}-avif-webp.tmp-${UUID}`,
  ];
  const kept = [
    `${K3}`, // a complete object...
    `${K3}.meta.json`, // ...and its sidecar
    "notes.txt",
    `${K1}.tmp-not-a-uuid`,
    `${K1.toUpperCase()}`,
    `folder/${K2}.meta.json.bak`,
  ];
  for (const name of [...leftovers, ...kept]) await write(name);
  // A write still under way: too recent to touch.
  await write(`${K2}.tmp-${UUID}`, new Date());
  kept.push(`${K2}.tmp-${UUID}`);
  // A link to a file outside the directory is not followed or removed.
  const outside = await Deno.makeTempFile();
  await Deno.symlink(outside, `${dir}/${K1}-webp`);
  kept.push(`${K1}-webp`);
  return { leftovers, kept, outside };
}

Deno.test("walkLocalStore(): removes a crashed run's leftovers and nothing else", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cleanup-" });
  try {
    const { leftovers, kept, outside } = await crashLeftovers(dir, new Date(Date.now() - 3600e3));
    const { removed: stats } = await walkLocalStore(dir, { cleanBefore: Date.now() - 60_000 });
    for (const name of leftovers) assert.equal(await exists(`${dir}/${name}`), false, name);
    for (const name of kept) assert.equal(await exists(`${dir}/${name}`), true, name);
    assert.equal(await exists(outside), true);
    assert.deepEqual(stats, { tempFiles: 3, orphans: 2, bytes: 500 });
    await Deno.remove(outside);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("walkLocalStore(): stops at once when its signal is aborted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cleanup-stop-" });
  try {
    await crashLeftovers(dir, new Date(Date.now() - 3600e3)).then((r) => Deno.remove(r.outside));
    const stop = new AbortController();
    stop.abort();
    const result = await walkLocalStore(dir, { cleanBefore: Date.now(), signal: stop.signal });
    assert.deepEqual(result.removed, { tempFiles: 0, orphans: 0, bytes: 0 });
    assert.equal(result.aborted, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process: a crashed run's leftovers are removed at start-up, in the background", async () => {
  await withFakeImgproxy("cleanup-process-", async (fake, dir) => {
    const port = freePort();
    const { leftovers, kept, outside } = await crashLeftovers(dir, new Date(Date.now() - 3600e3));
    const proxy = start({
      IMGPROXY_URL: fake.url,
      CACHE_DIR: dir,
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "10",
    });
    try {
      const line = await proxy.waitFor("Removed a crashed run's leftovers");
      assert.match(line, /tempFiles=3 orphans=2 bytes=500/);
      for (const name of leftovers) assert.equal(await exists(`${dir}/${name}`), false, name);
      for (const name of kept) assert.equal(await exists(`${dir}/${name}`), true, name);
      stop(proxy);
      const { code, output } = await proxy.done;
      assert.equal(code, 0, output);
    } finally {
      await stopAndWait(proxy);
      await Deno.remove(outside);
    }
  });
});

Deno.test("process: `deno serve` removes a crashed run's leftovers too, once it builds the proxy", async () => {
  await withFakeImgproxy("cleanup-serve-", async (fake, dir) => {
    const port = freePort();
    const { leftovers, kept, outside } = await crashLeftovers(dir, new Date(Date.now() - 3600e3));
    const env = serveEnv(port, dir, {
      IMGPROXY_URL: fake.url,
      CACHE_DIR: dir,
    });
    try {
      await withServe(env, port, async (serve) => {
        // The first request builds the proxy (Deno prints its address before: it is listening).
        await serve.line("Listening on");
        const res = await fetch(`http://127.0.0.1:${port}/health`);
        await res.body?.cancel();
        assert.equal(res.status, 200);
        const line = await serve.line("Removed a crashed run's leftovers");
        assert.match(line, /tempFiles=3 orphans=2 bytes=500/);
        for (const name of leftovers) assert.equal(await exists(`${dir}/${name}`), false, name);
        for (const name of kept) assert.equal(await exists(`${dir}/${name}`), true, name);
        serve.child.kill("SIGINT");
        const { code, output } = await serve.done;
        assert.equal(code, 0, output);
        assert.doesNotMatch(output, /NotCapable|Requires \w+ access|Uncaught/);
      });
    } finally {
      await Deno.remove(outside);
    }
  });
});

Deno.test("store file names: what the store writes is what the walk reads back, nothing else", async () => {
  const dir = await Deno.makeTempDir({ prefix: "names-" });
  try {
    const store = new LocalStore(dir);
    const keys = [K1, `${K2}-avif-webp`, `folder/${K3}-webp`];
    for (const key of keys) {
      const options = { contentType: "image/png", cacheControl: null, ifAbsent: true };
      await store.put(key, new Uint8Array(10), options);
    }
    const names: string[] = [];
    const list = async (at: string) => {
      for await (const e of Deno.readDir(at)) {
        if (e.isDirectory) await list(join(at, e.name));
        else names.push(e.name);
      }
    };
    await list(dir);
    assert.equal(names.length, 2 * keys.length);
    for (const name of names) {
      const parsed = parseStoreName(name);
      assert.ok(parsed !== null, name);
      assert.equal(parsed.kind, name.endsWith(META_SUFFIX) ? "sidecar" : "object", name);
      assert.ok(keys.some((k) => k.endsWith(parsed.key)), name);
    }
    for (const path of [join(dir, K1), join(dir, K1) + META_SUFFIX]) {
      assert.deepEqual(parseStoreName(basename(tempPath(path))), { kind: "temp", key: K1 });
    }
    const foreign = [
      "notes.txt",
      `${K1}.tmp-not-a-uuid`,
      K1.toUpperCase(),
      `${K1}-WEBP`,
      `${K1}.meta.json.bak`,
      `${K1}.bak.meta.json`,
      K1.slice(1),
    ];
    for (const name of foreign) assert.equal(parseStoreName(name), null, name);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
