/**
 * Purge: the local store's variant listing and removal (hostile keys refused), the purge of a
 * path's whole variant key set through `POST /purge` over real sockets (and what it must leave
 * alone), the uploader forgetting purged keys, the S3 store against s3rver, and
 * `deno task purge`'s command.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type App, createApp } from "../lib/app.ts";
import { ConfigError, loadConfig } from "../lib/config.ts";
import { md5Hex } from "../lib/key.ts";
import { MemoryLogger } from "../lib/log.ts";
import { serveMetrics } from "./support/ops_server.ts";
import { purgePath } from "../lib/purge.ts";
import { runPurge } from "../lib/purge_command.ts";
import { purgeEndpoint } from "../lib/purge_endpoint.ts";
import { LocalStore } from "../lib/store/local.ts";
import { StoreError } from "../lib/store/store.ts";
import type { UploadOutcome } from "../lib/upload_types.ts";
import { type FakeImgproxy, startFakeImgproxy } from "./support/fake_imgproxy.ts";
import { exists } from "./support/net_fs.ts";
import { s3StoreAt, startS3 } from "./support/s3.ts";
import { within } from "./support/within.ts";

const TOKEN = "purge-token-0123456789abcdef";
const META = { contentType: "image/png", cacheControl: null, ifAbsent: false };
const bytes = (s: string) => new TextEncoder().encode(s);

async function walk(dir: string, root = dir): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) out.push(...await walk(p, root));
    else out.push(p.slice(root.length + 1));
  }
  return out.sort();
}

Deno.test("LocalStore.variants() lists the key and its -suffix variants only; delete() removes object and sidecar", async () => {
  const dir = await Deno.makeTempDir({ prefix: "purge-local-" });
  try {
    const store = new LocalStore(dir);
    const base = `f/${md5Hex("/a.png")}`;
    for (const k of [base, `${base}-webp`, `${base}-avif-webp`, `f/${md5Hex("/b.png")}`]) {
      await store.put(k, bytes(k), META);
    }
    // Things that are not this key's objects: a temporary file, a directory and a symbolic
    // link with variant-like names, and the same hash outside the folder.
    await Deno.writeTextFile(join(dir, `${base}.tmp-1234`), "partial");
    await Deno.mkdir(join(dir, `${base}-dir`));
    await Deno.writeTextFile(join(dir, "victim"), "keep");
    await Deno.symlink(join(dir, "victim"), join(dir, `${base}-link`));
    await store.put(md5Hex("/a.png"), bytes("root"), META);

    assert.deepEqual(await store.variants(base), [base, `${base}-avif-webp`, `${base}-webp`]);
    assert.deepEqual(await store.variants(`g/${md5Hex("/a.png")}`), [], "absent folder");
    for (const k of await store.variants(base)) await store.delete(k);
    await store.delete(base); // already gone: no error
    assert.deepEqual(
      await walk(dir),
      [
        md5Hex("/a.png"),
        `${md5Hex("/a.png")}.meta.json`,
        `${base}.tmp-1234`,
        `${base}-link`,
        `f/${md5Hex("/b.png")}`,
        `f/${md5Hex("/b.png")}.meta.json`,
        "victim",
      ].sort(),
    );
    assert.equal(await Deno.readTextFile(join(dir, "victim")), "keep");
    assert.equal(await store.has(base), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalStore refuses to list or remove a key that would leave its directory", async () => {
  const parent = await Deno.makeTempDir({ prefix: "purge-hostile-" });
  const dir = join(parent, "store");
  await Deno.mkdir(dir);
  try {
    await Deno.writeTextFile(join(parent, "outside"), "keep");
    const store = new LocalStore(dir);
    for (const key of ["../outside", "/etc/passwd", "a/../../outside", "", "a//b", "./x", "a\\b"]) {
      await assert.rejects(store.delete(key), StoreError, JSON.stringify(key));
      await assert.rejects(store.variants(key), StoreError, JSON.stringify(key));
    }
    assert.equal(await Deno.readTextFile(join(parent, "outside")), "keep");
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// POST /purge over real sockets

interface Harness {
  fake: FakeImgproxy;
  app: App;
  url: string;
  adminUrl: string;
  dir: string;
  parent: string;
  /** Resolves when the uploader reports an outcome for `key`. */
  settled(key: string): Promise<UploadOutcome>;
  close(): Promise<void>;
}

