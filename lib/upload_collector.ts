/** Gathers one response body as it streams past, within the byte budget its sink grants. */
import type { SkipReason, UploadJob, UploadMeta } from "./upload_types.ts";

/**
 * Gives a body's memory back now. A buffer nobody else holds would otherwise wait for the next
 * full garbage collection (V8 frees an array buffer's bytes only when it collects the object,
 * and a body that lived through its upload is old by then), which under a flood of large
 * misses is tens of megabytes past the budget; detaching it frees them at once. Only for
 * buffers the uploader owns: the copy it collected, never a chunk passed on to the client.
 */
export function discard(body: Uint8Array): void {
  const buffer = body.buffer;
  if (buffer instanceof ArrayBuffer && !buffer.detached) buffer.transfer(0);
}

/** What a collector reports to: the uploader, which owns the budget and the queue. */
export interface CollectorSink {
  /** Reserves `bytes` more for a collector of unknown length; null when granted. */
  grow(collector: Collector, bytes: number): SkipReason | null;
  /** Takes a complete body. */
  enqueue(job: UploadJob): void;
  /** Gives back a collector's reservation after it was abandoned. */
  release(collector: Collector, reason: SkipReason): void;
}

/**
 * Collects one response body as it streams past. Created by the uploader's `begin`;
 * exactly one of `finish` or `abort` must be called.
 */
export class Collector {
  #chunks: Uint8Array[] = [];
  #buffer: Uint8Array | null;
  #length = 0;
  #reserved: number;
  #done = false;

  constructor(
    private readonly sink: CollectorSink,
    readonly key: string,
    private readonly meta: UploadMeta,
    private readonly expectedLength: number | null,
  ) {
    this.#reserved = expectedLength ?? 0;
    this.#buffer = expectedLength === null ? null : new Uint8Array(expectedLength);
  }

  /** Bytes reserved for this body so far. */
  get reserved(): number {
    return this.#reserved;
  }

  /** Copies a chunk in; returns false (and gives up) when the body outgrows its limits. */
  add(chunk: Uint8Array): boolean {
    if (this.#done) return false;
    const next = this.#length + chunk.byteLength;
    if (this.#buffer !== null) {
      if (next > this.#buffer.byteLength) return this.abort("incomplete"), false;
      this.#buffer.set(chunk, this.#length);
    } else {
      const grow = next - this.#reserved;
      if (grow > 0) {
        const reason = this.sink.grow(this, grow);
        if (reason !== null) return this.abort(reason), false;
        this.#reserved = next;
      }
      this.#chunks.push(chunk.slice());
    }
    this.#length = next;
    return true;
  }

  /** The body ended normally: queue it if it is complete. */
  finish(): void {
    if (this.#done) return;
    if (this.expectedLength !== null && this.#length !== this.expectedLength) {
      this.abort("incomplete");
      return;
    }
    this.#done = true;
    let body = this.#buffer;
    if (body === null) {
      body = new Uint8Array(this.#length);
      let offset = 0;
      for (const c of this.#chunks) {
        body.set(c, offset);
        offset += c.byteLength;
        discard(c);
      }
      this.#chunks = [];
    }
    this.sink.enqueue({ ...this.meta, key: this.key, body, reserved: this.#reserved });
  }

  /** The body failed, was cut short or was cancelled: release everything. */
  abort(reason: SkipReason = "incomplete"): void {
    if (this.#done) return;
    this.#done = true;
    for (const c of this.#chunks) discard(c);
    this.#chunks = [];
    if (this.#buffer !== null) discard(this.#buffer);
    this.#buffer = null;
    this.sink.release(this, reason);
  }
}
