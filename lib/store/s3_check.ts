/**
 * The start-up check of an S3 store: is the bucket there, do the credentials and the region
 * work. Problems no retry can fix become one message naming the variable(s) to change; an
 * unreachable or failing store is reported as such (the proxy serves and checks again).
 *
 * The probe, cheapest first:
 * 1. `HeadBucket` (a read-class request; needs `s3:ListBucket`). A 200 ends the check. A
 *    region named in `x-amz-bucket-region` (AWS answers a wrong region that way) is taken and
 *    the probe runs again with it.
 * 2. When HeadBucket is refused (a 4xx: a HEAD answer has no body, so it cannot say why),
 *    a write of a small marker object, `<S3_FOLDER>/.imgproxy-cache-check`, through the
 *    store's own PUT (conditional when S3_CONDITIONAL_WRITE is on, so it is written once):
 *    its error body names the problem (`NoSuchBucket`, `AccessDenied`, `InvalidAccessKeyId`,
 *    `SignatureDoesNotMatch`, `AuthorizationHeaderMalformed` with the expected region...).
 *    Needs `s3:PutObject`, which storing needs anyway.
 */
import { HeadBucketCommand, S3Client } from "@aws-sdk/client-s3";
import type { S3StoreConfig } from "../config.ts";
import { s3ClientConfig, S3Store } from "./s3.ts";
import { StoreError } from "./store.ts";
import { after } from "../timers.ts";

/** The outcome of one check. */
export type S3CheckResult =
  /** The store works; `config` carries the region the store asked for, `notes` say what changed. */
  | { kind: "ok"; config: S3StoreConfig; notes: string[] }
  /** A problem no retry can fix: the message names the variable(s) to change. */
  | { kind: "misconfigured"; message: string }
  /** No answer, or a 5xx: may pass later. */
  | { kind: "unreachable"; reason: string };

/** The marker object's name (under S3_FOLDER), written only when HeadBucket is refused. */
export const MARKER_NAME = ".imgproxy-cache-check";

const MARKER_BODY = new TextEncoder().encode(
  "Written by imgproxy-cache's start-up check (its credentials may not HeadBucket). Safe to delete.\n",
);

interface ErrorShape {
  name?: string;
  message?: string;
  Region?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string | undefined> };
}

/** Options of one check. */
export interface S3CheckOptions {
  /** Key prefix of the marker object (normalised S3_FOLDER). */
  folder: string;
  /** Longest time for each request of the probe. */
  timeoutMs: number;
  /** Ends the check early (shutdown). */
  signal?: AbortSignal;
}

/** Checks a bucket configuration; never throws. */
export async function checkS3Store(
  config: S3StoreConfig,
  options: S3CheckOptions,
): Promise<S3CheckResult> {
  const notes: string[] = [];
  const tried = new Set<string>();
  let current = config;
  // At most two regions: the configured one, and the one the store names.
  for (;;) {
    tried.add(current.region);
    const result = await probe(current, options);
    if (result.kind !== "region") {
      return result.kind === "ok" ? { kind: "ok", config: current, notes } : result;
    }
    if (tried.has(result.region)) {
      return {
        kind: "misconfigured",
        message: `S3_REGION: the store at ${config.endpoint} rejects region ${
          JSON.stringify(current.region)
        } and names ${JSON.stringify(result.region)}, which it rejects too: set S3_REGION`,
      };
    }
    notes.push(
      `S3_REGION: the store expects region ${JSON.stringify(result.region)}, not ${
        JSON.stringify(current.region)
      }: using ${result.region} (set S3_REGION=${result.region} to skip this step)`,
    );
    current = { ...current, region: result.region };
  }
}

type ProbeResult =
  | { kind: "ok" }
  | { kind: "region"; region: string }
  | Exclude<S3CheckResult, { kind: "ok" }>;

/** Runs `work` with a signal that aborts after the timeout or with the caller's signal. */
async function timed<T>(
  options: S3CheckOptions,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<{ value: T } | { error: unknown; timedOut: boolean }> {
  const controller = new AbortController();
  let timedOut = false;
  // Ref'd: the start-up check (or the re-check) awaits it.
  const cancelTimeout = after(options.timeoutMs, () => {
    timedOut = true;
    controller.abort(new DOMException("Store check timed out", "TimeoutError"));
  }, { ref: true });
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return { value: await work(controller.signal) };
  } catch (error) {
    return { error, timedOut };
  } finally {
    cancelTimeout();
    options.signal?.removeEventListener("abort", onAbort);
  }
}

async function probe(config: S3StoreConfig, options: S3CheckOptions): Promise<ProbeResult> {
  // No region following here: the check wants to see the hint, to hand it to the store.
  const client = new S3Client({ ...s3ClientConfig(config), followRegionRedirects: false });
  try {
    const head = await timed(
      options,
      (signal) =>
        client.send(new HeadBucketCommand({ Bucket: config.bucket }), { abortSignal: signal }),
    );
    if ("value" in head) return { kind: "ok" };
    if (head.timedOut) {
      return { kind: "unreachable", reason: `no answer within ${options.timeoutMs / 1000} s` };
    }
    const err = (head.error ?? {}) as ErrorShape;
    const status = err.$metadata?.httpStatusCode;
    const hinted = err.$response?.headers?.["x-amz-bucket-region"];
    if (hinted && hinted !== config.region) return { kind: "region", region: hinted };
    // A HEAD answer has no body, so a 4xx cannot say why (versitygw answers an unknown access
    // key with 404, like a missing bucket): the marker write's error body will.
    if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
      return await probeWrite(config, options);
    }
    return judge(config, err.name ?? "Error", status, err.message ?? String(head.error));
  } finally {
    client.destroy();
  }
}