async function setup(env: Record<string, string>): Promise<Harness> {
  const fake = startFakeImgproxy({ varyAccept: true });
  const parent = await Deno.makeTempDir({ prefix: "purge-e2e-" });
  const dir = join(parent, "cache");
  const config = loadConfig((n) =>
    ({
      IMGPROXY_URL: fake.url,
      CACHE_DIR: dir,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "0",
      CACHE_VARIANTS: "accept",
      S3_FOLDER: "img",
      METRICS_BIND: "127.0.0.1:0",
      ...env,
    } as Record<string, string>)[n]
  );
  const waiters = new Map<string, (o: UploadOutcome) => void>();
  const early = new Map<string, UploadOutcome>();
  const app = await createApp(config, new MemoryLogger(), {
    onUploadSettled: (key, outcome) => {
      const w = waiters.get(key);
      if (w) {
        waiters.delete(key);
        w(outcome);
      } else early.set(key, outcome);
    },
  });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  const admin = serveMetrics(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    app.registry,
    app.adminRoutes,
  );
  return {
    fake,
    app,
    url: `http://127.0.0.1:${server.addr.port}`,
    adminUrl: `http://127.0.0.1:${admin.addr.port}`,
    dir,
    parent,
    settled(key) {
      const done = early.get(key);
      if (done !== undefined) {
        early.delete(key);
        return Promise.resolve(done);
      }
      const stored = new Promise<UploadOutcome>((resolve) => waiters.set(key, resolve));
      return within(`the upload of ${key}`, stored).finally(() => waiters.delete(key));
    },
    async close() {
      await server.shutdown();
      await admin.shutdown();
      assert.deepEqual((await app.uploader.drain(10_000)).lost, []);
      await fake.close();
      await Deno.remove(parent, { recursive: true });
    },
  };
}

const IMG = "/_/rs:fill:30:30/plain/local:///cat.jpg";
const OTHER = "/_/rs:fill:30:30/plain/local:///dog.jpg";
const ACCEPTS = ["image/avif,image/webp,*/*", "image/webp,*/*", "*/*"];

async function fetchImage(h: Harness, path: string, accept: string) {
  const res = await fetch(h.url + path, { headers: { accept } });
  await res.body?.cancel();
  return res;
}

function purge(h: Harness, body: string, authorization: string | null = `Bearer ${TOKEN}`) {
  return fetch(`${h.adminUrl}/purge`, {
    method: "POST",
    body,
    headers: authorization === null ? {} : { authorization },
  });
}

