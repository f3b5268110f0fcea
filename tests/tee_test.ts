/**
 * The copy of imgproxy's answer to the uploader (`teeToCollector`): what the client and the
 * collector get, and how a body of declared length is read.
 */
import assert from "node:assert/strict";
import { teeToCollector } from "../lib/proxy.ts";
import { Collector, type CollectorSink } from "../lib/upload_collector.ts";
import type { SkipReason, UploadJob } from "../lib/upload_types.ts";

/** Records what the collector hands on. */
class Sink implements CollectorSink {
  jobs: UploadJob[] = [];
  released: SkipReason[] = [];
  grow(): SkipReason | null {
    return null;
  }
  enqueue(job: UploadJob): void {
    this.jobs.push(job);
  }
  release(_c: Collector, reason: SkipReason): void {
    this.released.push(reason);
  }
}

const META = { path: "/p", contentType: "image/jpeg", cacheControl: null };

function bytes(n: number, seed = 1): Uint8Array<ArrayBuffer> {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * A byte stream giving `data` in `pieces` (sizes), recording how much each read asked for (the
 * size of the buffer it was handed; 0 when it was handed none).
 */
function byteSource(data: Uint8Array, pieces: number[]) {
  const asked: number[] = [];
  let at = 0;
  let piece = 0;
  const stream = new ReadableStream({
    type: "bytes",
    pull(c: ReadableByteStreamController) {
      const req = c.byobRequest;
      const view = req?.view as Uint8Array | null | undefined;
      asked.push(view?.byteLength ?? 0);
      if (at >= data.byteLength) {
        c.close();
        req?.respond(0);
        return;
      }
      const n = Math.min(pieces[piece++] ?? data.byteLength, data.byteLength - at);
      if (view !== null && view !== undefined) {
        const k = Math.min(n, view.byteLength);
        view.set(data.subarray(at, at + k));
        at += k;
        req!.respond(k);
      } else {
        c.enqueue(data.slice(at, at + n));
        at += n;
      }
    },
  });
  return { stream: stream as ReadableStream<Uint8Array>, asked };
}

Deno.test("tee: a body of declared length is read into buffers of what is left, not 64 KiB each", async () => {
  const data = bytes(30_000);
  const { stream, asked } = byteSource(data, [10_000, 20_000]);
  const sink = new Sink();
  const collector = new Collector(sink, "k", META, data.byteLength);
  const out = teeToCollector(stream, collector, undefined, undefined, data.byteLength);
  assert.deepEqual(await readAll(out), data);
  // 30,000 asked, 10,000 came; the 20,000 left; then 1 byte, which finds the end.
  assert.deepEqual(asked, [30_000, 20_000, 1]);
  assert.equal(sink.jobs.length, 1);
  assert.deepEqual(sink.jobs[0]!.body, data);
  assert.deepEqual(sink.released, []);
});

Deno.test("tee: a body longer than declared reaches the client whole and is not stored", async () => {
  const data = bytes(5_000);
  const { stream, asked } = byteSource(data, [3_000, 2_000]);
  const sink = new Sink();
  const collector = new Collector(sink, "k", META, 3_000);
  const out = teeToCollector(stream, collector, undefined, undefined, 3_000);
  assert.deepEqual(await readAll(out), data);
  assert.deepEqual(asked.slice(0, 2), [3_000, 1]);
  assert.deepEqual(sink.jobs, []);
  assert.deepEqual(sink.released, ["incomplete"]);
});

Deno.test("tee: a body shorter than declared is passed on and not stored", async () => {
  const data = bytes(2_000);
  const { stream } = byteSource(data, [2_000]);
  const sink = new Sink();
  const collector = new Collector(sink, "k", META, 3_000);
  const out = teeToCollector(stream, collector, undefined, undefined, 3_000);
  assert.deepEqual(await readAll(out), data);
  assert.deepEqual(sink.jobs, []);
  assert.deepEqual(sink.released, ["incomplete"]);
});

Deno.test("tee: a stream that is not a byte stream is read as it comes", async () => {
  const data = bytes(4_000);
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(data.slice(0, 1_000));
      c.enqueue(data.slice(1_000));
      c.close();
    },
  });
  const sink = new Sink();
  const collector = new Collector(sink, "k", META, data.byteLength);
  const out = teeToCollector(stream, collector, undefined, undefined, data.byteLength);
  assert.deepEqual(await readAll(out), data);
  assert.deepEqual(sink.jobs[0]!.body, data);
});

Deno.test("tee: a fetched body of declared length, copied whole over a real socket", async () => {
  const data = bytes(300_000, 7);
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(data, { headers: { "content-length": String(data.byteLength) } }),
  );
  const res = await fetch(`http://127.0.0.1:${server.addr.port}/`);
  const sink = new Sink();
  const collector = new Collector(sink, "k", META, data.byteLength);
  const out = teeToCollector(res.body!, collector, undefined, undefined, data.byteLength);
  assert.deepEqual(await readAll(out), data);
  assert.equal(sink.jobs.length, 1);
  assert.deepEqual(sink.jobs[0]!.body, data);
});
