/**
 * The storage interface: one bucket or directory of processed images, addressed by key.
 */
import type { Fields } from "../log.ts";

/** What is stored alongside the bytes. */
export interface ObjectMeta {
  contentType: string;
  cacheControl: string | null;
  /**
   * The body's length when it was written, recorded beside it so a hit can be checked before it
   * is answered; absent for objects written before lengths were recorded (and on writes, where
   * the body gives it).
   */
  length?: number;
  /**
   * A strong validator of the bytes (an `ETag` value, quotes included): the S3 object's ETag,
   * or the MD5 of the bytes the local store recorded at write. Absent when not known.
   */
  etag?: string;
  /** When the object was written, as an HTTP date (`Last-Modified`); absent when not known. */
  lastModified?: string;
  /**
   * The headers imgproxy sent with the original answer that describe the image
   * (`Content-Disposition`, ...: lib/image_headers.ts), by lower-case name; absent when none.
   */
  headers?: Record<string, string>;
}

/** Options of one write. */
export interface PutOptions extends ObjectMeta {
  /** Write only if no object has the key (a conditional write). */
  ifAbsent: boolean;
  signal?: AbortSignal;
}

/** "stored": the bytes were written; "exists": an object already had the key. */
export type PutResult = "stored" | "exists";

/** A stored object read back. */
export interface StoredObject extends ObjectMeta {
  body: Uint8Array;
}

/** A stored object opened for streaming. */
export interface OpenedObject extends ObjectMeta {
  body: ReadableStream<Uint8Array>;
  /** Byte length, when the store knows it. */
  contentLength: number | null;
}

/** An object opened for a hit and read whole at once (see {@linkcode OpenObject}). */
export interface ReadObject extends ObjectMeta {
  body: Uint8Array;
  /** The length the store gave for the object: a body cut short is shorter. */
  contentLength: number;
}

/**
 * Opens an object for streaming (read-mode hits), so a hit never holds a whole image in memory;
 * null when the key is absent. With `wholeUpTo`, an object the store knows, or is told, to be at
 * most that long may come read whole instead ({@linkcode ReadObject}), under the call's signal:
 * the caller would read it whole anyway, and one read costs less than a stream.
 */
export interface OpenObject {
  (key: string, signal?: AbortSignal): Promise<OpenedObject | null>;
  (
    key: string,
    signal: AbortSignal | undefined,
    wholeUpTo: number,
  ): Promise<OpenedObject | ReadObject | null>;
}

/** A place to keep processed images. */
export interface Store {
  /** A short description for start-up logs, such as `s3://bucket (https://host)`. */
  readonly description: string;
  /** Log message for a successful write, e.g. "Uploaded to S3". */
  readonly storedMessage: string;
  /** Fields added to every log line about this store, e.g. `{ bucket }`. */
  readonly logFields: Fields;
  /**
   * Writes `body` under `key`. The bytes are lent for the call only: once the returned promise
   * settles the caller frees them (the uploader detaches its buffer), so a store that keeps
   * them keeps a copy.
   */
  put(key: string, body: Uint8Array, options: PutOptions): Promise<PutResult>;
  has(key: string, signal?: AbortSignal): Promise<boolean>;
  get(key: string, signal?: AbortSignal): Promise<StoredObject | null>;
  /** {@linkcode OpenObject}; stores without it are read with `get`. */
  open?: OpenObject;
  /**
   * Keys of every stored variant of `baseKey` (a key without variant suffix): the key itself
   * and each `<baseKey>-<suffix>`, found by listing whatever suffixes exist.
   */
  variants(baseKey: string, signal?: AbortSignal): Promise<string[]>;
  /** Removes one object and whatever the store keeps beside it; an absent key is no error. */
  delete(key: string, signal?: AbortSignal): Promise<void>;
  /** Stops the store's own background work (eviction), waiting for the step under way. */
  close?(): Promise<void>;
}

/** True when `key` is `baseKey` or one of its variants (`<baseKey>-<suffix>`). */
export function isVariantKey(key: string, baseKey: string): boolean {
  return key === baseKey || (key.startsWith(baseKey + "-") && !key.includes("/", baseKey.length));
}

/**
 * Error names no retry can fix, whatever the store: a cancelled call, and the permission errors
 * Deno raises (the flags will not change between attempts).
 */
export const PERMANENT_ERROR_NAMES: ReadonlySet<string> = new Set([
  "AbortError",
  "NotCapable",
  "PermissionDenied",
]);

/** A store failure, classified so the uploader knows whether trying again can help. */
export class StoreError extends Error {
  constructor(
    message: string,
    /** True for failures that may pass on a later try (network, 5xx, 409, throttling). */
    readonly retryable: boolean,
    /** A short machine-readable reason, such as `AccessDenied` or `network`. */
    readonly code: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "StoreError";
  }
}
