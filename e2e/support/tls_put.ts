/**
 * Run as a program by e2e/s3_tls_test.ts (so the runtime's trust store is the one the program's
 * environment sets up): stores `k` in bucket `tls-bkt` at the https ENDPOINT with the S3 store,
 * then reads it back (GetObject goes over `fetch`); prints what each gave as JSON.
 */
import { pathStyleStore } from "../../tests/support/s3_store.ts";
import { StoreError } from "../../lib/store/store.ts";
import { s3Client, SECRET_KEY } from "./versitygw.ts";

const endpoint = Deno.args[0]!;
const client = s3Client(endpoint, SECRET_KEY);
const store = pathStyleStore(endpoint, "tls-bkt", { client });
const outcome = (err: unknown) =>
  err instanceof StoreError
    ? { retryable: err.retryable, certificate: /certificate/i.test(err.message) }
    : String(err);
const body = new TextEncoder().encode("an image over TLS");
const put = await store.put("k", body, {
  contentType: "image/png",
  cacheControl: null,
  ifAbsent: false,
})
  .catch(outcome);
const get = await store.get("k").then(
  (o) => o === null ? null : new TextDecoder().decode(o.body),
  outcome,
);
console.log(JSON.stringify({ put, get }));
await store.close();
client.destroy();
