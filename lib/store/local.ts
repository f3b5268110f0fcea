/**
 * A store in a local directory: the embedded default when no bucket is configured.
 *
 * Each object is a file named by its key, next to a `<key>.meta.json` sidecar holding its
 * content type and cache control (the names: local_names.ts). Writes are atomic: a temporary file in the same directory is
 * renamed (or, for a conditional write, hard-linked, which fails if the name exists) into place,
 * so a reader never sees half an image.
 */
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import type {
  ObjectMeta,
  OpenedObject,
  PutOptions,
  PutResult,
  ReadObject,
  Store,
  StoredObject,
} from "./store.ts";
import { isVariantKey, PERMANENT_ERROR_NAMES, StoreError } from "./store.ts";
import { errorMessage } from "../error_message.ts";
import { isAuxiliaryName, META_SUFFIX, tempPath } from "./local_names.ts";
import { sleep } from "../timers.ts";

/**
 * Errors a retry within seconds will not fix: a full disk or quota (ENOSPC, EDQUOT), a file
 * size limit (EFBIG), a read-only file system (EROFS), by code or by Linux errno.
 */
const PERMANENT_CODES = new Set(["ENOSPC", "EDQUOT", "EFBIG", "EROFS"]);
const PERMANENT_ERRNO = /\(os error (?:27|28|30|122)\)/;

function wrap(err: unknown, what: string): StoreError {
  const e = err as Error & { code?: string };
  const retryable = !(PERMANENT_ERROR_NAMES.has(e?.name ?? "") ||
    PERMANENT_CODES.has(e?.code ?? "") || PERMANENT_ERRNO.test(e?.message ?? ""));
  return new StoreError(`${what}: ${errorMessage(err)}`, retryable, e?.name ?? "Error", {
    cause: err,
  });
}

/** What is known of a complete object, so a hit needs no metadata read and no stat. */
interface Known {
  meta: ObjectMeta;
  size: number;
  /** When it was last read from the directory or written (performance.now()). */
  at: number;
}

/** Limits of what a {@linkcode LocalStore} remembers of its objects. */
export interface KnownLimits {
  /**
   * How long what is known of an object is trusted before a hit reads it again: another process
   * sharing the directory may delete a key and write it anew (default 1000 ms).
   */
  trustMs?: number;
  /** How many objects are remembered, the oldest forgotten first (default 65536). */
  maxKnown?: number;
}

/** Creates a store that writes files under `dir`. */
export class LocalStore implements Store {
  readonly description: string;
  readonly storedMessage = "Stored in cache directory";
  readonly logFields;
  /**
   * Objects this process wrote or read recently: filled on write and on a hit's first read,
   * dropped when a file is gone. A complete object is never changed in place (the proxy
   * writes a key only while it is absent or partial), so this is out of date only once another process has
   * deleted the key (the next open finds no file) or deleted it and written it anew (seen once
   * the trust window has passed).
   */
  readonly #known = new Map<string, Known>();

  readonly #trustMs: number;
  readonly #maxKnown: number;

  constructor(readonly dir: string, { trustMs = 1000, maxKnown = 65536 }: KnownLimits = {}) {
    this.description = `directory ${dir}`;
    this.logFields = { dir };
    this.#trustMs = trustMs;
    this.#maxKnown = maxKnown;
  }

  /** Forgets what is known of `key` (for code that removes objects). */
  forget(key: string): void {
    this.#known.delete(key);
  }

  #remember(key: string, meta: ObjectMeta, size: number): void {
    this.#known.delete(key); // re-inserted last: the oldest entries go first
    if (this.#known.size >= this.#maxKnown) this.#known.delete(this.#known.keys().next().value!);
    this.#known.set(key, { meta, size, at: performance.now() });
  }