async function probeWrite(config: S3StoreConfig, options: S3CheckOptions): Promise<ProbeResult> {
  const store = new S3Store(config);
  try {
    const key = options.folder === "" ? MARKER_NAME : `${options.folder}/${MARKER_NAME}`;
    const put = await timed(options, (signal) =>
      store.put(key, MARKER_BODY, {
        contentType: "text/plain; charset=utf-8",
        cacheControl: "no-store",
        ifAbsent: config.conditionalWrite,
        signal,
      }));
    if ("value" in put) return { kind: "ok" };
    if (put.timedOut) {
      return { kind: "unreachable", reason: `no answer within ${options.timeoutMs / 1000} s` };
    }
    const cause = (put.error instanceof StoreError ? put.error.cause : put.error) as ErrorShape;
    const name = cause?.name ?? "Error";
    if (name === "AuthorizationHeaderMalformed" && cause.Region && cause.Region !== config.region) {
      return { kind: "region", region: cause.Region };
    }
    return judge(config, name, cause?.$metadata?.httpStatusCode, cause?.message ?? String(cause));
  } finally {
    // The marker PUT's connection, kept by the store, is closed with it.
    await store.close();
    store.client.destroy();
  }
}

/** Turns an S3 error into a verdict with the variable(s) to change. */
function judge(
  config: S3StoreConfig,
  name: string,
  status: number | undefined,
  message: string,
): ProbeResult {
  const at = `at ${config.endpoint}`;
  const bucket = JSON.stringify(config.bucket);
  switch (name) {
    case "NoSuchBucket":
    case "NotFound":
      return {
        kind: "misconfigured",
        message:
          `S3_BUCKET: bucket ${bucket} does not exist ${at}: create it, or fix S3_BUCKET (or S3_ENDPOINT if the bucket is on another store)`,
      };
    case "InvalidBucketName":
      return {
        kind: "misconfigured",
        message: `S3_BUCKET: the store ${at} refuses the bucket name ${bucket}`,
      };
    case "InvalidAccessKeyId":
    case "XAdminUserNotFound": // versitygw
      return {
        kind: "misconfigured",
        message:
          `AWS_ACCESS_KEY_ID: the store ${at} does not know this access key: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and that S3_ENDPOINT is the store they belong to)`,
      };
    case "SignatureDoesNotMatch":
      return {
        kind: "misconfigured",
        message:
          `AWS_SECRET_ACCESS_KEY: the store ${at} rejects the request signature: the secret key does not belong to AWS_ACCESS_KEY_ID; check AWS_SECRET_ACCESS_KEY`,
      };
    case "CredentialsProviderError":
      return {
        kind: "misconfigured",
        message:
          "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: no credentials found: set both (or provide a shared credentials file, web identity token or instance role)",
      };
    case "AccessDenied":
    case "AllAccessDisabled":
      return {
        kind: "misconfigured",
        message:
          `AWS_ACCESS_KEY_ID: the credentials may not write to bucket ${bucket} ${at} (${name}): grant them s3:PutObject on it (s3:GetObject too for CACHE_MODE=read; s3:ListBucket lets the start-up check use one HEAD request), or set other credentials`,
      };
    case "AuthorizationHeaderMalformed":
    case "InvalidRegion":
    case "IllegalLocationConstraintException":
      return {
        kind: "misconfigured",
        message: `S3_REGION: the store ${at} rejects region ${
          JSON.stringify(config.region)
        }: ${message}`,
      };
    case "PermanentRedirect":
    case "Redirect":
      return {
        kind: "misconfigured",
        message:
          `S3_ENDPOINT: bucket ${bucket} must be addressed through another endpoint than ${config.endpoint}: ${message} (set S3_ENDPOINT, or S3_REGION to the bucket's region)`,
      };
    case "NotImplemented":
      return {
        kind: "misconfigured",
        message:
          `S3_CONDITIONAL_WRITE: the store ${at} does not implement conditional writes (If-None-Match: *): set S3_CONDITIONAL_WRITE=false`,
      };
  }
  // Timeouts, resets, refused connections, DNS failures; server errors and throttling.
  if (status === undefined || status >= 500 || status === 429 || status === 408) {
    return {
      kind: "unreachable",
      reason: status === undefined ? `${name}: ${message}` : `${name} (HTTP ${status})`,
    };
  }
  return {
    kind: "misconfigured",
    message:
      `S3_BUCKET/S3_ENDPOINT: the store ${at} refuses bucket ${bucket}: ${name} (HTTP ${status}): ${message}`,
  };
}
