import assert from "node:assert/strict";
import { MemoryLogger } from "../lib/log.ts";
import { isVariantKey } from "../lib/store/store.ts";
import type { PutOptions, PutResult, Store, StoredObject } from "../lib/store/store.ts";
import { StoreError } from "../lib/store/store.ts";
import { Collector } from "../lib/upload_collector.ts";
import { Uploader, type UploaderOptions } from "../lib/uploader.ts";

/** One call to {@linkcode MemoryStore.put}. */
interface PutCall {
  key: string;
  body: Uint8Array;
  options: PutOptions;
  /** 0-based number of earlier puts for this key. */
  attempt: number;
}

/**
 * An in-memory store that logs like S3Store. `onPut` decides each put's fate: return a result,
 * throw, or wait; returning undefined stores the body (or answers "exists" to a conditional
 * write of a key already present).
 */
class MemoryStore implements Store {
  readonly description = "memory";
  readonly storedMessage = "Uploaded to S3";
  readonly logFields = { bucket: "test-bucket" };
  readonly objects = new Map<string, StoredObject>();
  readonly calls: PutCall[] = [];
  active = 0;
  maxActive = 0;

  constructor(
    private readonly onPut?: (call: PutCall) => Promise<PutResult | void> | PutResult | void,
  ) {}

  async put(key: string, body: Uint8Array, options: PutOptions): Promise<PutResult> {
    const call = {
      key,
      body,
      options,
      attempt: this.calls.filter((c) => c.key === key).length,
    };
    this.calls.push(call);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      const result = await this.onPut?.(call);
      if (result) return result;
      if (options.ifAbsent && this.objects.has(key)) return "exists";
      this.objects.set(key, {
        body: body.slice(),
        contentType: options.contentType,
        cacheControl: options.cacheControl,
      });
      return "stored";
    } finally {
      this.active--;
    }
  }

  has(key: string): Promise<boolean> {
    return Promise.resolve(this.objects.has(key));
  }

  get(key: string): Promise<StoredObject | null> {
    return Promise.resolve(this.objects.get(key) ?? null);
  }

  variants(baseKey: string): Promise<string[]> {
    return Promise.resolve([...this.objects.keys()].filter((k) => isVariantKey(k, baseKey)));
  }

  delete(key: string): Promise<void> {
    this.objects.delete(key);
    return Promise.resolve();
  }
}

const OPTIONS: UploaderOptions = {
  concurrency: 4,
  maxBytesInFlight: 1000,
  maxObjectBytes: 500,
  retries: 3,
  retryBaseDelayMs: 1,
  retryMaxDelayMs: 10,
  dedupKeys: 100,
  conditionalWrite: true,
  random: () => 0,
};

