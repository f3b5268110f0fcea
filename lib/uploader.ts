/**
 * The background uploader: takes complete response bodies and stores them without the client
 * ever waiting.
 *
 * Everything it holds is bounded and accounted for:
 * - bytes: a body is buffered only after its bytes are reserved against `maxBytesInFlight`
 *   (reserved while it streams, released once stored or given up);
 * - concurrency: at most `concurrency` writes at once, the rest wait in a FIFO queue;
 * - duplicates: one writer per key at a time (concurrent requests never produce parallel
 *   writes), a bounded memory of keys recently stored, and conditional writes when enabled;
 * - failures: transient ones are retried with exponential backoff and full jitter, the rest
 *   given up at once; every outcome is logged and counted;
 * - shutdown: `drain()` stops intake, lets the queue finish up to a deadline, then aborts and
 *   reports what was lost.
 */
import { type Breaker, isOutage } from "./breaker.ts";
import type { Level, Logger } from "./log.ts";
import type { Store } from "./store/store.ts";
import { DEFAULT_ATTEMPT_TIMEOUT_MS, writeOnce } from "./upload_attempt.ts";
import { Collector, type CollectorSink, discard } from "./upload_collector.ts";
import { RecentKeys } from "./upload_recent.ts";
import { Deadline } from "./timers.ts";
import { backoff, type RetryPolicy, RetryWaits } from "./upload_retry.ts";
import type {
  SkipReason,
  UploaderStats,
  UploadJob,
  UploadMeta,
  UploadOutcome,
} from "./upload_types.ts";

/** The uploader's settings. */
export interface UploaderOptions extends RetryPolicy {
  concurrency: number;
  maxBytesInFlight: number;
  maxObjectBytes: number;
  /**
   * How long one write may take (default 30 s): past it the write is aborted and counts as a
   * transient failure, so a store that accepts and never answers cannot hold a slot forever.
   */
  attemptTimeoutMs?: number;
  dedupKeys: number;
  /** How long a stored key is remembered (ms): objects can be expired or deleted later. */
  dedupTtlMs?: number;
  /** Injected for tests: the clock (monotonic, in ms). */
  now?: () => number;
  conditionalWrite: boolean;
  /**
   * Called once per {@linkcode Uploader.begin} call when that body is stored, found present,
   * failed or skipped (so a key skipped as `in-progress` is reported again by its writer).
   */
  onSettled?: (key: string, outcome: UploadOutcome) => void;
  /**
   * The level of the line written for each object stored (default `INFO`, the line the Go
   * program wrote): `DEBUG` when the access log is off, since an operator who turned off the
   * per-request lines does not want one per miss either (stores are counted in the metrics).
   */
  storedLogLevel?: Level;
  /** Injected for tests: the jitter source (0 ≤ x < 1). */
  random?: () => number;
  /**
   * Pauses uploads while the store keeps failing: new bodies are skipped (`store-down`) instead
   * of filling the bytes-in-flight budget with writes bound to fail.
   */
  breaker?: Breaker;
}

/** Outcome of a drain. */
export interface DrainResult {
  /** Keys that could not be stored before the deadline. */
  lost: string[];
}

/** Why a body was given up at shutdown. */
const SHUTDOWN_REASON = "shutdown deadline passed";

/** How long drain() waits, after aborting, for writes to settle. */
const DRAIN_GRACE_MS = 200;

const abortError = () => new DOMException("The uploader is shutting down", "AbortError");

/** The bounded background uploader. */
export class Uploader implements CollectorSink {
  readonly stats: UploaderStats = {
    stored: 0,
    alreadyPresent: 0,
    failed: 0,
    retries: 0,
    skipped: {
      "recently-stored": 0,
      "in-progress": 0,
      "no-room": 0,
      "too-large": 0,
      incomplete: 0,
      closed: 0,
      "store-down": 0,
    },
    queueDepth: 0,
    bytesInFlight: 0,
  };
  /** Keys being collected, queued or written. */
  readonly #busy = new Set<string>();
  /** Recently stored (or found present) keys. */
  readonly #recent: RecentKeys;
  readonly #queue: UploadJob[] = [];
  #active = 0;
  #closed = false;
  readonly #abort = new AbortController();
  /** drain()'s wait, woken each time a body or a write settles; null when nothing waits. */
  #wait: { done: () => boolean; resolve: () => void } | null = null;
  readonly #waits = new RetryWaits(this.#abort.signal);
  /** Keys given up because the drain deadline passed. */
  readonly #cutOff: string[] = [];
  readonly #random: () => number;

