/**
 * Run as a program by tests/s3_put_proxy_test.ts, with the proxy environment under test: asks
 * `ENDPOINT/fetch-probe` by `fetch`, then stores `put-probe` in bucket `bkt` there, path-style.
 */
import { pathStyleStore } from "./s3_store.ts";

const endpoint = Deno.args[0]!;
const store = pathStyleStore(endpoint, "bkt");
await (await fetch(`${endpoint}/fetch-probe`)).body?.cancel();
const options = { contentType: "image/png", cacheControl: null, ifAbsent: false };
console.log(await store.put("put-probe", new Uint8Array(5), options));
await store.close();
store.client.destroy();