function setup(
  onPut?: ConstructorParameters<typeof MemoryStore>[0],
  options: Partial<UploaderOptions> = {},
) {
  const store = new MemoryStore(onPut);
  const logger = new MemoryLogger();
  const uploader = new Uploader(store, { ...OPTIONS, ...options }, logger);
  return { store, logger, uploader };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const meta = (key: string) => ({
  path: `/insecure/plain/${key}.jpg`,
  contentType: "image/webp",
  cacheControl: "max-age=31536000, public",
});

const bytes = (n: number, fill = 7) => new Uint8Array(n).fill(fill);

/** Starts a collector that must be granted. */
function begin(uploader: Uploader, key: string, length: number | null): Collector {
  const c = uploader.begin(key, meta(key), length);
  assert.ok(c instanceof Collector, `begin(${key}) refused: ${c}`);
  return c;
}

/** Collects and finishes a whole body of `n` bytes with a known length. */
function upload(uploader: Uploader, key: string, n = 10, known = true): Collector {
  const c = begin(uploader, key, known ? n : null);
  assert.ok(c.add(bytes(n)));
  c.finish();
  return c;
}

/** Waits until the uploader holds nothing. */
async function settled(uploader: Uploader, limitMs = 2000): Promise<void> {
  const start = Date.now();
  while (uploader.pending > 0 || uploader.stats.queueDepth > 0) {
    if (Date.now() - start > limitMs) assert.fail("the uploader did not settle");
    await sleep(1);
  }
}

/** A promise and the function that settles it, for stores that block. */
function gate() {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { promise, open: () => resolve() };
}

/** A put that only ends when its signal aborts, like a network client that never hears back. */
function hang(call: PutCall): Promise<PutResult> {
  return new Promise((_, reject) => {
    const signal = call.options.signal;
    assert.ok(signal, "the uploader passes an abort signal");
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

Deno.test("Uploader stores a complete body once, with its type and Cache-Control", async () => {
  const { store, uploader, logger } = setup();
  const c = begin(uploader, "k1", 6);
  assert.ok(c.add(new Uint8Array([1, 2, 3])));
  assert.ok(c.add(new Uint8Array([4, 5, 6])));
  c.finish();
  await settled(uploader);
  assert.equal(store.calls.length, 1);
  assert.deepEqual(store.objects.get("k1"), {
    body: new Uint8Array([1, 2, 3, 4, 5, 6]),
    contentType: "image/webp",
    cacheControl: "max-age=31536000, public",
  });
  assert.equal(store.calls[0]!.options.ifAbsent, true);
  assert.equal(uploader.stats.stored, 1);
  assert.equal(uploader.stats.bytesInFlight, 0);
  assert.equal(uploader.stats.queueDepth, 0);
  assert.equal(uploader.pending, 0);
  assert.ok(uploader.isRecent("k1"));
  assert.deepEqual(logger.find("Upload skipped"), []);
});

Deno.test("Uploader logs a write as the Go program does: Uploaded to S3 path=... bucket=... key=...", async () => {
  const { uploader, logger } = setup();
  upload(uploader, "folder/0123abcd");
  await settled(uploader);
  assert.equal(logger.lines.length, 1);
  assert.match(
    logger.lines[0]!,
    /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d INFO Uploaded to S3 path=\/insecure\/plain\/folder\/0123abcd\.jpg bucket=test-bucket key=folder\/0123abcd$/,
  );
});

Deno.test("Uploader writes the line per object stored at the level it is given", async () => {
  const { uploader, logger } = setup(undefined, { storedLogLevel: "DEBUG" });
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(uploader.stats.stored, 1);
  assert.equal(logger.lines.length, 1);
  assert.match(
    logger.lines[0]!,
    / DEBUG Uploaded to S3 path=\/insecure\/plain\/k\.jpg bucket=test-bucket key=k$/,
  );
});

Deno.test("Uploader frees its copy of a body once its last write settles, never the chunks it was given", async () => {
  const { store, uploader } = setup((call) => {
    if (call.attempt === 0) throw new StoreError("SlowDown (HTTP 503)", true, "SlowDown");
  });
  const given = [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5])];
  for (const length of [5, null]) {
    const key = `k${length}`;
    const c = begin(uploader, key, length);
    for (const chunk of given) assert.ok(c.add(chunk));
    c.finish();
    await settled(uploader);
    // The retry wrote the same bytes as the first attempt: nothing was freed in between.
    assert.deepEqual(store.objects.get(key)!.body, new Uint8Array([1, 2, 3, 4, 5]));
    const lent = store.calls.filter((call) => call.key === key).map((call) => call.body);
    assert.equal(lent.length, 2);
    for (const body of lent) {
      assert.equal((body.buffer as ArrayBuffer).detached, true, "freed once the write settled");
    }
  }
  // The chunks went on to the client: they stay whole.
  assert.deepEqual(given, [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5])]);
});