  #trusted(key: string): Known | undefined {
    const known = this.#known.get(key);
    return known !== undefined && performance.now() - known.at < this.#trustMs ? known : undefined;
  }

  private pathOf(key: string): string {
    return join(this.dir, key);
  }

  /**
   * The file of a key that is about to be removed, refusing any key that could leave the
   * directory (absolute, `.` or `..` segments, empty segments, backslashes, NUL): keys are
   * hashes under a checked folder, so such a key is a bug, and removal must never follow it.
   */
  private removablePath(key: string): string {
    if (
      key === "" || key.startsWith("/") || /[\\\0]/.test(key) ||
      key.split("/").some((s) => s === "" || s === "." || s === "..")
    ) {
      throw new StoreError(
        `refusing to remove ${JSON.stringify(key)}: not a key inside ${this.dir}`,
        false,
        "InvalidKey",
      );
    }
    return join(this.dir, key);
  }

  async variants(baseKey: string): Promise<string[]> {
    const base = this.removablePath(baseKey);
    const name = basename(base);
    const prefix = baseKey.slice(0, baseKey.length - name.length);
    const keys: string[] = [];
    try {
      for await (const entry of Deno.readDir(dirname(base))) {
        // Regular files only: a directory or a symbolic link is never an object (and a link
        // is never followed out of the directory).
        if (!entry.isFile || !isVariantKey(entry.name, name)) continue;
        if (isAuxiliaryName(entry.name)) continue;
        keys.push(prefix + entry.name);
      }
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return [];
      throw wrap(err, `listing ${dirname(base)}`);
    }
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    const final = this.removablePath(key);
    this.#known.delete(key);
    try {
      // The object first: a sidecar left alone (a crash in between) is ignored by readers and
      // replaced by the next write of the key.
      await removeFile(final);
      await removeFile(final + META_SUFFIX);
    } catch (err) {
      throw wrap(err, `removing ${final}`);
    }
  }

  /** Bytes the object and its sidecar take on disk (0 for a file that is not there). */
  async sizeOf(key: string): Promise<number> {
    const final = this.removablePath(key);
    let bytes = 0;
    for (const path of [final, final + META_SUFFIX]) {
      try {
        bytes += (await Deno.lstat(path)).size;
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw wrap(err, `measuring ${path}`);
      }
    }
    return bytes;
  }

  async put(key: string, body: Uint8Array, options: PutOptions): Promise<PutResult> {
    const final = this.pathOf(key);
    const metaTemp = tempPath(final + META_SUFFIX);
    const temp = tempPath(final);
    try {
      await Deno.mkdir(dirname(final), { recursive: true });
      // An object whose sidecar never arrived (a crash between the two renames) counts as
      // absent, and this write replaces it.
      const state = options.ifAbsent ? await probe(final) : ABSENT;
      if (state.kind === "complete") return "exists";
      const replace = state.kind === "partial";
      const meta: ObjectMeta = {
        contentType: options.contentType,
        cacheControl: options.cacheControl,
        length: body.byteLength,
        // Validators for conditional hits: derived from the bytes, and the time of writing.
        etag: `"${createHash("md5").update(body).digest("hex")}"`,
        lastModified: new Date().toUTCString(),
        headers: options.headers,
      };
      // Both temporary files are removed whatever happens from here on, a failed write (full
      // disk) included: nothing is left behind in the directory.
      try {
        await Deno.writeFile(metaTemp, new TextEncoder().encode(JSON.stringify(meta)));
        await Deno.writeFile(temp, body, { signal: options.signal });
        // A write abandoned (timed out, or shutdown's deadline) puts nothing in place.
        options.signal?.throwIfAborted();
        if (options.ifAbsent && !replace) {
          // link() fails if the name exists: exactly one concurrent writer wins, and only the
          // winner's metadata is put in place.
          try {
            await Deno.link(temp, final);
          } catch (err) {
            if (err instanceof Deno.errors.AlreadyExists) return "exists";
            throw err;
          }
          await Deno.rename(metaTemp, final + META_SUFFIX);
        } else {
          await Deno.rename(metaTemp, final + META_SUFFIX);
          await Deno.rename(temp, final);
        }
        this.#remember(key, meta, body.byteLength);
        return "stored";
      } finally {
        await Deno.remove(temp).catch(() => {});
        await Deno.remove(metaTemp).catch(() => {});
      }
    } catch (err) {
      throw wrap(err, `writing ${final}`);
    }
  }

  /** Whether the key is stored: always asked of the directory (another process may remove). */
  async has(key: string): Promise<boolean> {
    try {
      const state = await probe(this.pathOf(key), this.#trusted(key));
      if (state.kind !== "complete") {
        this.#known.delete(key);
        return false;
      }
      this.#remember(key, state.meta, state.size);
      return true;
    } catch (err) {
      throw wrap(err, `checking ${this.pathOf(key)}`);
    }
  }

  /**
   * Opens an object for a hit: one `open` when the object is known (written or read within
   * the last second), else also its size and sidecar, which are then remembered. A known object
   * of at most `wholeUpTo` bytes is read whole in one call instead (open, read and close at once).
   */
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
    const final = this.pathOf(key);
    const known = this.#trusted(key);
    if (known !== undefined && known.size <= wholeUpTo) {
      try {
        const body = await Deno.readFile(final);
        // Replaced since (another process): its size decides, as a stat would.
        return { ...known.meta, body, contentLength: body.byteLength };
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) {
          this.#known.delete(key);
          return null;
        }
        throw wrap(err, `reading ${final}`);
      }
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(final);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        this.#known.delete(key);
        return null;
      }
      throw wrap(err, `reading ${final}`);
    }
    if (known !== undefined) {
      return { ...known.meta, body: file.readable, contentLength: known.size };
    }
    try {
      const { size } = await file.stat();
      const meta = await readMeta(final + META_SUFFIX);
      if (meta === null) {
        file.close();
        this.#known.delete(key);
        return null;
      }
      this.#remember(key, meta, size);
      return { ...meta, body: file.readable, contentLength: size };
    } catch (err) {
      file.close();
      throw wrap(err, `reading ${final}`);
    }
  }

  async get(key: string): Promise<StoredObject | null> {
    const final = this.pathOf(key);
    try {
      const body = await Deno.readFile(final);
      const meta = this.#trusted(key)?.meta ?? await readMeta(final + META_SUFFIX);
      if (meta === null) return null;
      return { body, contentType: meta.contentType, cacheControl: meta.cacheControl };
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw wrap(err, `reading ${final}`);
    }
  }
}

