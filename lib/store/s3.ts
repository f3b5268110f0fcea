/**
 * A store in an S3-compatible bucket (Tigris, AWS S3, R2, MinIO, versitygw...), through the
 * AWS SDK so credentials, signing and error semantics are the SDK's.
 */
import {
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import type { S3StoreConfig } from "../config.ts";
import type { PutOptions, PutResult, Store, StoredObject } from "./store.ts";
import { StoreError } from "./store.ts";

/** S3 error names that mean "slow down" or a transient server problem. */
const TRANSIENT_NAMES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
  "RequestTimeout",
  "RequestTimeoutException",
  "InternalError",
  "ServiceUnavailable",
  "ConditionalRequestConflict",
  "OperationAborted",
  "TimeoutError",
]);

interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

/** Classifies an SDK error: retryable when the network, the server or contention failed. */
export function classifyS3Error(err: unknown, what: string): StoreError {
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? "Error";
  let retryable: boolean;
  if (name === "AbortError") retryable = false;
  else if (status === undefined) retryable = true; // no answer at all: network trouble
  else if (status >= 500 || status === 409 || status === 429 || status === 408) retryable = true;
  else retryable = TRANSIENT_NAMES.has(name);
  const detail = status === undefined ? name : `${name} (HTTP ${status})`;
  return new StoreError(`${what}: ${detail}: ${e.message ?? String(err)}`, retryable, name, {
    cause: err,
  });
}

function statusOf(err: unknown): number | undefined {
  return (err as SdkError | null)?.$metadata?.httpStatusCode;
}

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

/** Stores objects in an S3-compatible bucket. */
export class S3Store implements Store {
  readonly description: string;
  readonly storedMessage = "Uploaded to S3";
  readonly logFields;
  readonly client: S3Client;

  constructor(readonly config: S3StoreConfig, client?: S3Client) {
    this.client = client ?? new S3Client(s3ClientConfig(config));
    this.description = `s3://${config.bucket} (${config.endpoint}, region ${config.region}${
      config.forcePathStyle ? ", path-style" : ""
    })`;
    this.logFields = { bucket: config.bucket };
  }

  async put(key: string, body: Uint8Array, options: PutOptions): Promise<PutResult> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.config.bucket,
          Key: key,
          Body: body,
          ContentLength: body.byteLength,
          ContentType: options.contentType,
          CacheControl: options.cacheControl ?? undefined,
          IfNoneMatch: options.ifAbsent ? "*" : undefined,
        }),
        { abortSignal: options.signal },
      );
      return "stored";
    } catch (err) {
      // 412: the conditional write found the key taken, which is what we wanted to know.
      if (options.ifAbsent && statusOf(err) === 412) return "exists";
      throw classifyS3Error(err, `PutObject ${key}`);
    }
  }

  async has(key: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.client.send(
        new HeadObjectCommand({ Bucket: this.config.bucket, Key: key }),
        { abortSignal: signal },
      );
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw classifyS3Error(err, `HeadObject ${key}`);
    }
  }

  async get(key: string, signal?: AbortSignal): Promise<StoredObject | null> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.config.bucket, Key: key }),
        { abortSignal: signal },
      );
      const body = out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
      return {
        body,
        contentType: out.ContentType ?? "application/octet-stream",
        cacheControl: out.CacheControl ?? null,
      };
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw classifyS3Error(err, `GetObject ${key}`);
    }
  }
}