Deno.test("Uploader frees the copy of a body given up (cut short, or cut off by shutdown)", async () => {
  const { store, uploader } = setup(hang, { concurrency: 1 });
  const chunk = new Uint8Array([1, 2, 3]);
  const cut = begin(uploader, "cut", null);
  assert.ok(cut.add(chunk));
  cut.abort("incomplete");
  upload(uploader, "a");
  upload(uploader, "b"); // queued behind a: never written
  assert.deepEqual((await uploader.drain(20)).lost.toSorted(), ["a", "b"]);
  assert.deepEqual(chunk, new Uint8Array([1, 2, 3]), "a chunk passed on stays whole");
  assert.equal(store.calls.length, 1);
  assert.equal((store.calls[0]!.body.buffer as ArrayBuffer).detached, true);
  assert.equal(uploader.stats.bytesInFlight, 0);
});

Deno.test("Uploader stores a body of unknown length by concatenating its chunks", async () => {
  const { store, uploader } = setup();
  const c = begin(uploader, "k", null);
  for (const chunk of [[1], [2, 3], [], [4, 5, 6, 7]]) assert.ok(c.add(new Uint8Array(chunk)));
  assert.equal(uploader.stats.bytesInFlight, 7);
  c.finish();
  await settled(uploader);
  assert.deepEqual(store.objects.get("k")?.body, new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
  assert.equal(uploader.stats.bytesInFlight, 0);
});

Deno.test("Uploader copies chunks, so a reused read buffer cannot corrupt the stored body", async () => {
  for (const known of [true, false]) {
    const { store, uploader } = setup();
    const c = begin(uploader, "k", known ? 4 : null);
    const chunk = new Uint8Array([1, 2]);
    assert.ok(c.add(chunk));
    chunk.set([9, 9]);
    assert.ok(c.add(new Uint8Array([3, 4])));
    chunk.set([8, 8]);
    c.finish();
    await settled(uploader);
    assert.deepEqual(store.objects.get("k")?.body, new Uint8Array([1, 2, 3, 4]), `known=${known}`);
  }
});

Deno.test("Uploader sends a plain write when conditional writes are off", async () => {
  const { store, uploader } = setup(undefined, { conditionalWrite: false });
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls[0]!.options.ifAbsent, false);
});

Deno.test("Uploader.begin() refuses a key already being collected: in-progress", async () => {
  const { store, uploader, logger } = setup();
  const first = begin(uploader, "k", 10);
  assert.equal(uploader.begin("k", meta("k"), 10), "in-progress");
  assert.equal(uploader.begin("k", meta("k"), null), "in-progress");
  assert.equal(uploader.stats.skipped["in-progress"], 2);
  // The refused ones reserved nothing.
  assert.equal(uploader.stats.bytesInFlight, 10);
  assert.ok(first.add(bytes(10)));
  first.finish();
  await settled(uploader);
  assert.equal(store.calls.length, 1);
  assert.deepEqual(logger.find("Upload skipped"), [], "duplicates are counted, not logged");
});

Deno.test("Uploader.begin() refuses a key stored recently: recently-stored", async () => {
  const { store, uploader } = setup();
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(uploader.begin("k", meta("k"), 10), "recently-stored");
  assert.equal(uploader.stats.skipped["recently-stored"], 1);
  assert.equal(store.calls.length, 1);
});

Deno.test("Uploader lets a key be collected again after its first body was abandoned", async () => {
  const { store, uploader } = setup();
  const first = begin(uploader, "k", 10);
  first.abort();
  assert.equal(uploader.stats.skipped.incomplete, 1);
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls.length, 1);
  assert.equal(uploader.stats.stored, 1);
});

Deno.test("Uploader remembers at most dedupKeys keys, forgetting the oldest", async () => {
  const { uploader } = setup(undefined, { dedupKeys: 2 });
  for (const key of ["a", "b", "c"]) {
    upload(uploader, key);
    await settled(uploader);
  }
  assert.deepEqual(["a", "b", "c"].map((k) => uploader.isRecent(k)), [false, true, true]);
  assert.equal(uploader.begin("b", meta("b"), 10), "recently-stored");
  assert.equal(uploader.begin("c", meta("c"), 10), "recently-stored");
  const again = uploader.begin("a", meta("a"), 10);
  assert.ok(again instanceof Collector, "the oldest key was forgotten");
  again.abort();
});

