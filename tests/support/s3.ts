/**
 * s3rver (a fake S3 server) run in-process on 127.0.0.1, port 0, over a temporary directory,
 * with helpers to list and read objects through the AWS SDK.
 *
 * s3rver ignores `If-None-Match: *` (a second PUT overwrites): conditional writes are proven
 * against versitygw in the e2e suite, never here.
 */
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
// Test-only, so not in deno.json's imports: Deno installs every npm package named there (and
// every package in deno.lock) on any `deno run`, and the proxy's first start would fetch s3rver
// with koa and winston. The test tasks keep their packages in tests/deno.lock.
// deno-lint-ignore no-import-prefix
import S3rver from "npm:s3rver@3.7.1";
import type { AddressInfo } from "node:net";
import type { S3Store } from "../../lib/store/s3.ts";
import { pathStyleStore } from "./s3_store.ts";
import process from "node:process";

// s3rver creates directories through fs-extra, which calls `process.umask()`: that needs
// `--allow-sys=umask`, which the test task does not grant. Without it every PUT is a 500.
// Answer the common default instead (only the test process's s3rver is affected).
if (Deno.permissions.querySync({ name: "sys", kind: "umask" }).state !== "granted") {
  process.umask = (() => 0o022) as typeof process.umask;
}

/** s3rver's fixed credentials. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

/** The proxy's S3 store on `endpoint` (path-style, us-east-1) with s3rver's credentials. */
export function s3StoreAt(endpoint: string, bucket: string, conditionalWrite = false): S3Store {
  return pathStyleStore(endpoint, bucket, { conditionalWrite, credentials: S3RVER_CREDENTIALS });
}

/** One object read back. */
export interface S3Object {
  body: Uint8Array;
  contentType: string | undefined;
  cacheControl: string | undefined;
}

/** A running s3rver. */
export interface TestS3 {
  endpoint: string;
  port: number;
  bucket: string;
  client: S3Client;
  /** Environment for the proxy's S3 store. */
  env: Record<string, string>;
  list(prefix?: string): Promise<string[]>;
  get(key: string): Promise<S3Object | null>;
  /** Polls until `key` exists (or `ms` passes). */
  waitFor(key: string, ms?: number): Promise<S3Object | null>;
  stop(): Promise<void>;
}

/** Starts s3rver with one bucket (`bucket`, default "test-bucket"). */
export async function startS3(bucket = "test-bucket"): Promise<TestS3> {
  const dir = await Deno.makeTempDir({ prefix: "s3rver-" });
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: Deno.env.get("S3RVER_LOG") !== "1", // S3RVER_LOG=1 shows its request log
    directory: dir,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  // deno-lint-ignore no-explicit-any
  const address = await (server.run() as Promise<any>) as AddressInfo;
  const port = address.port;
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  const get = async (key: string): Promise<S3Object | null> => {
    try {
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return {
        body: await out.Body!.transformToByteArray(),
        contentType: out.ContentType,
        cacheControl: out.CacheControl,
      };
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) {
        return null;
      }
      throw err;
    }
  };
  return {
    endpoint,
    port,
    bucket,
    client,
    env: {
      S3_BUCKET: bucket,
      S3_ENDPOINT: endpoint,
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      AWS_REGION: "us-east-1",
    },
    async list(prefix) {
      const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
      return (out.Contents ?? []).map((o) => o.Key!).sort();
    },
    get,
    async waitFor(key, ms = 5000) {
      const deadline = Date.now() + ms;
      for (;;) {
        try {
          await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
          return await get(key);
        } catch {
          if (Date.now() > deadline) return null;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
    async stop() {
      client.destroy();
      await server.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
