/**
 * What LocalStore remembers of its objects so a hit costs one `open`: the metadata and size of
 * an object it wrote or read, trusted for a while, dropped when the file is gone.
 *
 * Each test changes the files behind the store's back to see which it read: a remembered
 * object is served with what was remembered, a forgotten one with what is on disk.
 */
import assert from "node:assert/strict";
import { LocalStore } from "../lib/store/local.ts";
import { withTempDir } from "./support/net_fs.ts";

const META = { contentType: "image/webp", cacheControl: "max-age=60, public" };
const OTHER = { contentType: "image/png", cacheControl: null };

const withDir = (fn: (dir: string) => Promise<void>) => withTempDir("local-known-", fn);

/** Rewrites an object's sidecar and bytes as another writer would. */
async function rewriteBehind(dir: string, key: string, body: Uint8Array) {
  await Deno.writeTextFile(`${dir}/${key}.meta.json`, JSON.stringify(OTHER));
  await Deno.writeFile(`${dir}/${key}`, body);
}

async function opened(store: LocalStore, key: string) {
  const o = await store.open(key);
  if (o === null) return null;
  const body = await new Response(o.body).bytes();
  return {
    contentType: o.contentType,
    cacheControl: o.cacheControl,
    contentLength: o.contentLength,
    body: [...body],
  };
}

Deno.test("LocalStore: a hit on an object it wrote reads neither its sidecar nor its size", async () => {
  await withDir(async (dir) => {
    const store = new LocalStore(dir, { trustMs: 60_000 });
    assert.equal(
      await store.put("k", new Uint8Array([1, 2, 3]), { ...META, ifAbsent: true }),
      "stored",
    );
    await rewriteBehind(dir, "k", new Uint8Array([9, 9, 9]));
    assert.deepEqual(await opened(store, "k"), { ...META, contentLength: 3, body: [9, 9, 9] });
    assert.equal(await store.has("k"), true);
    assert.deepEqual((await store.get("k"))!.contentType, META.contentType);
  });
});

Deno.test("LocalStore: an object read once is remembered; the first read takes its sidecar and size from disk", async () => {
  await withDir(async (dir) => {
    await new LocalStore(dir).put("k", new Uint8Array([1, 2]), { ...META, ifAbsent: true });
    const store = new LocalStore(dir, { trustMs: 60_000 });
    assert.deepEqual(await opened(store, "k"), { ...META, contentLength: 2, body: [1, 2] });
    await rewriteBehind(dir, "k", new Uint8Array([7, 7]));
    assert.deepEqual(await opened(store, "k"), { ...META, contentLength: 2, body: [7, 7] });
  });
});

Deno.test("LocalStore: past the trust window, a hit reads the object's sidecar and size again", async () => {
  await withDir(async (dir) => {
    const store = new LocalStore(dir, { trustMs: 0 });
    await store.put("k", new Uint8Array([1, 2, 3]), { ...META, ifAbsent: true });
    await rewriteBehind(dir, "k", new Uint8Array([5]));
    assert.deepEqual(await opened(store, "k"), { ...OTHER, contentLength: 1, body: [5] });
  });
});

Deno.test("LocalStore: a file removed behind its back is a miss, and is forgotten", async () => {
  await withDir(async (dir) => {
    const store = new LocalStore(dir, { trustMs: 60_000 });
    await store.put("k", new Uint8Array([1]), { ...META, ifAbsent: true });
    await Deno.remove(`${dir}/k`);
    assert.equal(await store.has("k"), false);
    assert.equal(await store.open("k"), null);
    // Written anew by another process: read from disk, not from what was remembered.
    await Deno.writeTextFile(`${dir}/k.meta.json`, JSON.stringify(OTHER));
    await Deno.writeFile(`${dir}/k`, new Uint8Array([4, 4]));
    assert.deepEqual(await opened(store, "k"), { ...OTHER, contentLength: 2, body: [4, 4] });
  });
});

Deno.test("LocalStore: forget() and the bound on remembered objects send hits back to disk", async () => {
  await withDir(async (dir) => {
    const store = new LocalStore(dir, { trustMs: 60_000, maxKnown: 2 });
    for (const k of ["a", "b", "c"]) {
      await store.put(k, new Uint8Array([1]), { ...META, ifAbsent: true });
      await rewriteBehind(dir, k, new Uint8Array([2, 2]));
    }
    // "a" was forgotten when "c" came (two at most); "b" and "c" are remembered.
    assert.deepEqual(await opened(store, "a"), { ...OTHER, contentLength: 2, body: [2, 2] });
    assert.deepEqual(await opened(store, "c"), { ...META, contentLength: 1, body: [2, 2] });
    store.forget("c");
    assert.deepEqual(await opened(store, "c"), { ...OTHER, contentLength: 2, body: [2, 2] });
  });
});

Deno.test("LocalStore: delete() forgets the object, so a new one under the key is read from disk", async () => {
  await withDir(async (dir) => {
    const store = new LocalStore(dir, { trustMs: 60_000 });
    await store.put("k", new Uint8Array([1]), { ...META, ifAbsent: true });
    await store.delete("k");
    assert.equal(await store.open("k"), null);
    await Deno.writeTextFile(`${dir}/k.meta.json`, JSON.stringify(OTHER));
    await Deno.writeFile(`${dir}/k`, new Uint8Array([3, 3, 3]));
    assert.deepEqual(await opened(store, "k"), { ...OTHER, contentLength: 3, body: [3, 3, 3] });
  });
});

Deno.test("LocalStore: a known object up to wholeUpTo bytes comes read whole, a larger or unknown one as a stream", async () => {
  await withDir(async (dir) => {
    await new LocalStore(dir).put("k", new Uint8Array([1, 2, 3]), { ...META, ifAbsent: true });
    const store = new LocalStore(dir, { trustMs: 60_000 });
    // Not known yet: opened (size and sidecar read), then remembered.
    const first = await store.open("k", undefined, 3);
    assert.ok(first !== null && first.body instanceof ReadableStream);
    await first.body.cancel();
    const whole = await store.open("k", undefined, 3);
    assert.ok(whole !== null && whole.body instanceof Uint8Array, "read whole");
    assert.deepEqual({ ...whole, body: [...whole.body] }, {
      ...META,
      length: 3,
      etag: whole.etag,
      lastModified: whole.lastModified,
      contentLength: 3,
      body: [1, 2, 3],
    });
    const larger = await store.open("k", undefined, 2);
    assert.ok(larger !== null && larger.body instanceof ReadableStream, "over wholeUpTo: a stream");
    await larger.body.cancel();

    // Rewritten behind the store's back with another length: the length read is the one on
    // disk, so the hit's length check sees the object is not the one written.
    await rewriteBehind(dir, "k", new Uint8Array([9, 9]));
    const rewritten = await store.open("k", undefined, 3);
    assert.ok(rewritten !== null && rewritten.body instanceof Uint8Array);
    assert.equal(rewritten.contentLength, 2);
    assert.equal(rewritten.length, 3, "what was recorded at write");

    // Gone: absent, and forgotten.
    await Deno.remove(`${dir}/k`);
    assert.equal(await store.open("k", undefined, 3), null);
    await Deno.writeFile(`${dir}/k`, new Uint8Array([5]));
    const back = await store.open("k", undefined, 3);
    assert.ok(back !== null && back.body instanceof ReadableStream, "forgotten: opened again");
    await back.body.cancel();
  });
});