Deno.test("POST /purge removes every stored variant of a path, nothing else, and the next request stores it again", async () => {
  const h = await setup({ ADMIN_TOKEN: TOKEN });
  try {
    const base = `img/${md5Hex(IMG)}`;
    // The first answer teaches the proxy that imgproxy negotiates; then one per variant.
    for (const accept of ACCEPTS) {
      const res = await fetchImage(h, IMG, accept);
      assert.equal(res.headers.get("x-cache"), "MISS");
    }
    const variantKeys = [base, `${base}-avif`, `${base}-webp`];
    for (const k of variantKeys) assert.deepEqual(await h.settled(k), { kind: "stored" }, k);
    await fetchImage(h, OTHER, "*/*");
    assert.deepEqual(await h.settled(`img/${md5Hex(OTHER)}`), { kind: "stored" });
    // The same hash outside the folder, and a file beside the store directory, stay.
    await Deno.writeTextFile(join(h.dir, md5Hex(IMG)), "not in the folder");
    await Deno.writeTextFile(join(h.dir, `${md5Hex(IMG)}-webp`), "not in the folder");
    await Deno.writeTextFile(join(h.parent, "outside"), "keep");
    const before = await walk(h.dir);

    // Refused without the token, with a wrong one, and for other methods: nothing removed.
    for (const auth of [null, "Bearer wrong-token-0123456789", TOKEN, `Basic ${TOKEN}`]) {
      const res = await purge(h, IMG, auth);
      assert.equal(res.status, 401, String(auth));
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="purge"');
      await res.body?.cancel();
    }
    const get = await fetch(`${h.adminUrl}/purge`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(get.status, 405);
    await get.body?.cancel();
    // An unusable line refuses the whole list.
    const bad = await purge(h, `${IMG}\n/with space.png\n`);
    assert.equal(bad.status, 400);
    assert.deepEqual((await bad.json()).invalid, [
      { line: 2, error: "space or control character (write %20)", text: "/with space.png" },
    ]);
    assert.deepEqual(await walk(h.dir), before);

    const hostile = [
      "/../../../../outside",
      "/%2e%2e/%2e%2e/outside",
      "/img/../../outside",
      "//etc/passwd",
      `/${md5Hex(IMG)}`,
    ];
    const res = await purge(h, [IMG, `${IMG}?v=2`, ...hostile, ""].join("\r\n"));
    assert.equal(res.status, 200);
    const report = await res.json();
    assert.equal(report.paths, 7);
    assert.equal(report.deleted, 3);
    assert.equal(report.failed, 0);
    assert.deepEqual(report.results[0], { path: IMG, keys: variantKeys });
    assert.deepEqual(report.results[1], { path: `${IMG}?v=2`, keys: [] });
    for (const r of report.results.slice(2)) assert.deepEqual(r.keys, [], r.path);

    const gone = new Set(variantKeys.flatMap((k) => [k, `${k}.meta.json`]));
    assert.deepEqual(await walk(h.dir), before.filter((f) => !gone.has(f)));
    assert.equal(await Deno.readTextFile(join(h.parent, "outside")), "keep");

    // The uploader forgot the keys: the next request is a miss that stores the image again.
    const again = await fetchImage(h, IMG, "image/webp,*/*");
    assert.equal(again.headers.get("x-cache"), "MISS");
    assert.deepEqual(await h.settled(`${base}-webp`), { kind: "stored" });
    assert.ok(await exists(join(h.dir, `${base}-webp`)));
  } finally {
    await h.close();
  }
});

Deno.test("without ADMIN_TOKEN there is no /purge (404); /metrics still answers", async () => {
  const h = await setup({});
  try {
    await fetchImage(h, IMG, "*/*");
    await h.settled(`img/${md5Hex(IMG)}`);
    const res = await purge(h, IMG);
    assert.equal(res.status, 404);
    await res.body?.cancel();
    assert.ok(await exists(join(h.dir, "img", md5Hex(IMG))));
    const metrics = await fetch(`${h.adminUrl}/metrics`);
    assert.equal(metrics.status, 200);
    await metrics.body?.cancel();
  } finally {
    await h.close();
  }
});

Deno.test("purgeEndpoint: a body over the limit is refused with 413, nothing removed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "purge-limit-" });
  try {
    const store = new LocalStore(dir);
    await store.put(md5Hex(IMG), bytes("x"), META);
    const handler = purgeEndpoint({
      token: TOKEN,
      target: { store, folder: "" },
      logger: new MemoryLogger(),
      maxBodyBytes: 64,
    });
    const res = await handler(
      new Request("http://admin/purge", {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
        body: `${IMG}\n`.repeat(5),
      }),
    );
    assert.equal(res.status, 413);
    await res.body?.cancel();
    assert.equal(await store.has(md5Hex(IMG)), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig(): ADMIN_TOKEN needs METRICS_BIND and 16 characters, and is never echoed", () => {
  const load = (env: Record<string, string>) => () => loadConfig((n) => env[n]);
  assert.throws(load({ ADMIN_TOKEN: TOKEN }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /ADMIN_TOKEN: the purge endpoint is served on the METRICS_BIND/);
    assert.ok(!err.message.includes(TOKEN));
    return true;
  });
  assert.throws(load({ ADMIN_TOKEN: "short-secret", METRICS_BIND: ":9464" }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /ADMIN_TOKEN: expected at least 16 characters .*got 12/);
    assert.ok(!err.message.includes("short-secret"));
    return true;
  });
  assert.equal(
    loadConfig((n) => ({ ADMIN_TOKEN: TOKEN, METRICS_BIND: ":9464" })[n]).adminToken,
    TOKEN,
  );
});

// ---------------------------------------------------------------------------------------------
// The S3 store (s3rver here; versitygw in the e2e suite)