Deno.test("Uploader forgets a stored key after dedupTtlMs, so an expired object is stored again", async () => {
  let now = 1_000_000;
  const { store, uploader } = setup(undefined, { dedupTtlMs: 60_000, now: () => now });
  upload(uploader, "k");
  await settled(uploader);
  now += 59_999;
  assert.equal(uploader.isRecent("k"), true);
  assert.equal(uploader.begin("k", meta("k"), 10), "recently-stored");
  now += 1;
  assert.equal(uploader.isRecent("k"), false);
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls.length, 2);
});

Deno.test("Uploader with dedupKeys=0 remembers nothing and relies on the conditional write", async () => {
  const { store, uploader, logger } = setup(undefined, { dedupKeys: 0 });
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(uploader.isRecent("k"), false);
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls.length, 2);
  assert.equal(uploader.stats.stored, 1);
  assert.equal(uploader.stats.alreadyPresent, 1);
  assert.equal(logger.find("Uploaded to S3").length, 1);
});

Deno.test("Uploader counts an 'exists' answer as already present and does not log a write", async () => {
  const { store, uploader, logger } = setup(() => "exists" as const);
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls.length, 1);
  assert.equal(uploader.stats.alreadyPresent, 1);
  assert.equal(uploader.stats.stored, 0);
  assert.equal(uploader.stats.failed, 0);
  assert.deepEqual(logger.find("Uploaded"), []);
  assert.ok(uploader.isRecent("k"), "a present key need not be written again");
  assert.equal(uploader.stats.bytesInFlight, 0);
});

Deno.test("Uploader.begin() refuses a body over the bytes-in-flight budget: no-room", async () => {
  const g = gate();
  const { store, uploader, logger } = setup(() => g.promise, {
    maxBytesInFlight: 10,
    maxObjectBytes: 10,
  });
  upload(uploader, "a", 6);
  assert.equal(uploader.stats.bytesInFlight, 6);
  assert.equal(uploader.begin("b", meta("b"), 5), "no-room");
  assert.equal(uploader.stats.skipped["no-room"], 1);
  assert.equal(uploader.stats.bytesInFlight, 6);
  assert.equal(
    logger.find("Upload skipped reason=no-room path=/insecure/plain/b.jpg key=b").length,
    1,
  );
  upload(uploader, "c", 4); // exactly fills the budget
  assert.equal(uploader.stats.bytesInFlight, 10);
  assert.equal(uploader.begin("d", meta("d"), 1), "no-room");
  g.open();
  await settled(uploader);
  assert.equal(uploader.stats.bytesInFlight, 0);
  assert.deepEqual([...store.objects.keys()].toSorted(), ["a", "c"]);
  // With the budget free again, a body fits.
  const b = uploader.begin("b", meta("b"), 5);
  assert.ok(b instanceof Collector);
  b.abort();
  assert.equal(uploader.stats.bytesInFlight, 0);
});

Deno.test("Uploader gives the bytes back after a failed write", async () => {
  const { uploader } = setup(() => {
    throw new StoreError("AccessDenied (HTTP 403)", false, "AccessDenied");
  });
  upload(uploader, "k", 100);
  assert.equal(uploader.stats.bytesInFlight, 100);
  await settled(uploader);
  assert.equal(uploader.stats.failed, 1);
  assert.equal(uploader.stats.bytesInFlight, 0);
  assert.equal(uploader.pending, 0);
});

