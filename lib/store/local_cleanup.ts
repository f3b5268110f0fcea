/**
 * Start-up cleanup of a local store directory after a crash: a process killed mid-write leaves
 * temporary files (`<key>.tmp-<uuid>`, `<key>.meta.json.tmp-<uuid>`), an object whose sidecar
 * never arrived, or a sidecar whose object never did. Readers already ignore all of these; this
 * removes them so they do not pile up run after run.
 *
 * - It runs in the background, one directory entry at a time: a large directory never delays
 *   the start, and shutdown stops it (its signal) and waits for it.
 * - It removes only regular files named exactly as the store names them (a key is 32 hex
 *   digits, perhaps with variant suffixes), and only those last modified before `before`
 *   (the process's start less the longest a write may take): a write still under way in
 *   another process sharing the directory is never touched. Everything else is left alone,
 *   and symbolic links are not followed.
 */
import { join } from "node:path";
import { META_SUFFIX } from "./local.ts";

const KEY = "[0-9a-f]{32}(?:-[a-z0-9]+)*";
const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const TEMP = new RegExp(`^${KEY}(?:\\.meta\\.json)?\\.tmp-${UUID}$`);
const OBJECT = new RegExp(`^${KEY}$`);
const SIDECAR = new RegExp(`^(${KEY})\\.meta\\.json$`);

/** What a cleanup removed. */
export interface CleanupStats {
  tempFiles: number;
  /** Objects without a sidecar, and sidecars without an object. */
  orphans: number;
  bytes: number;
}

/**
 * Removes a crashed run's leftovers under `dir` (recursively: `S3_FOLDER` makes
 * subdirectories), those last modified before `before` (ms since the epoch).
 */
export async function cleanLocalStore(
  dir: string,
  before: number,
  signal?: AbortSignal,
): Promise<CleanupStats> {
  const stats: CleanupStats = { tempFiles: 0, orphans: 0, bytes: 0 };
  const stale = async (path: string): Promise<number | null> => {
    try {
      const info = await Deno.lstat(path);
      const mtime = info.mtime?.getTime() ?? Infinity;
      return info.isFile && mtime < before ? info.size : null;
    } catch {
      return null;
    }
  };
  const remove = async (path: string, size: number, kind: "tempFiles" | "orphans") => {
    try {
      await Deno.remove(path);
      stats[kind]++;
      stats.bytes += size;
    } catch {
      // Gone already, or not ours to remove after all: left alone.
    }
  };
  const exists = async (path: string) => {
    try {
      await Deno.lstat(path);
      return true;
    } catch {
      return false;
    }
  };
  const walk = async (at: string): Promise<void> => {
    let entries: AsyncIterable<Deno.DirEntry>;
    try {
      entries = Deno.readDir(at);
    } catch {
      return;
    }
    try {
      for await (const entry of entries) {
        if (signal?.aborted) return;
        const path = join(at, entry.name);
        if (entry.isDirectory) {
          await walk(path);
          continue;
        }
        if (!entry.isFile) continue;
        if (TEMP.test(entry.name)) {
          const size = await stale(path);
          if (size !== null) await remove(path, size, "tempFiles");
        } else if (OBJECT.test(entry.name)) {
          if (await exists(path + META_SUFFIX)) continue;
          const size = await stale(path);
          if (size !== null) await remove(path, size, "orphans");
        } else {
          const m = SIDECAR.exec(entry.name);
          if (m === null || await exists(join(at, m[1]!))) continue;
          const size = await stale(path);
          if (size !== null) await remove(path, size, "orphans");
        }
      }
    } catch {
      // The directory went away or cannot be read: nothing more to clean there.
    }
  };
  await walk(dir);
  return stats;
}
