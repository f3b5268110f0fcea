/**
 * The proxy's S3 store for tests that talk to a socket server of their own: path-style, region
 * us-east-1, fixed credentials (or those of a client given). Light on purpose (no test servers
 * imported): programs the tests run use it too.
 */
import { S3Client } from "@aws-sdk/client-s3";
import type { S3StoreConfig } from "../../lib/config.ts";
import { s3ClientConfig, S3Store } from "../../lib/store/s3.ts";
import type { Connect } from "../../lib/store/http1.ts";

export interface TestStoreOptions {
  conditionalWrite?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Used instead of a client made with `credentials`. */
  client?: S3Client;
  /** How PutObject's own connections are opened. */
  connect?: Connect;
  /** Hears why PutObject went over to `fetch`. */
  onPutFallback?: (reason: string) => void;
}

/** The S3 store for `bucket` at `endpoint`. */
export function pathStyleStore(
  endpoint: string,
  bucket: string,
  options: TestStoreOptions = {},
): S3Store {
  const config: S3StoreConfig = {
    kind: "s3",
    bucket,
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    conditionalWrite: options.conditionalWrite ?? false,
  };
  const client = options.client ?? new S3Client({
    ...s3ClientConfig(config),
    credentials: options.credentials ?? { accessKeyId: "AKID", secretAccessKey: "secret" },
  });
  return new S3Store(config, client, undefined, options.connect, options.onPutFallback);
}