Deno.test("Uploader aborts a body of unknown length that outgrows the budget: no-room", async () => {
  const g = gate();
  const { store, uploader, logger } = setup(() => g.promise, {
    maxBytesInFlight: 10,
    maxObjectBytes: 10,
  });
  upload(uploader, "a", 6);
  const c = begin(uploader, "b", null);
  assert.ok(c.add(bytes(3)));
  assert.equal(uploader.stats.bytesInFlight, 9);
  assert.equal(c.add(bytes(2)), false);
  assert.equal(uploader.stats.skipped["no-room"], 1);
  assert.equal(uploader.stats.bytesInFlight, 6, "the collector's reservation is released");
  assert.equal(logger.find("Upload skipped reason=no-room").length, 1);
  assert.equal(c.add(bytes(1)), false, "a given-up collector takes nothing more");
  c.finish();
  g.open();
  await settled(uploader);
  assert.deepEqual([...store.objects.keys()], ["a"]);
  assert.equal(uploader.stats.bytesInFlight, 0);
});

Deno.test("Uploader refuses bodies over the largest object size: too-large", async () => {
  const { store, uploader, logger } = setup(undefined, { maxObjectBytes: 8 });
  assert.equal(uploader.begin("a", meta("a"), 9), "too-large");
  const c = begin(uploader, "b", null);
  assert.ok(c.add(bytes(8)));
  assert.equal(c.add(bytes(1)), false);
  c.finish();
  assert.equal(uploader.stats.skipped["too-large"], 2);
  assert.equal(logger.find("Upload skipped reason=too-large").length, 2);
  assert.equal(uploader.stats.bytesInFlight, 0);
  await settled(uploader);
  assert.equal(store.calls.length, 0);
  upload(uploader, "c", 8);
  await settled(uploader);
  assert.equal(store.calls.length, 1);
});

Deno.test("Uploader never stores a body that does not match its Content-Length: incomplete", async () => {
  const rows: [string, number, number[]][] = [
    ["fewer bytes", 10, [6]],
    ["no bytes", 10, []],
    ["more bytes", 4, [3, 3]],
  ];
  for (const [name, length, chunks] of rows) {
    const { store, uploader, logger } = setup();
    const c = begin(uploader, "k", length);
    for (const n of chunks) c.add(bytes(n));
    c.finish();
    await settled(uploader);
    assert.equal(store.calls.length, 0, name);
    assert.equal(uploader.stats.skipped.incomplete, 1, name);
    assert.equal(uploader.stats.bytesInFlight, 0, name);
    assert.equal(uploader.pending, 0, name);
    assert.deepEqual(logger.lines, [], name);
  }
});

Deno.test("Collector.abort() releases its reservation; later calls do nothing", async () => {
  const { store, uploader } = setup();
  const c = begin(uploader, "k", 10);
  assert.ok(c.add(bytes(5)));
  c.abort();
  c.abort();
  assert.equal(c.add(bytes(5)), false);
  c.finish();
  await settled(uploader);
  assert.equal(uploader.stats.skipped.incomplete, 1);
  assert.equal(uploader.stats.bytesInFlight, 0);
  assert.equal(store.calls.length, 0);
});

Deno.test("Uploader retries a retryable failure with backoff and then stores", async () => {
  const { store, uploader, logger } = setup((call) => {
    if (call.attempt < 2) throw new StoreError("SlowDown (HTTP 503)", true, "SlowDown");
  });
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls.length, 3);
  assert.ok(store.objects.has("k"));
  assert.equal(uploader.stats.stored, 1);
  assert.equal(uploader.stats.retries, 2);
  assert.equal(uploader.stats.failed, 0);
  const retries = logger.find("WARN Upload failed, will retry");
  assert.equal(retries.length, 2);
  assert.match(retries[0]!, / key=k attempt=1 retryInMs=0 reason="SlowDown \(HTTP 503\)"$/);
  assert.match(retries[1]!, / attempt=2 /);
  assert.equal(logger.find("Uploaded to S3").length, 1);
});

Deno.test("Uploader treats an unclassified error as transient", async () => {
  const { store, uploader } = setup((call) => {
    if (call.attempt === 0) throw new TypeError("error sending request: connection reset");
  });
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls.length, 2);
  assert.equal(uploader.stats.stored, 1);
});

