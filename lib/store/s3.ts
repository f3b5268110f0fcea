/**
 * A store in an S3-compatible bucket (Tigris, AWS S3, R2, MinIO, versitygw...). Credentials and
 * the clock-skew offset are the AWS SDK client's; requests are signed by lib/store/s3_sign.ts
 * and sent with `fetch` ({@linkcode S3Requester}), so a hit's body streams natively to the
 * client.
 */
import { decodeImageHeaders, encodeImageHeaders, IMAGE_HEADERS_META } from "../image_headers.ts";
import { ListObjectsV2Command, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import type { S3StoreConfig } from "../config.ts";
import type {
  ObjectMeta,
  OpenedObject,
  PutOptions,
  PutResult,
  ReadObject,
  Store,
  StoredObject,
} from "./store.ts";
import { isVariantKey } from "./store.ts";
import { classifyS3Error, S3Requester } from "./s3_request.ts";
import type { Connect } from "./http1.ts";

export { classifyS3Error } from "./s3_request.ts";

/** Builds the SDK client options for a bucket configuration. */
export function s3ClientConfig(config: S3StoreConfig): S3ClientConfig {
  return {
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: config.forcePathStyle,
    // The SDK's default CRC32 checksums use aws-chunked uploads that several S3-compatible
    // stores reject; send them only when an operation requires them.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    // The uploader retries with its own budget and backoff; SDK retries would multiply it.
    maxAttempts: 1,
  };
}

/** An entity tag usable as a strong validator (`"..."`), else undefined. */
function strongEtag(value: string | null): string | undefined {
  return value !== null && /^"[^"]*"$/.test(value) ? value : undefined;
}

/** The length recorded at write (`x-amz-meta-length`); undefined when absent or not a count. */
function recordedLength(value: string | null): number | undefined {
  return value !== null && /^\d{1,15}$/.test(value) ? Number(value) : undefined;
}

/** Stores objects in an S3-compatible bucket. */
export class S3Store implements Store {
  readonly description: string;
  readonly storedMessage = "Uploaded to S3";
  readonly logFields;
  readonly client: S3Client;
  readonly #s3: S3Requester;

  /**
   * `client` supplies credentials and the clock offset, and lists keys; `fetchFn` replaces
   * `fetch`, `connect` how PutObject's own connections are opened (tests route requests to a
   * local socket); `onPutFallback` hears, once, why PutObject went over to `fetch` (its own
   * connection could not be opened where `fetch`'s could).
   */
  constructor(
    readonly config: S3StoreConfig,
    client?: S3Client,
    fetchFn?: typeof fetch,
    connect?: Connect,
    onPutFallback?: (reason: string) => void,
  ) {
    this.client = client ?? new S3Client(s3ClientConfig(config));
    this.description = `s3://${config.bucket} (${config.endpoint}, region ${config.region}${
      config.forcePathStyle ? ", path-style" : ""
    })`;
    this.logFields = { bucket: config.bucket };
    this.#s3 = new S3Requester(config, this.client, fetchFn, connect, onPutFallback);
  }

  /** Closes the connections the store keeps. */
  close(): Promise<void> {
    this.#s3.close();
    return Promise.resolve();
  }

  /**
   * Stores one object, as `PutObjectCommand` would. Through the SDK's middleware stack and
   * `node:http` that cost about 0.43 ms of CPU per object, `fetch` signed by the SDK's signer
   * 0.25 ms, signed here 0.17 ms, an unsigned bare `fetch` 0.10 ms (30 KB, bench/s3-put.ts);
   * signed here and sent on the store's own kept connection (lib/store/s3_put.ts) 0.14 ms.
   */
  async put(key: string, body: Uint8Array, options: PutOptions): Promise<PutResult> {
    const headers: Record<string, string> = {
      "content-type": options.contentType,
      // Recorded beside the object, so a hit can be checked against it (lib/hit.ts).
      "x-amz-meta-length": String(body.byteLength),
    };
    if (options.cacheControl !== null) headers["cache-control"] = options.cacheControl;
    if (options.headers !== undefined) {
      headers[IMAGE_HEADERS_META] = encodeImageHeaders(options.headers);
    }
    if (options.ifAbsent) headers["if-none-match"] = "*";
    const res = await this.#s3.send("PutObject", key, headers, body, options.signal);
    if (res.ok) {
      await res.body?.cancel();
      return "stored";
    }
    // 412: the conditional write found the key taken, which is what we wanted to know.
    if (options.ifAbsent && res.status === 412) {
      await res.body?.cancel();
      return "exists";
    }
    throw await this.#s3.fail(res, "PutObject", key);
  }

