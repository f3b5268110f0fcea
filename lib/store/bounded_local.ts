/**
 * A local store bounded to `CACHE_DIR_MAX_BYTES`: a {@linkcode LocalStore} whose writes and hits
 * are accounted ({@linkcode LocalBudget}), and which, once past the bound, removes the least
 * recently used objects (a hit counts as a use) until it is back under it.
 *
 * - Eviction runs in the background, one removal at a time, started by the write that crossed
 *   the bound; no request waits for it (writes come from the uploader, hits never wait).
 * - Concurrent writers: a key being written is never chosen, and writes and removals of one key
 *   take turns, so a removal never takes a newer object's sidecar.
 * - A crash mid-eviction leaves at worst a sidecar without its object (the object is removed
 *   first): readers ignore it, the next write replaces it, and the next start-up scan accounts
 *   it as least recently used, so it goes first.
 * - The directory's existing size is accounted by a background walk at start-up
 *   ({@linkcode walkLocalStore}); eviction waits for it, writes and hits do not.
 */
import type { Logger } from "../log.ts";
import { LocalBudget } from "./local_budget.ts";
import { logLeftovers, type ReadDir, walkLocalStore } from "./local_walk.ts";
import type { LocalStore } from "./local.ts";
import type {
  OpenedObject,
  PutOptions,
  PutResult,
  ReadObject,
  Store,
  StoredObject,
} from "./store.ts";
import { errorMessage as message } from "../error_message.ts";

/** Eviction counters (exported as metrics). */
export interface EvictionStats {
  /** Objects removed to stay under the bound. */
  evictions: number;
  /** Bytes those objects took. */
  evictedBytes: number;
  /** Removals that failed (the pass stops; the next write tries again). */
  failures: number;
}

/** A {@linkcode LocalStore} kept under `maxBytes` by least-recently-used eviction. */
export class BoundedLocalStore implements Store {
  readonly budget = new LocalBudget();
  readonly stats: EvictionStats = { evictions: 0, evictedBytes: 0, failures: 0 };
  #scan: Promise<void> | null = null;
  #scanned = false;
  #evicting: Promise<void> | null = null;
  /** Keys with writes under way (how many). */
  readonly #writing = new Map<string, number>();
  /** The last write or removal under way, by key. */
  readonly #ops = new Map<string, Promise<void>>();
  readonly #stop = new AbortController();
  readonly #scanStop = new AbortController();
  #logger: Logger | null = null;

  constructor(
    readonly inner: LocalStore,
    readonly maxBytes: number,
    /** Injected for tests: how the start-up scan reads directories. */
    readonly readDir?: ReadDir,
  ) {}

  get description(): string {
    return `${this.inner.description} (at most ${this.maxBytes} bytes)`;
  }

  get storedMessage(): string {
    return this.inner.storedMessage;
  }

  get logFields() {
    return this.inner.logFields;
  }

  /** True once the start-up scan has accounted the directory. */
  get scanned(): boolean {
    return this.#scanned;
  }