/**
 * Reads a sidecar. A conditional write puts it in place just after the bytes, so a reader that
 * comes in between retries briefly; null when it never comes (the writer crashed in between):
 * such an object is treated as absent rather than served with a made-up type.
 */
async function readMeta(path: string): Promise<ObjectMeta | null> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return JSON.parse(await Deno.readTextFile(path));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    // Ref'd: a request awaits the read.
    await sleep(10, { ref: true });
  }
  return null;
}

/** Removes a regular file; an absent one (or anything that is not a file) is left alone. */
async function removeFile(path: string): Promise<void> {
  try {
    if (!(await Deno.lstat(path)).isFile) return;
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** Where an object stands in the directory. */
type State =
  | { kind: "absent" }
  | { kind: "partial" }
  | { kind: "complete"; size: number; meta: ObjectMeta };

const ABSENT: State = { kind: "absent" };

/**
 * Whether the object and its sidecar are both in place, or the sidecar never came. The sidecar
 * is not read again when `known` holds it.
 */
async function probe(final: string, known?: Known): Promise<State> {
  let size: number;
  try {
    size = (await Deno.lstat(final)).size;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return ABSENT;
    throw err;
  }
  const meta = known?.meta ?? await readMeta(final + META_SUFFIX);
  return meta === null ? { kind: "partial" } : { kind: "complete", size, meta };
}