  /** Whether the key exists, as `HeadObjectCommand` asks. */
  async has(key: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.#s3.send("HeadObject", key, {}, undefined, signal);
    if (res.ok) return true;
    if (res.status === 404) return false;
    throw await this.#s3.fail(res, "HeadObject", key);
  }

  /**
   * The object as `GetObjectCommand` asks for it; null when absent. Its body streams as it
   * arrives, unless the store declares a length of at most `wholeUpTo` bytes: then it is read
   * whole here ({@linkcode ReadObject}, `contentLength` the declared length, which a body cut
   * short does not reach), under `signal` like the request itself, so a store that stalls
   * mid-body fails the call.
   */
  open(key: string, signal?: AbortSignal): Promise<OpenedObject | null>;
  open(
    key: string,
    signal: AbortSignal | undefined,
    wholeUpTo: number,
  ): Promise<OpenedObject | ReadObject | null>;
  async open(
    key: string,
    signal?: AbortSignal,
    wholeUpTo = -1,
  ): Promise<OpenedObject | ReadObject | null> {
    const res = await this.#s3.send("GetObject", key, {}, undefined, signal);
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) throw await this.#s3.fail(res, "GetObject", key);
    const h = res.headers;
    const declared = h.get("content-length");
    const contentLength = declared === null ? null : Number(declared);
    const meta: ObjectMeta = {
      contentType: h.get("content-type") ?? "application/octet-stream",
      cacheControl: h.get("cache-control"),
      length: recordedLength(h.get("x-amz-meta-length")),
      // S3's ETag is strong (a weak one, from some gateways, is not used for conditional hits).
      etag: strongEtag(h.get("etag")),
      lastModified: h.get("last-modified") ?? undefined,
      headers: decodeImageHeaders(h.get(IMAGE_HEADERS_META)),
    };
    if (contentLength !== null && contentLength <= wholeUpTo) {
      let body: Uint8Array;
      try {
        // The fetched body read natively in one call: no stream is pumped in JavaScript.
        body = await res.bytes();
      } catch (err) {
        throw classifyS3Error(err, `GetObject ${key}`);
      }
      return { ...meta, body, contentLength };
    }
    return {
      ...meta,
      body: res.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() }),
      contentLength,
    };
  }

  /** The whole object: {@linkcode open}, read to the end. */
  async get(key: string, signal?: AbortSignal): Promise<StoredObject | null> {
    const opened = await this.open(key, signal, Infinity);
    if (opened === null) return null;
    let body = opened.body;
    if (body instanceof ReadableStream) {
      // No declared length (a chunked answer).
      try {
        body = await new Response(body).bytes();
      } catch (err) {
        throw classifyS3Error(err, `GetObject ${key}`);
      }
    }
    return { body, contentType: opened.contentType, cacheControl: opened.cacheControl };
  }

  /**
   * Removes one object, as `DeleteObjectCommand` would (signed and sent like {@linkcode put}).
   * S3 answers 204 whether or not the key existed; a store that answers 404 for an absent key
   * is no error here either.
   */
  async delete(key: string, signal?: AbortSignal): Promise<void> {
    const res = await this.#s3.send("DeleteObject", key, {}, undefined, signal);
    if (res.ok || res.status === 404) {
      await res.body?.cancel();
      return;
    }
    throw await this.#s3.fail(res, "DeleteObject", key);
  }

  /**
   * Every key listed under the prefix `baseKey` that is one of its variants, through the SDK's
   * `ListObjectsV2Command` (rare, so its cost does not matter; pages are followed).
   */
  async variants(baseKey: string, signal?: AbortSignal): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const out = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.config.bucket,
            Prefix: baseKey,
            ContinuationToken: token,
          }),
          { abortSignal: signal },
        );
        for (const o of out.Contents ?? []) {
          if (o.Key !== undefined && isVariantKey(o.Key, baseKey)) keys.push(o.Key);
        }
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token !== undefined);
    } catch (err) {
      throw classifyS3Error(err, `ListObjectsV2 ${baseKey}`);
    }
    return keys.sort();
  }
}
