/**
 * Where objects are stored: an S3-compatible bucket (with the endpoint, region and addressing
 * defaults that suit the store the endpoint names), else a local directory.
 */
import type { LocalStoreConfig, S3StoreConfig } from "./config_types.ts";
import { normalizeFolder } from "./key.ts";
import type { Parser } from "./config_parse.ts";

const DEFAULT_ENDPOINT = "https://fly.storage.tigris.dev";

/**
 * The signing region when neither S3_REGION nor AWS_REGION is set: `auto` where the store
 * wants it (Tigris, Cloudflare R2, Google Cloud Storage's XML API), the region an AWS regional endpoint names
 * (`s3.eu-west-1.amazonaws.com`), elsewhere the AWS default `us-east-1` (AWS itself, MinIO,
 * versitygw and Ceph reject `auto`; the start-up check follows the region a store says it
 * expects).
 */
export function defaultRegion(endpoint: string): string {
  let host: string;
  try {
    host = new URL(endpoint).hostname.toLowerCase();
  } catch {
    return "us-east-1";
  }
  const under = (domain: string) => host === domain || host.endsWith(`.${domain}`);
  const aws = /(?:^|\.)s3[.-](?:dualstack\.)?([a-z]{2}(?:-gov)?-[a-z]+-\d+)\.amazonaws\.com$/
    .exec(host);
  if (aws) return aws[1]!;
  return under("tigris.dev") || under("storage.dev") || under("r2.cloudflarestorage.com") ||
      under("storage.googleapis.com")
    ? "auto"
    : "us-east-1";
}

/** True when a URL's host is an IP address or localhost (path-style addressing needed). */
export function isLocalOrIpHost(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return false;
  }
  return host === "localhost" || host.endsWith(".localhost") || /^\d+\.\d+\.\d+\.\d+$/.test(host) ||
    host.startsWith("[");
}

/** S3_BUCKET, checked; undefined when unset (the local directory is the store). */
export function bucketName(p: Parser): string | undefined {
  const bucket = p.raw("S3_BUCKET");
  // S3's naming rules, loosely (stores differ on dots, underscores and case): a name is part
  // of a host name and a path segment, so nothing that would change either.
  if (bucket !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(bucket)) {
    p.problems.push(
      `S3_BUCKET: expected a bucket name (letters, digits, ".", "-", "_"; at most 255 characters), got ${
        JSON.stringify(bucket)
      }`,
    );
  }
  return bucket;
}

/** S3_FOLDER: the key prefix without leading or trailing slashes ("" for none). */
export function keyFolder(p: Parser): string {
  const folder = normalizeFolder(p.string("S3_FOLDER", ""));
  if (/(^|\/)\.\.?(\/|$)/.test(folder) || folder.includes("//")) {
    p.problems.push(
      `S3_FOLDER: expected a prefix such as images/processed, got ${JSON.stringify(folder)}`,
    );
  }
  return folder;
}

/** The bucket's settings when `bucket` is set, else the local directory's. */
export function storeConfig(
  p: Parser,
  bucket: string | undefined,
): S3StoreConfig | LocalStoreConfig {
  if (bucket === undefined) {
    return {
      kind: "local",
      dir: p.string("CACHE_DIR", "./data/cache"),
      maxBytes: p.raw("CACHE_DIR_MAX_BYTES") === undefined
        ? null
        : p.int("CACHE_DIR_MAX_BYTES", 0, 1),
    };
  }
  const endpoint = p.url(
    "S3_ENDPOINT",
    p.raw("S3_ENDPOINT") ?? p.raw("AWS_ENDPOINT_URL_S3") ?? p.raw("AWS_ENDPOINT_URL") ??
      DEFAULT_ENDPOINT,
  );
  const store: S3StoreConfig = {
    kind: "s3",
    bucket,
    endpoint,
    region: p.raw("S3_REGION") ?? p.raw("AWS_REGION") ?? defaultRegion(endpoint),
    forcePathStyle: p.bool("S3_FORCE_PATH_STYLE", isLocalOrIpHost(endpoint)),
    conditionalWrite: p.bool("S3_CONDITIONAL_WRITE", true),
  };
  if (p.raw("CACHE_DIR_MAX_BYTES") !== undefined) {
    p.problems.push(
      "CACHE_DIR_MAX_BYTES: bounds the local directory only, and S3_BUCKET is set " +
        "(expire bucket objects with its lifecycle rules)",
    );
  }
  return store;
}
