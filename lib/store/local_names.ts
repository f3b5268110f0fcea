/**
 * The names of a local store's files, in one place: the store makes them here and the start-up
 * walk reads them back here, so what one writes the other recognises.
 *
 * - `<key>`: an object's bytes. A key is an MD5 in lowercase hex, perhaps with variant suffixes
 *   (`-webp`, `-avif-webp`); folders (`S3_FOLDER`) are subdirectories, not part of the name.
 * - `<key>.meta.json`: its sidecar (content type, cache control, validators).
 * - `<key>.tmp-<uuid>`, `<key>.meta.json.tmp-<uuid>`: a write under way (or a crashed one's).
 *
 * Anything else in the directory (a file an operator left there) is not the store's: it is
 * neither counted nor ever removed.
 */

/** The suffix of an object's sidecar file (`<key>.meta.json`). */
export const META_SUFFIX = ".meta.json";

const KEY = "[0-9a-f]{32}(?:-[a-z0-9]+)*";
const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const TEMP_MARK = ".tmp-";
const NAME = new RegExp(`^(${KEY})(\\.meta\\.json)?(\\.tmp-${UUID})?$`);

/** What a file name in the store's directory is. */
export type StoreFileName =
  | { kind: "object"; key: string }
  | { kind: "sidecar"; key: string }
  | { kind: "temp"; key: string };

/** Reads a file name (no directory part); null when the store never makes such a name. */
export function parseStoreName(name: string): StoreFileName | null {
  const m = NAME.exec(name);
  if (m === null) return null;
  const key = m[1]!;
  if (m[3] !== undefined) return { kind: "temp", key };
  return m[2] !== undefined ? { kind: "sidecar", key } : { kind: "object", key };
}

/** A fresh temporary name for a write of `path` (an object's or a sidecar's file). */
export function tempPath(path: string): string {
  return `${path}${TEMP_MARK}${crypto.randomUUID()}`;
}

/**
 * Whether a name is a sidecar's or a temporary file's, whatever the key (listing variants: keys
 * written through the store's API need not be hashes).
 */
export function isAuxiliaryName(name: string): boolean {
  return name.endsWith(META_SUFFIX) || name.includes(TEMP_MARK);
}
