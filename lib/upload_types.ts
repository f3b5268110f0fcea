/** The vocabulary shared by the uploader's parts: what a body is, and how its journey ends. */

/** Why a body was not queued for storage. */
export type SkipReason =
  | "recently-stored" // the key is in the memory of recent writes
  | "in-progress" // another request is already collecting or writing this key
  | "no-room" // the bytes-in-flight budget is used up
  | "too-large" // above the largest object size
  | "incomplete" // the body ended early or errored
  | "closed" // the uploader is draining
  | "store-down"; // the store kept failing: uploads paused (the breaker is open)

/** Counters kept by the uploader (also exported as metrics). */
export interface UploaderStats {
  stored: number;
  alreadyPresent: number;
  failed: number;
  retries: number;
  skipped: Record<SkipReason, number>;
  /** Bodies waiting for a writer plus writes under way. */
  queueDepth: number;
  /** Bytes reserved by bodies being collected, queued or written. */
  bytesInFlight: number;
}

/** How one body's journey ended. */
export type UploadOutcome =
  | { kind: "stored" }
  | { kind: "exists" }
  | { kind: "failed"; reason: string }
  | { kind: "skipped"; reason: SkipReason };

/** Metadata of one body to store. */
export interface UploadMeta {
  /** The request path, for logs. */
  path: string;
  contentType: string;
  cacheControl: string | null;
  /** imgproxy's headers that describe the image, stored beside it. */
  headers?: Record<string, string>;
}

/** One complete body waiting for (or under) its write. */
export interface UploadJob extends UploadMeta {
  key: string;
  body: Uint8Array;
  /** Bytes reserved against the bytes-in-flight budget, given back once the job settles. */
  reserved: number;
}
