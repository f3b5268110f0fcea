/**
 * Purge: removes every stored variant of request paths, so the next request for each is a miss
 * that stores it again. Shared by the `POST /purge` endpoint and `deno task purge`.
 *
 * Variants are found by listing the path's key (the MD5 of the raw path, under the folder) as a
 * prefix, not by guessing suffixes, so whatever variant suffixes were written are all found. The
 * key is a hash: nothing in a path can name an object outside the folder.
 */
import { objectKey, pathOf } from "./key.ts";
import type { Store } from "./store/store.ts";
import { errorMessage } from "./error_message.ts";

/** Where purges act. */
export interface PurgeTarget {
  store: Store;
  /** Key prefix, already normalised. */
  folder: string;
  /** Forgets the variants of a key the proxy remembers as recently stored (the uploader's). */
  forget?: (baseKey: string) => void;
}

/** What happened to one path: the keys removed, and the error that stopped it, if any. */
export interface PurgeOutcome {
  path: string;
  keys: string[];
  error?: string;
}

/** Removes every stored variant of one raw request path (its query is ignored, like the key's). */
export async function purgePath(
  target: PurgeTarget,
  path: string,
  signal?: AbortSignal,
): Promise<PurgeOutcome> {
  return await purgeKey(target, path, objectKey(pathOf(path), target.folder), signal);
}

/** Removes every stored variant of `baseKey`, the key of `path`. */
async function purgeKey(
  target: PurgeTarget,
  path: string,
  baseKey: string,
  signal?: AbortSignal,
): Promise<PurgeOutcome> {
  const keys: string[] = [];
  try {
    // Only the base key and its "-suffix" variants: each store's variants() checks that.
    for (const key of await target.store.variants(baseKey, signal)) {
      await target.store.delete(key, signal);
      keys.push(key);
    }
    return { path, keys };
  } catch (err) {
    return { path, keys, error: errorMessage(err) };
  } finally {
    // Forgotten even when a delete failed: a remembered key must not stand in for a
    // removed object.
    target.forget?.(baseKey);
  }
}

/**
 * Purges `paths` with at most `concurrency` at a time; outcomes in the order of `paths`. A path
 * with the key of an earlier one (the same path with another query) is not purged twice: its
 * outcome lists no keys.
 */
export async function purgePaths(
  target: PurgeTarget,
  paths: readonly string[],
  options: {
    concurrency?: number;
    signal?: AbortSignal;
    onResult?: (outcome: PurgeOutcome) => void;
  } = {},
): Promise<PurgeOutcome[]> {
  const outcomes: PurgeOutcome[] = new Array(paths.length);
  const seen = new Set<string>();
  // The key of each path, or null for a path whose key an earlier one has.
  const keys = paths.map((path) => {
    const key = objectKey(pathOf(path), target.folder);
    if (seen.has(key)) return null;
    seen.add(key);
    return key;
  });
  let next = 0;
  const worker = async () => {
    while (next < paths.length && !options.signal?.aborted) {
      const i = next++;
      const key = keys[i] ?? null;
      outcomes[i] = key !== null
        ? await purgeKey(target, paths[i]!, key, options.signal)
        : { path: paths[i]!, keys: [] };
      options.onResult?.(outcomes[i]);
    }
  };
  const n = Math.max(1, Math.min(options.concurrency ?? 4, paths.length));
  await Promise.all(Array.from({ length: n }, worker));
  return outcomes.filter((o) => o !== undefined);
}
