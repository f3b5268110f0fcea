/**
 * Run as a program by tests/s3_put_proxy_test.ts, with the proxy environment under test: asks
 * `ENDPOINT/fetch-probe` by `fetch`, then stores `put-probe` in bucket `bkt` there, path-style.
 */
import { S3Client } from "@aws-sdk/client-s3";
import type { S3StoreConfig } from "../../lib/config.ts";
import { s3ClientConfig, S3Store } from "../../lib/store/s3.ts";

const endpoint = Deno.args[0]!;
const config: S3StoreConfig = {
  kind: "s3",
  bucket: "bkt",
  endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  conditionalWrite: false,
};
const client = new S3Client({
  ...s3ClientConfig(config),
  credentials: { accessKeyId: "AKID", secretAccessKey: "secret" },
});
const store = new S3Store(config, client);
await (await fetch(`${endpoint}/fetch-probe`)).body?.cancel();
const options = { contentType: "image/png", cacheControl: null, ifAbsent: false };
console.log(await store.put("put-probe", new Uint8Array(5), options));
await store.close();
client.destroy();
