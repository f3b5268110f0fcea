/**
 * The store's own SigV4 signer against a real S3 server (versitygw): requests are signed with
 * the clock and the region the store corrects at run time, as the AWS SDK's signer would be.
 * A clock that is off gets the server's time from a `RequestTimeTooSkewed` answer; a region the
 * server rejects gets the one it names. Each first request fails (retryable), the next succeeds.
 */
import assert from "node:assert/strict";
import type { S3StoreConfig } from "../lib/config.ts";
import { S3Store } from "../lib/store/s3.ts";
import type { StoreError } from "../lib/store/store.ts";
import { s3Client, SECRET_KEY, Versitygw } from "./support/harness.ts";

const BUCKET = "signing";
const body = new TextEncoder().encode("image bytes");
const put = (store: S3Store, key: string) =>
  store.put(key, body, { contentType: "image/png", cacheControl: null, ifAbsent: true });

async function withStore(
  region: string,
  fn: (store: S3Store, gw: Versitygw) => Promise<void>,
): Promise<void> {
  const gw = await Versitygw.start();
  const config: S3StoreConfig = {
    kind: "s3",
    bucket: BUCKET,
    endpoint: gw.endpoint,
    region,
    forcePathStyle: true,
    conditionalWrite: true,
  };
  const store = new S3Store(config, s3Client(gw.endpoint, SECRET_KEY));
  try {
    await gw.createBucket(BUCKET);
    await fn(store, gw);
  } finally {
    store.client.destroy();
    await gw.close();
  }
}

Deno.test("versitygw: a clock an hour off is corrected from the store's Date, and the next request is signed with it", async () => {
  await withStore("us-east-1", async (store, gw) => {
    const config = store.client.config as unknown as { systemClockOffset: number };
    config.systemClockOffset = -3_600_000;
    const err = await put(store, "a").then(() => null, (e: StoreError) => e);
    assert.ok(err !== null, "a request signed an hour late is refused");
    assert.equal(err.code, "RequestTimeTooSkewed");
    assert.equal(err.retryable, true);
    assert.ok(Math.abs(config.systemClockOffset) < 60_000, `${config.systemClockOffset}`);
    assert.equal(await put(store, "a"), "stored");
    assert.equal(await store.has("a"), true);
    assert.equal(new TextDecoder().decode((await gw.get(BUCKET, "a"))!.body), "image bytes");
  });
});

Deno.test("versitygw: a region the store rejects is replaced by the one it names, and the next request is signed for it", async () => {
  await withStore("eu-west-3", async (store) => {
    const err = await put(store, "b").then(() => null, (e: StoreError) => e);
    assert.ok(err !== null, "a request signed for another region is refused");
    assert.equal(err.retryable, true);
    assert.match(err.message, /signing for region us-east-1 instead of eu-west-3/);
    assert.equal(await put(store, "b"), "stored");
    assert.equal(await store.has("b"), true);
  });
});

Deno.test("versitygw: a clock an hour off is corrected from a HEAD's Date too, whose error has no body to name it", async () => {
  await withStore("us-east-1", async (store) => {
    const config = store.client.config as unknown as { systemClockOffset: number };
    config.systemClockOffset = -3_600_000;
    const err = await store.has("c").then(() => null, (e: StoreError) => e);
    assert.ok(err !== null, "a HEAD signed an hour late is refused");
    assert.equal(err.code, "RequestTimeTooSkewed");
    assert.equal(err.retryable, true);
    assert.ok(Math.abs(config.systemClockOffset) < 60_000, `${config.systemClockOffset}`);
    assert.equal(await store.has("c"), false);
    assert.equal(await put(store, "c"), "stored");
    assert.equal(await store.has("c"), true);
  });
});