Deno.test("Uploader gives up at once on a failure that cannot pass, and logs it", async () => {
  const { store, uploader, logger } = setup(() => {
    throw new StoreError("PutObject k: AccessDenied (HTTP 403): denied", false, "AccessDenied");
  });
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls.length, 1);
  assert.equal(uploader.stats.failed, 1);
  assert.equal(uploader.stats.retries, 0);
  assert.equal(uploader.isRecent("k"), false, "a failed key is not remembered as stored");
  const failed = logger.find("ERROR Upload failed");
  assert.equal(failed.length, 1);
  assert.ok(
    failed[0]!.endsWith(
      'Upload failed path=/insecure/plain/k.jpg bucket=test-bucket key=k attempts=1 reason="PutObject k: AccessDenied (HTTP 403): denied"',
    ),
    failed[0],
  );
  assert.deepEqual(logger.find("Uploaded"), []);
});

Deno.test("Uploader stops after `retries` retries and logs the number of attempts", async () => {
  const { store, uploader, logger } = setup(() => {
    throw new StoreError("InternalError (HTTP 500)", true, "InternalError");
  }, { retries: 2 });
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls.length, 3);
  assert.equal(uploader.stats.retries, 2);
  assert.equal(uploader.stats.failed, 1);
  assert.equal(logger.find("ERROR Upload failed").length, 1);
  assert.match(logger.find("ERROR Upload failed")[0]!, / attempts=3 /);
});

Deno.test("Uploader runs at most `concurrency` writes at once, the rest in order", async () => {
  const g = gate();
  const { store, uploader } = setup(() => g.promise, { concurrency: 2 });
  for (const key of ["a", "b", "c", "d", "e"]) upload(uploader, key);
  await sleep(5);
  assert.equal(store.active, 2);
  assert.deepEqual(store.calls.map((c) => c.key), ["a", "b"]);
  assert.equal(uploader.stats.queueDepth, 5);
  assert.equal(uploader.pending, 5);
  g.open();
  await settled(uploader);
  assert.equal(store.maxActive, 2);
  assert.deepEqual(store.calls.map((c) => c.key), ["a", "b", "c", "d", "e"]);
  assert.equal(uploader.stats.stored, 5);
});

Deno.test("Uploader.drain() waits for queued writes and bodies still streaming", async () => {
  const { store, uploader } = setup(async () => {
    await sleep(20);
  }, { concurrency: 1 });
  upload(uploader, "a");
  upload(uploader, "b");
  const streaming = begin(uploader, "c", 2);
  const timer = setTimeout(() => {
    streaming.add(bytes(2));
    streaming.finish();
  }, 10);
  try {
    const result = await uploader.drain(2000);
    assert.deepEqual(result, { lost: [] });
  } finally {
    clearTimeout(timer);
  }
  assert.deepEqual([...store.objects.keys()].toSorted(), ["a", "b", "c"]);
  assert.equal(uploader.pending, 0);
});

Deno.test("Uploader.drain() with nothing pending returns at once", async () => {
  const { uploader } = setup();
  const start = performance.now();
  assert.deepEqual(await uploader.drain(5000), { lost: [] });
  assert.ok(performance.now() - start < 1000);
});

Deno.test("Uploader.drain() gives up at the deadline, aborts the write and reports it lost", async () => {
  const { uploader, logger } = setup(hang);
  upload(uploader, "k");
  const start = performance.now();
  const result = await uploader.drain(50);
  const took = performance.now() - start;
  assert.deepEqual(result, { lost: ["k"] });
  assert.ok(took >= 45 && took < 1000, `drain took ${took} ms`);
  assert.equal(uploader.stats.failed, 1);
  assert.equal(uploader.stats.bytesInFlight, 0);
  assert.equal(uploader.stats.queueDepth, 0);
  assert.equal(uploader.pending, 0);
  const failed = logger.find("ERROR Upload failed");
  assert.equal(failed.length, 1);
  assert.match(
    failed[0]!,
    / bucket=test-bucket key=k attempts=1 reason="shutdown deadline passed"$/,
  );
});