  constructor(
    readonly store: Store,
    readonly options: UploaderOptions,
    readonly logger: Logger,
  ) {
    this.#random = options.random ?? Math.random;
    this.#recent = new RecentKeys(
      options.dedupKeys,
      options.dedupTtlMs ?? Infinity,
      // The monotonic clock: a wall-clock step must not forget or keep keys early.
      options.now ?? (() => performance.now()),
    );
  }

  /** True while the key was stored recently enough to be remembered. */
  isRecent(key: string): boolean {
    return this.#recent.has(key);
  }

  /**
   * Forgets that `baseKey` and its variants (`<baseKey>-<suffix>`) were stored, after a purge
   * removed them: their next answers are stored again. Returns how many keys were forgotten.
   */
  forgetVariants(baseKey: string): number {
    return this.#recent.forgetVariants(baseKey);
  }

  /**
   * Starts collecting a body for `key`. Returns a {@linkcode Collector}, or the reason the body
   * will not be stored (counted, and logged when it means a bound was hit).
   */
  begin(
    key: string,
    meta: UploadMeta,
    contentLength: number | null,
  ): Collector | SkipReason {
    let reason: SkipReason | null = null;
    if (this.#closed) reason = "closed";
    else if (this.isRecent(key)) reason = "recently-stored";
    else if (this.#busy.has(key)) reason = "in-progress";
    else if (this.options.breaker?.isOpen()) reason = "store-down";
    else if (contentLength !== null && contentLength > this.options.maxObjectBytes) {
      reason = "too-large";
    } else if (
      contentLength !== null &&
      this.stats.bytesInFlight + contentLength > this.options.maxBytesInFlight
    ) reason = "no-room";
    if (reason !== null) {
      this.#skip(reason, key, meta.path);
      return reason;
    }
    this.#busy.add(key);
    this.stats.bytesInFlight += contentLength ?? 0;
    return new Collector(this, key, meta, contentLength);
  }

  /** Reserves `bytes` more for a collector of unknown length; null when granted. */
  grow(collector: Collector, bytes: number): SkipReason | null {
    if (collector.reserved + bytes > this.options.maxObjectBytes) return "too-large";
    if (this.stats.bytesInFlight + bytes > this.options.maxBytesInFlight) return "no-room";
    this.stats.bytesInFlight += bytes;
    return null;
  }

  /** Gives back a collector's reservation after it was abandoned. */
  release(collector: Collector, reason: SkipReason): void {
    this.#letGo(collector.key, collector.reserved);
    this.#skip(reason, collector.key, undefined);
    this.#settled();
  }

  /** A body left the uploader (stored, given up or abandoned): its key and bytes are free. */
  #letGo(key: string, reserved: number): void {
    this.stats.bytesInFlight -= reserved;
    this.#busy.delete(key);
  }

  #skip(reason: SkipReason, key: string, path: string | undefined): void {
    this.stats.skipped[reason]++;
    this.options.onSettled?.(key, { kind: "skipped", reason });
    // Duplicates are the normal case for a popular image: counted, not logged. A body that
    // was cut short already shows in the request log. Hitting a bound is worth a line.
    if (reason === "no-room" || reason === "too-large" || reason === "closed") {
      this.logger.log("WARN", "Upload skipped", { reason, path, key });
    }
  }

  /** Queues a complete body (called by {@linkcode Collector.finish}). */
  enqueue(job: UploadJob): void {
    if (this.#abort.signal.aborted) {
      // The drain deadline has passed: nothing new may start.
      discard(job.body);
      this.#letGo(job.key, job.reserved);
      this.#cutOff.push(job.key);
      this.#skip("closed", job.key, job.path);
      return;
    }
    this.stats.queueDepth++;
    this.#queue.push(job);
    this.#pump();
  }

  #pump(): void {
    while (this.#active < this.options.concurrency && this.#queue.length > 0) {
      const job = this.#queue.shift()!;
      this.#active++;
      this.#run(job).finally(() => {
        this.#active--;
        this.stats.queueDepth--;
        // Its last write has settled: the store is done with the bytes (a store keeps a copy).
        discard(job.body);
        this.#letGo(job.key, job.reserved);
        this.#pump();
        this.#settled();
      });
    }
  }

  async #run(job: UploadJob): Promise<void> {
    const { key, path } = job;
    for (let attempt = 0;; attempt++) {
      if (this.#abort.signal.aborted) {
        // The drain deadline passed while this job waited to retry: no new attempt.
        this.#fail(job, attempt, SHUTDOWN_REASON);
        return;
      }
      // Queued before the store started failing: not written while the breaker is open (one
      // write goes through as the probe once the cool-down is over).
      const breaker = this.options.breaker;
      if (breaker !== undefined && !breaker.allow()) {
        this.#skip("store-down", key, path);
        return;
      }
      const timeoutMs = this.options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
      const verdict = await writeOnce(
        this.store,
        job,
        this.options.conditionalWrite,
        timeoutMs,
        this.#abort.signal,
      );
      if (verdict.ok) {
        const result = verdict.result;
        breaker?.success();
        this.#recent.remember(key);
        this.options.onSettled?.(key, { kind: result });
        if (result === "stored") {
          this.stats.stored++;
          this.logger.log(this.options.storedLogLevel ?? "INFO", this.store.storedMessage, {
            path,
            ...this.store.logFields,
            key,
          });
        } else {
          this.stats.alreadyPresent++;
        }
        return;
      }
      const { error: e, timedOut, shutdown: aborted } = verdict;
      if (breaker !== undefined && !aborted) {
        if (isOutage(e, timedOut)) breaker.failure(e.message);
        else breaker.success();
      }
      if (!e.retryable || aborted || attempt >= this.options.retries) {
        this.#fail(job, attempt + 1, aborted ? SHUTDOWN_REASON : e.message);
        return;
      }
      this.stats.retries++;
      const delay = this.backoff(attempt);
      this.logger.log("WARN", "Upload failed, will retry", {
        path,
        key,
        attempt: attempt + 1,
        retryInMs: delay,
        reason: e.message,
      });
      await this.#waits.sleep(delay);
    }
  }

  #fail(job: UploadJob, attempts: number, reason: string): void {
    this.stats.failed++;
    if (reason === SHUTDOWN_REASON) this.#cutOff.push(job.key);
    this.options.onSettled?.(job.key, { kind: "failed", reason });
    this.logger.log("ERROR", "Upload failed", {
      path: job.path,
      ...this.store.logFields,
      key: job.key,
      attempts,
      reason,
    });
  }

  /** Delay before retry `attempt` (0-based): full jitter over an exponential ceiling. */
  backoff(attempt: number): number {
    return backoff(this.options, attempt, this.#random);
  }

  /** Bodies being collected, queued or written. */
  get pending(): number {
    return this.#busy.size;
  }

  /** A body or a write settled: wakes drain() if what it waits for has come. */
  #settled(): void {
    if (this.#wait !== null && this.#wait.done()) this.#wait.resolve();
  }

  /** Waits until `done()` holds (checked as bodies and writes settle) or `deadline` passes. */
  async #until(done: () => boolean, deadline: Deadline): Promise<void> {
    if (done()) return;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#wait = { done, resolve };
    try {
      await deadline.within(promise);
    } finally {
      this.#wait = null;
    }
  }

  /**
   * Stops taking new bodies and waits until everything queued is stored, or `timeoutMs`
   * passes; then aborts what is left and reports the keys that were lost.
   */
  async drain(timeoutMs: number): Promise<DrainResult> {
    this.#closed = true;
    await this.#until(() => this.#busy.size === 0, new Deadline(timeoutMs));
    if (this.#busy.size > 0) {
      // Abort writes under way and cut retry waits short, then wait for them to settle.
      this.#abort.abort(abortError());
      this.#waits.wakeAll();
      for (const job of this.#queue.splice(0)) {
        this.stats.queueDepth--;
        discard(job.body);
        this.#letGo(job.key, job.reserved);
        this.#fail(job, 0, SHUTDOWN_REASON);
      }
      // Writes that honour the abort settle at once; one that ignores it is not waited for
      // beyond a short grace, so shutdown keeps its deadline.
      await this.#until(() => this.#active === 0, new Deadline(DRAIN_GRACE_MS));
    }
    // Lost: what shutdown cut off, and what is still unsettled after the grace. A write that
    // completed within the grace is stored, not lost.
    return { lost: [...new Set([...this.#cutOff, ...this.#busy])] };
  }
}