  /**
   * Starts accounting the directory in the background (once); eviction begins after it. The
   * same walk removes a crashed run's leftovers older than `cleanBefore`, when given.
   */
  start(logger: Logger, cleanBefore?: number): void {
    if (this.#scan !== null) return;
    this.#logger = logger;
    const started = performance.now();
    const dir = this.inner.dir;
    const walk = walkLocalStore(dir, {
      cleanBefore,
      account: true,
      signal: this.#scanStop.signal,
      readDir: this.readDir,
    });
    this.#scan = walk.then((result) => {
      logLeftovers(logger, dir, result.removed);
      if (result.aborted) return;
      if (result.error !== undefined) {
        // What is written from now on is still bounded; what was there is not counted.
        logger.log(
          "ERROR",
          "Cache directory could not be accounted: existing objects are not counted",
          { dir, reason: message(result.error) },
        );
        return;
      }
      this.budget.addScanned(result.found);
      logger.log("INFO", "Cache directory accounted", {
        dir,
        objects: this.budget.objects,
        bytes: this.budget.totalBytes,
        maxBytes: this.maxBytes,
        ms: Math.round(performance.now() - started),
      });
    }).finally(() => {
      this.#scanned = true;
      this.#maybeEvict();
    });
  }

  /** Stops the start-up walk (eviction goes on) and waits for it. */
  async stopScan(): Promise<void> {
    this.#scanStop.abort();
    if (this.#scan !== null) await this.#scan;
  }

  async put(key: string, body: Uint8Array, options: PutOptions): Promise<PutResult> {
    this.#writing.set(key, (this.#writing.get(key) ?? 0) + 1);
    try {
      // After any removal or other write of this key: the accounted size is the one on disk.
      return await this.#exclusive(key, async () => {
        const result = await this.inner.put(key, body, options);
        // Measured rather than computed: the sidecar's content is the local store's business.
        if (result === "stored") this.budget.set(key, await this.inner.sizeOf(key));
        return result;
      });
    } finally {
      const n = this.#writing.get(key)! - 1;
      if (n === 0) this.#writing.delete(key);
      else this.#writing.set(key, n);
      this.#maybeEvict();
    }
  }

  has(key: string): Promise<boolean> {
    return this.inner.has(key);
  }

  open(key: string, signal?: AbortSignal): Promise<OpenedObject | null>;
  open(
    key: string,
    signal: AbortSignal | undefined,
    wholeUpTo: number,
  ): Promise<OpenedObject | ReadObject | null>;
  async open(
    key: string,
    _signal?: AbortSignal,
    wholeUpTo = -1,
  ): Promise<OpenedObject | ReadObject | null> {
    const obj = await this.inner.open(key, undefined, wholeUpTo);
    if (obj !== null) this.budget.touch(key);
    return obj;
  }

  async get(key: string): Promise<StoredObject | null> {
    const obj = await this.inner.get(key);
    if (obj !== null) this.budget.touch(key);
    return obj;
  }

  variants(baseKey: string): Promise<string[]> {
    return this.inner.variants(baseKey);
  }

  async delete(key: string): Promise<void> {
    await this.#exclusive(key, async () => {
      await this.inner.delete(key);
      this.budget.remove(key);
    });
  }

  /**
   * Runs `fn` after every earlier write or removal of `key` has settled: a removal never takes
   * the sidecar of a write that came after it, and sizes are accounted in the order the files
   * were replaced.
   */
  #exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#ops.get(key);
    const run = before === undefined ? fn() : before.then(fn);
    const tracked = run.then(() => {}, () => {});
    this.#ops.set(key, tracked);
    return run.finally(() => {
      if (this.#ops.get(key) === tracked) this.#ops.delete(key);
    });
  }

  #maybeEvict(): void {
    if (!this.#scanned || this.#evicting !== null || this.#stop.signal.aborted) return;
    if (this.budget.totalBytes <= this.maxBytes) return;
    this.#evicting = this.#evict().then((progressed) => {
      this.#evicting = null;
      // Writes during the last removal may have crossed the bound again. A pass that removed
      // nothing (a failing disk, or every key left being written) waits for the next write
      // instead of spinning.
      if (progressed) this.#maybeEvict();
    });
  }

  /**
   * Removes least recently used objects until under the bound; true when it removed some and
   * none failed.
   */
  async #evict(): Promise<boolean> {
    let objects = 0;
    let bytes = 0;
    let clean = true;
    while (this.budget.totalBytes > this.maxBytes && !this.#stop.signal.aborted) {
      const key = this.budget.oldest(this.#writing);
      if (key === undefined) break; // everything left is being written
      const size = this.budget.remove(key);
      try {
        await this.#exclusive(key, () => this.inner.delete(key));
      } catch (err) {
        this.budget.set(key, size);
        this.stats.failures++;
        this.#logger?.log("WARN", "Eviction failed", { key, reason: message(err) });
        clean = false;
        break;
      }
      objects++;
      bytes += size;
      this.stats.evictions++;
      this.stats.evictedBytes += size;
    }
    if (objects > 0) {
      this.#logger?.log("INFO", "Evicted least recently used objects", {
        objects,
        bytes,
        totalBytes: this.budget.totalBytes,
        maxBytes: this.maxBytes,
      });
    }
    return clean && objects > 0;
  }

  /** Resolves once the start-up scan is done and no eviction is under way. */
  async settled(): Promise<void> {
    if (this.#scan !== null) await this.#scan;
    while (this.#evicting !== null) await this.#evicting;
  }

  /** Stops the scan and eviction (after the removal under way) and waits for them. */
  async close(): Promise<void> {
    this.#stop.abort();
    this.#scanStop.abort();
    await this.settled();
  }
}