Deno.test("Uploader.drain() reports queued writes that never started as lost", async () => {
  const { store, uploader, logger } = setup(hang, { concurrency: 1 });
  upload(uploader, "a");
  upload(uploader, "b");
  const result = await uploader.drain(30);
  assert.deepEqual(result.lost.toSorted(), ["a", "b"]);
  assert.deepEqual(store.calls.map((c) => c.key), ["a"], "b never started");
  assert.equal(uploader.stats.failed, 2);
  assert.equal(uploader.stats.queueDepth, 0);
  assert.equal(uploader.stats.bytesInFlight, 0);
  assert.equal(logger.find("ERROR Upload failed").length, 2);
  assert.match(logger.find("key=b")[0]!, / attempts=0 reason="shutdown deadline passed"$/);
});

Deno.test("Uploader.drain() reports a body still streaming at the deadline as lost", async () => {
  const { store, uploader } = setup();
  const c = begin(uploader, "k", 4);
  assert.ok(c.add(bytes(2)));
  assert.deepEqual(await uploader.drain(20), { lost: ["k"] });
  c.add(bytes(2));
  c.finish();
  await sleep(5);
  assert.equal(store.calls.length, 0, "nothing starts after the deadline");
  assert.equal(uploader.stats.skipped.closed, 1);
  assert.equal(uploader.stats.bytesInFlight, 0);
  assert.equal(uploader.pending, 0);
});

Deno.test("Uploader.drain() returns by its deadline even if a write ignores the abort", async () => {
  const g = gate();
  const { uploader } = setup(() => g.promise);
  upload(uploader, "k");
  const start = performance.now();
  let took = Infinity;
  const drained = uploader.drain(50).then((r) => {
    took = performance.now() - start;
    return r;
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([drained, new Promise((r) => (timer = setTimeout(r, 1000)))]);
  clearTimeout(timer);
  g.open(); // let a drain that is still stuck finish, so the test itself ends
  const result = await drained;
  assert.ok(took < 1000, `drain(50) took ${took.toFixed(0)} ms with a stuck write`);
  assert.deepEqual(result.lost, ["k"]);
});

Deno.test("Uploader.drain() starts no new attempt once the deadline has passed", async () => {
  const { store, uploader, logger } = setup((call) => {
    if (call.options.signal?.aborted) {
      throw new StoreError("aborted", false, "AbortError");
    }
    throw new StoreError("SlowDown (HTTP 503)", true, "SlowDown");
  }, { retryBaseDelayMs: 10_000, retryMaxDelayMs: 10_000, random: () => 0.5 });
  upload(uploader, "k");
  await sleep(5); // the first attempt failed; a 5 s backoff has begun
  assert.equal(store.calls.length, 1);
  const start = performance.now();
  assert.deepEqual(await uploader.drain(30), { lost: ["k"] });
  assert.ok(performance.now() - start < 1000, "the backoff wait is cut short");
  assert.equal(uploader.stats.failed, 1);
  assert.equal(logger.find('reason="shutdown deadline passed"').length, 1);
  assert.equal(store.calls.length, 1, "no put after the deadline");
});

Deno.test("Uploader.begin() after drain() refuses: closed", async () => {
  const { store, uploader, logger } = setup();
  await uploader.drain(10);
  assert.equal(uploader.begin("k", meta("k"), 10), "closed");
  assert.equal(uploader.begin("k2", meta("k2"), null), "closed");
  assert.equal(uploader.stats.skipped.closed, 2);
  assert.equal(logger.find("WARN Upload skipped reason=closed").length, 2);
  assert.equal(uploader.stats.bytesInFlight, 0);
  assert.equal(store.calls.length, 0);
});

Deno.test("Uploader.backoff() stays within 0 ≤ delay ≤ min(max, base·2^attempt)", () => {
  const base = 200;
  const max = 5000;
  for (const r of [0, 0.25, 0.5, 0.999999]) {
    const { uploader } = setup(undefined, {
      retryBaseDelayMs: base,
      retryMaxDelayMs: max,
      random: () => r,
    });
    for (const attempt of [0, 1, 2, 3, 4, 5, 10, 40, 1100]) {
      const ceiling = Math.min(max, base * 2 ** attempt);
      const delay = uploader.backoff(attempt);
      assert.ok(Number.isInteger(delay), `${delay}`);
      assert.ok(delay >= 0 && delay <= ceiling, `r=${r} attempt=${attempt}: ${delay} > ${ceiling}`);
      assert.equal(delay, Math.round(r * ceiling), `r=${r} attempt=${attempt}`);
    }
  }
});

Deno.test("Uploader.backoff() grows exponentially up to the maximum", () => {
  const { uploader } = setup(undefined, {
    retryBaseDelayMs: 100,
    retryMaxDelayMs: 1000,
    random: () => 0.5,
  });
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => uploader.backoff(a)), [
    50,
    100,
    200,
    400,
    500,
    500,
  ]);
});

