/**
 * The local store's start-up walk: one pass over the directory that does what start-up needs,
 * by the names {@linkcode parseStoreName} defines.
 *
 * - Cleanup (`cleanBefore`): a process killed mid-write leaves temporary files, an object whose
 *   sidecar never arrived, or a sidecar whose object never did. Readers already ignore all of
 *   these; the walk removes them so they do not pile up run after run, but only those last
 *   modified before `cleanBefore` (the process's start less the longest a write may take): a
 *   write still under way in another process sharing the directory is never touched.
 * - Accounting (`account`, a bounded store): every object with the bytes it takes (its file
 *   plus its sidecar; a sidecar alone counts as an object that was never used, so eviction takes
 *   it first) and its last use, the later of its access and modification times. What the
 *   cleanup removes is not counted.
 *
 * It goes one directory entry and one `lstat` at a time, each an await, so a large directory
 * never stalls the start, and stops as soon as its signal is aborted. It recurses into
 * subdirectories (`S3_FOLDER`), never follows symbolic links, and touches only regular files
 * named as the store names them.
 */
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { META_SUFFIX, parseStoreName } from "./local_names.ts";

/** What a cleanup removed. */
export interface CleanupStats {
  tempFiles: number;
  /** Objects without a sidecar, and sidecars without an object. */
  orphans: number;
  bytes: number;
}

/** One object found on disk. */
export interface ScannedObject {
  key: string;
  /** The object's file plus its sidecar. */
  bytes: number;
  /** When it was last used, as far as the disk tells (ms since the epoch). */
  usedAt: number;
}

/** Reads a directory's entries (a seam for tests). */
export type ReadDir = (path: string) => AsyncIterable<Deno.DirEntry>;

/** What the walk does. */
export interface WalkOptions {
  /** Remove leftovers last modified before this (ms since the epoch); none when absent. */
  cleanBefore?: number;
  /** Return every object with its size and last use. */
  account?: boolean;
  signal?: AbortSignal;
  readDir?: ReadDir;
}

/** What the walk did and found. */
export interface WalkResult {
  removed: CleanupStats;
  /** The objects found (empty unless accounting). */
  found: ScannedObject[];
  /** The walk was stopped by its signal before the end. */
  aborted: boolean;
  /**
   * The first failure to read a directory or a file, other than its absence (the walk goes on
   * past it: what it found is then incomplete).
   */
  error?: unknown;
}

/** Walks `dir` once: removes leftovers and accounts objects, as `options` ask. */
export async function walkLocalStore(dir: string, options: WalkOptions): Promise<WalkResult> {
  const { cleanBefore, account = false, signal, readDir = Deno.readDir } = options;
  const result: WalkResult = {
    removed: { tempFiles: 0, orphans: 0, bytes: 0 },
    found: [],
    aborted: false,
  };
  const found = new Map<string, ScannedObject>();
  /** The file's information: null when it is not there, undefined when unreadable (noted). */
  const stat = async (path: string): Promise<Deno.FileInfo | null | undefined> => {
    try {
      return await Deno.lstat(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      result.error ??= err;
      return undefined;
    }
  };
  const stale = (info: Deno.FileInfo) =>
    cleanBefore !== undefined && info.isFile && (info.mtime?.getTime() ?? Infinity) < cleanBefore;
  /** Removes a leftover; false when it could not be (gone already, or not ours after all). */
  const remove = async (path: string, info: Deno.FileInfo, kind: "tempFiles" | "orphans") => {
    try {
      await Deno.remove(path);
    } catch {
      return false;
    }
    result.removed[kind]++;
    result.removed.bytes += info.size;
    return true;
  };
  const visit = async (at: string, rel: string, name: string): Promise<void> => {
    const parsed = parseStoreName(name);
    if (parsed === null) return;
    const path = join(at, name);
    const key = rel === "" ? parsed.key : `${rel}/${parsed.key}`;
    if (parsed.kind === "temp") {
      if (cleanBefore === undefined) return;
      const info = await stat(path);
      if (info && stale(info)) await remove(path, info, "tempFiles");
      return;
    }
    if (parsed.kind === "object") {
      const info = await stat(path);
      if (!info?.isFile) return;
      const meta = await stat(path + META_SUFFIX);
      if (meta === null && stale(info) && await remove(path, info, "orphans")) return;
      if (!account) return;
      const usedAt = Math.max(info.atime?.getTime() ?? 0, info.mtime?.getTime() ?? 0);
      const bytes = info.size + (meta?.isFile ? meta.size : 0);
      found.set(key, { key, bytes, usedAt });
      return;
    }
    // A sidecar: its object's entry accounts it, when there is one.
    const object = await stat(join(at, parsed.key));
    if (object?.isFile) return;
    const info = await stat(path);
    if (!info?.isFile) return;
    if (object === null && stale(info) && await remove(path, info, "orphans")) return;
    if (account && !found.has(key)) found.set(key, { key, bytes: info.size, usedAt: 0 });
  };
  const walk = async (at: string, rel: string): Promise<void> => {
    try {
      for await (const entry of readDir(at)) {
        if (signal?.aborted) return;
        if (entry.isDirectory) {
          await walk(join(at, entry.name), rel === "" ? entry.name : `${rel}/${entry.name}`);
        } else if (entry.isFile) {
          await visit(at, rel, entry.name);
        }
      }
    } catch (err) {
      // Not there (yet, or any more): nothing to do there.
      if (!(err instanceof Deno.errors.NotFound)) result.error ??= err;
    }
  };
  await walk(dir, "");
  result.aborted = signal?.aborted ?? false;
  result.found = [...found.values()];
  return result;
}

/** Logs what a cleanup removed (nothing when it removed nothing). */
export function logLeftovers(logger: Logger, dir: string, removed: CleanupStats): void {
  if (removed.tempFiles + removed.orphans === 0) return;
  logger.log("INFO", "Removed a crashed run's leftovers from the cache directory", {
    dir,
    tempFiles: removed.tempFiles,
    orphans: removed.orphans,
    bytes: removed.bytes,
  });
}
