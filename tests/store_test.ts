/**
 * The stores: LocalStore on a temporary directory, S3Store against s3rver.
 */
import assert from "node:assert/strict";
import { LocalStore } from "../lib/store/local.ts";
import { classifyS3Error, type S3Store } from "../lib/store/s3.ts";
import { MemoryLogger } from "../lib/log.ts";
import { Uploader } from "../lib/uploader.ts";
import { s3StoreAt, startS3, type TestS3 } from "./support/s3.ts";
import { startHungStore } from "./support/hung_store.ts";

const bytes = (...b: number[]) => new Uint8Array(b);

async function listDir(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("LocalStore writes atomically, keeps the content type and leaves no temp files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "local-store-" });
  try {
    const store = new LocalStore(dir);
    const meta = { contentType: "image/webp", cacheControl: "max-age=60, public" };
    assert.equal(await store.has("abc"), false);
    assert.equal(await store.get("abc"), null);
    assert.equal(await store.put("abc", bytes(1, 2, 3), { ...meta, ifAbsent: false }), "stored");
    assert.equal(
      await store.put("sub/dir/def", bytes(4), { ...meta, ifAbsent: true }),
      "stored",
    );
    assert.deepEqual(await listDir(dir), ["abc", "abc.meta.json", "sub"]);
    assert.deepEqual(await listDir(`${dir}/sub/dir`), ["def", "def.meta.json"]);
    assert.equal(await store.has("abc"), true);
    assert.deepEqual(await store.get("abc"), { body: bytes(1, 2, 3), ...meta });
    assert.deepEqual(await store.get("sub/dir/def"), { body: bytes(4), ...meta });
    assert.deepEqual(await Deno.readFile(`${dir}/abc`), bytes(1, 2, 3));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalStore ifAbsent returns exists and does not overwrite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "local-store-" });
  try {
    const store = new LocalStore(dir);
    const a = { contentType: "image/png", cacheControl: null, ifAbsent: true };
    const b = { contentType: "image/jpeg", cacheControl: "max-age=1", ifAbsent: true };
    assert.equal(await store.put("k", bytes(1), a), "stored");
    assert.equal(await store.put("k", bytes(2, 2), b), "exists");
    assert.deepEqual(await store.get("k"), {
      body: bytes(1),
      contentType: "image/png",
      cacheControl: null,
    });
    // Concurrent conditional writes: exactly one wins, the object is whole.
    // Without ifAbsent the write replaces the object.
    assert.equal(await store.put("k", bytes(3), { ...b, ifAbsent: false }), "stored");
    assert.deepEqual(await store.get("k"), {
      body: bytes(3),
      contentType: "image/jpeg",
      cacheControl: "max-age=1",
    });
    assert.deepEqual(await listDir(dir), ["k", "k.meta.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalStore concurrent conditional writes keep the winner's content type", async () => {
  const dir = await Deno.makeTempDir({ prefix: "local-store-" });
  try {
    const store = new LocalStore(dir);
    const a = { contentType: "image/png", cacheControl: null, ifAbsent: true };
    // Each writer has its own content type: the sidecar must describe the winning body.
    // (Rounds of 10 concurrent writers, so the interleaving that breaks it shows up.)
    for (let round = 0; round < 20; round++) {
      const key = `race-${round}`;
      const results = await Promise.all(
        Array.from(
          { length: 10 },
          (_, i) => store.put(key, bytes(i, i, i), { ...a, contentType: `image/x-${i}` }),
        ),
      );
      assert.equal(results.filter((r) => r === "stored").length, 1);
      const won = (await store.get(key))!;
      assert.equal(won.body.byteLength, 3);
      assert.ok(won.body.every((x) => x === won.body[0]));
      assert.equal(won.contentType, `image/x-${won.body[0]}`, `round ${round}`);
    }
    assert.equal((await listDir(dir)).filter((f) => f.includes(".tmp-")).length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function s3Store(s3: TestS3, bucket = s3.bucket): S3Store {
  return s3StoreAt(s3.endpoint, bucket);
}

Deno.test("S3Store puts, gets and heads objects with content type and cache control", async () => {
  const s3 = await startS3();
  const store = s3Store(s3);
  try {
    assert.equal(await store.has("folder/k1"), false);
    assert.equal(await store.get("folder/k1"), null);
    const body = new Uint8Array(5000).map((_, i) => i & 0xff);
    const meta = { contentType: "image/avif", cacheControl: "max-age=31536000, public" };
    assert.equal(await store.put("folder/k1", body, { ...meta, ifAbsent: false }), "stored");
    assert.equal(await store.has("folder/k1"), true);
    assert.deepEqual(await store.get("folder/k1"), { body, ...meta });
    // What another client sees: the plain bytes (no aws-chunked framing), same metadata.
    const raw = await s3.get("folder/k1");
    assert.deepEqual(raw, { body, ...meta });
    assert.equal(
      await store.put("k2", bytes(1), {
        contentType: "image/png",
        cacheControl: null,
        ifAbsent: false,
      }),
      "stored",
    );
    assert.equal((await store.get("k2"))?.cacheControl, null);
    assert.deepEqual(await s3.list(), ["folder/k1", "k2"]);
  } finally {
    store.client.destroy();
    await s3.stop();
  }
});

Deno.test("S3Store put to a missing bucket fails and is not retryable", async () => {
  const s3 = await startS3();
  const store = s3Store(s3, "no-such-bucket");
  try {
    await assert.rejects(
      store.put("k", bytes(1), { contentType: "image/png", cacheControl: null, ifAbsent: false }),
      (err: unknown) => {
        const e = err as { name: string; retryable: boolean; code: string };
        assert.equal(e.name, "StoreError");
        assert.equal(e.code, "NoSuchBucket");
        assert.equal(e.retryable, false);
        return true;
      },
    );
  } finally {
    store.client.destroy();
    await s3.stop();
  }
});

Deno.test("classifyS3Error retries network, 5xx, 409 and 429 failures but not 403 or NoSuchBucket", () => {
  const err = (name: string, status?: number) => ({
    name,
    message: "m",
    $metadata: status === undefined ? {} : { httpStatusCode: status },
  });
  const table: [unknown, boolean][] = [
    [err("AccessDenied", 403), false],
    [err("NoSuchBucket", 404), false],
    [err("InvalidAccessKeyId", 403), false],
    [err("AbortError"), false],
    [err("InternalError", 500), true],
    [err("ServiceUnavailable", 503), true],
    [err("ConditionalRequestConflict", 409), true],
    [err("TooManyRequests", 429), true],
    [err("SlowDown", 503), true],
    [err("RequestTimeout", 400), true],
    [err("ECONNRESET"), true],
    [new TypeError("fetch failed"), true],
    // A store without conditional writes, or an HTTP version it will never speak.
    [err("NotImplemented", 501), false],
    [err("Error", 505), false],
    // Deno's permission errors: the flags will not change on a retry.
    [Object.assign(new Error("Requires net access"), { name: "NotCapable" }), false],
    [Object.assign(new Error("denied"), { name: "PermissionDenied" }), false],
  ];
  for (const [e, retryable] of table) {
    const classified = classifyS3Error(e, "PutObject k");
    assert.equal(classified.retryable, retryable, JSON.stringify(e));
    assert.match(classified.message, /^PutObject k: /);
  }
  assert.match(
    classifyS3Error(err("NotImplemented", 501), "PutObject k").message,
    /S3_CONDITIONAL_WRITE=false/,
  );
});

Deno.test("S3Store.open() streams an object with its length and metadata; null when absent", async () => {
  const s3 = await startS3();
  const store = s3Store(s3);
  try {
    assert.equal(await store.open("absent"), null);
    const body = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
    await store.put("k", body, {
      contentType: "image/webp",
      cacheControl: "max-age=5",
      ifAbsent: false,
    });
    const opened = await store.open("k");
    assert.ok(opened !== null);
    assert.equal(opened.contentLength, body.byteLength);
    assert.equal(opened.contentType, "image/webp");
    assert.equal(opened.cacheControl, "max-age=5");
    assert.deepEqual(await new Response(opened.body).bytes(), body);
  } finally {
    store.client.destroy();
    await s3.stop();
  }
});

Deno.test("S3Store write to a store that accepts and never answers: each attempt times out, the failure is logged and counted", async () => {
  // A TCP server that reads the request and never answers (a wedged gateway).
  const hung = startHungStore();
  const store = hung.store;
  const logger = new MemoryLogger();
  const uploader = new Uploader(store, {
    concurrency: 1,
    maxBytesInFlight: 1 << 20,
    maxObjectBytes: 1 << 20,
    retries: 1,
    retryBaseDelayMs: 1,
    retryMaxDelayMs: 1,
    attemptTimeoutMs: 100,
    dedupKeys: 10,
    conditionalWrite: true,
  }, logger);
  try {
    const c = uploader.begin("k", { path: "/p", contentType: "image/png", cacheControl: null }, 3);
    assert.ok(typeof c !== "string");
    c.add(new Uint8Array([1, 2, 3]));
    c.finish();
    const start = performance.now();
    while (uploader.pending > 0) {
      assert.ok(performance.now() - start < 5000, "the write was never given up");
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(uploader.stats.retries, 1);
    assert.equal(uploader.stats.failed, 1);
    assert.equal(uploader.stats.bytesInFlight, 0);
    assert.equal(hung.connections, 2, "one connection per attempt");
    assert.match(logger.find("WARN Upload failed, will retry")[0] ?? "", /no answer within 0.1 s/);
    assert.match(
      logger.find("ERROR Upload failed")[0] ?? "",
      /attempts=2 reason="write timed out: no answer within 0.1 s"/,
    );
  } finally {
    await hung.close();
  }
});

Deno.test("LocalStore: a write the disk refuses (file too large) leaves no temp files and is not retried", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A 16-block file size limit: the 100 KB body cannot be written (EFBIG). SIGXFSZ is
    // ignored so the write fails instead of killing the process.
    const script = new URL("./support/local_put.ts", import.meta.url).pathname;
    const out = await new Deno.Command("sh", {
      args: [
        "-c",
        `ulimit -f 16; trap '' XFSZ; exec "$0" run --allow-read --allow-write "$1" "$2"`,
        Deno.execPath(),
        script,
        dir,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const result = JSON.parse(text);
    assert.equal(result.retryable, false, text);
    assert.match(result.message, /too large|os error 27/i);
    assert.deepEqual(result.files, [], "temporary files left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalStore: an abandoned write (aborted signal) puts nothing in place and leaves nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new LocalStore(dir);
    const abort = new AbortController();
    abort.abort(new DOMException("no answer within 1 s", "TimeoutError"));
    await assert.rejects(
      store.put("k", new Uint8Array(10), {
        contentType: "image/png",
        cacheControl: null,
        ifAbsent: true,
        signal: abort.signal,
      }),
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((f) => f.name), []);
    assert.equal(await store.has("k"), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalStore: an object whose sidecar never arrived is absent, and the next write replaces it", async () => {
  // What a crash between putting the bytes in place and renaming the sidecar leaves behind.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/k`, new Uint8Array([9, 9]));
    const store = new LocalStore(dir);
    assert.equal(await store.has("k"), false);
    assert.equal(await store.open("k"), null);
    assert.equal(await store.get("k"), null);
    const put = await store.put("k", new Uint8Array([1, 2, 3]), {
      contentType: "image/webp",
      cacheControl: "max-age=60",
      ifAbsent: true,
    });
    assert.equal(put, "stored");
    const obj = await store.get("k");
    assert.deepEqual(obj, {
      body: new Uint8Array([1, 2, 3]),
      contentType: "image/webp",
      cacheControl: "max-age=60",
    });
    assert.equal(await store.has("k"), true);
    assert.deepEqual([...Deno.readDirSync(dir)].map((f) => f.name).sort(), ["k", "k.meta.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