Deno.test("Uploader.backoff() uses Math.random when no jitter source is given", () => {
  const store = new MemoryStore();
  const { random: _, ...options } = OPTIONS;
  const uploader = new Uploader(store, {
    ...options,
    retryBaseDelayMs: 1000,
    retryMaxDelayMs: 1000,
  }, new MemoryLogger());
  const delays = new Set(Array.from({ length: 50 }, () => uploader.backoff(0)));
  assert.ok(delays.size > 1, "jittered");
  for (const d of delays) assert.ok(d >= 0 && d <= 1000);
});

Deno.test("Uploader abandons a write with no answer within attemptTimeoutMs and retries it", async () => {
  // The first attempt hangs until its signal aborts; the retry stores.
  const { store, uploader, logger } = setup(
    (call) => call.attempt === 0 ? hang(call) : undefined,
    { attemptTimeoutMs: 40, retries: 1 },
  );
  upload(uploader, "k");
  await settled(uploader);
  assert.equal(store.calls.length, 2);
  assert.equal(store.calls[0]!.options.signal!.reason.name, "TimeoutError");
  assert.equal(uploader.stats.retries, 1);
  assert.equal(uploader.stats.stored, 1);
  assert.match(
    logger.find("WARN Upload failed, will retry")[0] ?? "",
    / reason="write timed out: no answer within 0.04 s"$/,
  );
});

Deno.test("Uploader.drain() returns as soon as a write finishing in the grace settles, not at a later check", async () => {
  // The write ignores the abort and ends in the next turn of the event loop; the drain must
  // have returned before a timer set right after it fires (a drain that looked again every
  // few milliseconds would not have).
  let drainedFirst: boolean | undefined;
  let done = false;
  const { uploader } = setup((call) => {
    const { promise, resolve } = Promise.withResolvers<void>();
    call.options.signal!.addEventListener("abort", () => {
      setTimeout(() => {
        resolve();
        setTimeout(() => (drainedFirst = done), 0);
      }, 0);
    }, { once: true });
    return promise;
  });
  upload(uploader, "k");
  const result = await uploader.drain(20);
  done = true;
  assert.deepEqual(result, { lost: [] });
  assert.equal(uploader.stats.stored, 1);
  // Let the check run, then see that the drain had returned before it.
  await new Promise<void>((r) => setTimeout(r, 0));
  await new Promise<void>((r) => setTimeout(r, 0));
  assert.equal(drainedFirst, true);
});

Deno.test("Uploader.drain() counts a write that completes within the grace as stored, not lost", async () => {
  // A write that ignores the abort (a local disk) and lands 80 ms in, after a 20 ms deadline.
  const { uploader } = setup(() => sleep(80));
  upload(uploader, "k");
  const result = await uploader.drain(20);
  assert.deepEqual(result, { lost: [] });
  assert.equal(uploader.stats.stored, 1);
  assert.equal(uploader.stats.failed, 0);
});
