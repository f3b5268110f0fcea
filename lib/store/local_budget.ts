/**
 * The size accounting of a bounded local store (`CACHE_DIR_MAX_BYTES`): how many bytes each
 * object takes (its file plus its sidecar), in least-recently-used order, with what the
 * start-up walk found on disk added as older than anything used while it ran (the proxy serves
 * meanwhile).
 */
import type { ScannedObject } from "./local_walk.ts";

/** Bytes by key, least recently used first. */
export class LocalBudget {
  /** Map order is use order: a use deletes and re-inserts the key at the end. */
  readonly #bytes = new Map<string, number>();
  #total = 0;

  /** Bytes accounted. */
  get totalBytes(): number {
    return this.#total;
  }

  /** Objects accounted. */
  get objects(): number {
    return this.#bytes.size;
  }

  /** Records that `key` now takes `bytes` and was just used (a write). */
  set(key: string, bytes: number): void {
    this.#total += bytes - (this.#bytes.get(key) ?? 0);
    this.#bytes.delete(key);
    this.#bytes.set(key, bytes);
  }

  /** Records a use (a hit): the key becomes the most recently used. */
  touch(key: string): void {
    const bytes = this.#bytes.get(key);
    if (bytes === undefined) return;
    this.#bytes.delete(key);
    this.#bytes.set(key, bytes);
  }

  /** Forgets `key`; returns the bytes it took (0 when unknown). */
  remove(key: string): number {
    const bytes = this.#bytes.get(key);
    if (bytes === undefined) return 0;
    this.#bytes.delete(key);
    this.#total -= bytes;
    return bytes;
  }

  /** The least recently used key not in `skip`. */
  oldest(skip: { has(key: string): boolean }): string | undefined {
    for (const key of this.#bytes.keys()) if (!skip.has(key)) return key;
    return undefined;
  }

  /**
   * Adds what the start-up scan found, as older than everything recorded since it began (keys
   * recorded meanwhile keep their newer entry), oldest use first.
   */
  addScanned(found: readonly ScannedObject[]): void {
    const live = [...this.#bytes];
    this.#bytes.clear();
    this.#total = 0;
    const sorted = [...found].sort((a, b) => a.usedAt - b.usedAt);
    const recent = new Set(live.map(([k]) => k));
    for (const o of sorted) if (!recent.has(o.key)) this.set(o.key, o.bytes);
    for (const [k, bytes] of live) this.set(k, bytes);
  }
}
