/**
 * The size accounting of a bounded local store (`CACHE_DIR_MAX_BYTES`): how many bytes each
 * object takes (its file plus its sidecar), in least-recently-used order, and the start-up scan
 * that accounts what the directory already holds.
 *
 * The scan walks the directory asynchronously (one directory entry and one `stat` at a time,
 * each an await), so a large directory never stalls the start: the proxy serves while it runs,
 * and what is written or read meanwhile counts as more recent than anything found on disk.
 */
import { join } from "node:path";
import { META_SUFFIX } from "./local.ts";

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

/** One object found on disk. */
export interface ScannedObject {
  key: string;
  /** The object's file plus its sidecar. */
  bytes: number;
  /** When it was last used, as far as the disk tells (ms since the epoch). */
  usedAt: number;
}

/**
 * The file names of objects: an MD5 in hex, maybe with a variant suffix. Anything else in the
 * directory (a file an operator left there) is neither counted nor ever removed.
 */
const OBJECT_NAME = /^[0-9a-f]{32}(?:-[A-Za-z0-9_-]+)?$/;

/** Reads a directory's entries (a seam for tests). */
export type ReadDir = (path: string) => AsyncIterable<Deno.DirEntry>;

/**
 * Walks `dir` and returns every object in it with its size (files named like object keys
 * only). A file and its sidecar count as one object (a sidecar alone, left by a crash, is one too, so it is accounted and removed
 * first); temporary files of writes under way are not objects. Symbolic links are never
 * followed. The last use is the later of the object's access and modification times (access
 * times are as fresh as the file system's `atime` policy keeps them).
 */
export async function scanDirectory(
  dir: string,
  signal?: AbortSignal,
  readDir: ReadDir = Deno.readDir,
): Promise<ScannedObject[]> {
  const found = new Map<string, ScannedObject>();
  const walk = async (rel: string): Promise<void> => {
    let entries: AsyncIterable<Deno.DirEntry>;
    try {
      entries = readDir(rel === "" ? dir : join(dir, rel));
      for await (const entry of entries) {
        signal?.throwIfAborted();
        const name = rel === "" ? entry.name : `${rel}/${entry.name}`;
        if (entry.isDirectory) {
          await walk(name);
          continue;
        }
        if (!entry.isFile || entry.name.includes(".tmp-")) continue;
        let info: Deno.FileInfo;
        try {
          info = await Deno.lstat(join(dir, name));
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) continue; // removed meanwhile
          throw err;
        }
        const sidecar = name.endsWith(META_SUFFIX);
        const key = sidecar ? name.slice(0, -META_SUFFIX.length) : name;
        const base = sidecar ? entry.name.slice(0, -META_SUFFIX.length) : entry.name;
        if (!OBJECT_NAME.test(base)) continue;
        const o = found.get(key) ?? { key, bytes: 0, usedAt: 0 };
        o.bytes += info.size;
        if (!sidecar) {
          o.usedAt = Math.max(info.atime?.getTime() ?? 0, info.mtime?.getTime() ?? 0);
        }
        found.set(key, o);
      }
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return; // the directory is not there (yet)
      throw err;
    }
  };
  await walk("");
  return [...found.values()];
}