Deno.test("S3Store.variants() lists by prefix and delete() removes: a variant key set purged, the rest kept", async () => {
  const s3 = await startS3();
  try {
    const store = s3StoreAt(s3.endpoint, s3.bucket);
    const base = `f/${md5Hex(IMG)}`;
    const keep = [`f/${md5Hex(OTHER)}`, md5Hex(IMG), `g/${md5Hex(IMG)}-webp`, `${base}x/y`];
    for (const k of [base, `${base}-webp`, `${base}-avif`, ...keep]) {
      await store.put(k, bytes(k), META);
    }
    const forgotten: string[] = [];
    const outcome = await purgePath(
      { store, folder: "f", forget: (k) => forgotten.push(k) },
      IMG,
    );
    assert.deepEqual(outcome, { path: IMG, keys: [base, `${base}-avif`, `${base}-webp`] });
    assert.deepEqual(forgotten, [base]);
    assert.deepEqual(await s3.list(), [...keep].sort());
    await store.delete(base); // absent: no error
  } finally {
    await s3.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// deno task purge

Deno.test("runPurge: removes every variant of each listed path from the local store, reports each", async () => {
  const dir = await Deno.makeTempDir({ prefix: "purge-cmd-" });
  try {
    const store = new LocalStore(dir);
    const base = `img/${md5Hex(IMG)}`;
    for (const k of [base, `${base}-webp`, `img/${md5Hex(OTHER)}`]) {
      await store.put(k, bytes(k), META);
    }
    const env: Record<string, string> = { CACHE_DIR: dir, S3_FOLDER: "img" };
    let stdout = "";
    let stderr = "";
    const run = (list: string) =>
      runPurge(["list.txt"], {
        env: (n) => env[n],
        stdout: (t) => (stdout += t),
        stderr: (t) => (stderr += t),
        readInput: () => Promise.resolve(list),
      });
    assert.equal(await run(`${IMG}\n/bad line\n`), 2);
    assert.match(stderr, /^purge: line 2: space or control character/m);
    assert.equal(await store.has(base), true, "a bad list purges nothing");

    stdout = stderr = "";
    assert.equal(await run(`# comment\nhttps://img.example.com${IMG}\n/never/stored.png\n`), 0);
    assert.equal(stderr, "");
    // Paths are purged a few at a time: their lines come in the order they finish.
    const lines = stdout.trimEnd().split("\n");
    assert.deepEqual(lines.slice(0, 2).sort(), [
      "not stored /never/stored.png",
      `purged ${IMG}: ${base} ${base}-webp`,
    ]);
    assert.equal(lines[2], "Purge finished: 2 of 2 paths, 2 objects removed, 0 failed");
    assert.deepEqual(await walk(dir), [`img/${md5Hex(OTHER)}`, `img/${md5Hex(OTHER)}.meta.json`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bin/purge runs with the computed permissions: a list file, then standard input", async () => {
  const dir = await Deno.makeTempDir({ prefix: "purge-bin-" });
  try {
    const store = new LocalStore(join(dir, "cache"));
    for (const k of [md5Hex(IMG), `${md5Hex(IMG)}-avif`, md5Hex(OTHER)]) {
      await store.put(k, bytes(k), META);
    }
    await Deno.writeTextFile(join(dir, "list.txt"), `${IMG}\n`);
    const root = new URL("..", import.meta.url).pathname;
    const run = async (args: string[], stdin: string | null) => {
      const child = new Deno.Command("sh", {
        args: [join(root, "bin/purge"), ...args],
        env: { CACHE_DIR: join(dir, "cache"), S3_BUCKET: "", NO_COLOR: "1" },
        stdin: stdin === null ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      if (stdin !== null) {
        const writer = child.stdin.getWriter();
        await writer.write(bytes(stdin));
        await writer.close();
      }
      const out = await child.output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      return { code: out.code, text };
    };
    const first = await run([join(dir, "list.txt")], null);
    assert.equal(first.code, 0, first.text);
    assert.match(first.text, /^Purge finished: 1 of 1 paths, 2 objects removed, 0 failed$/m);
    assert.equal(await store.has(md5Hex(IMG)), false);
    assert.equal(await store.has(`${md5Hex(IMG)}-avif`), false);
    const second = await run(["-"], `${OTHER}\n`);
    assert.equal(second.code, 0, second.text);
    assert.equal(await store.has(md5Hex(OTHER)), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
