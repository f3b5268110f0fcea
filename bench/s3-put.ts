/**
 * Micro-benchmark of one S3 PutObject path, against a store given by URL (the null store from
 * bench/servers.ts, or versitygw): `PutObjectCommand` through the SDK's stack and node:http,
 * the project's `S3Store.put` (its own signer + fetch), the SDK's signer + fetch, and a bare
 * unsigned fetch PUT (the floor).
 *
 * Usage: deno run --allow-net=127.0.0.1 --allow-env --allow-read --allow-sys bench/s3-put.ts
 *   ENDPOINT VARIANT [SECONDS] [CONCURRENCY] [BYTES]
 * VARIANT: sdk-node (PutObjectCommand) | store (S3Store.put) | sdk-signed-fetch | fetch. Prints one JSON line with ops/s and CPU ms per op.
 */
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import process from "node:process";
import type { S3StoreConfig } from "../lib/config.ts";
import { s3ClientConfig, S3Store } from "../lib/store/s3.ts";

const [endpoint, variant, secArg, concArg, bytesArg] = Deno.args;
const seconds = Number(secArg ?? 5);
const concurrency = Number(concArg ?? 8);
const body = new Uint8Array(Number(bytesArg ?? 30 * 1024)).fill(7);
const storeConfig: S3StoreConfig = {
  kind: "s3",
  bucket: "bench",
  endpoint: endpoint!,
  region: "us-east-1",
  forcePathStyle: true,
  conditionalWrite: true,
};
const base = s3ClientConfig(storeConfig);
const credentials = { accessKeyId: "benchkey", secretAccessKey: "benchsecret" };
// deno-lint-ignore no-explicit-any
const cfg: any = { ...base, credentials };
if (variant === "sdk-node") delete cfg.requestHandler;
const client = new S3Client(cfg);
let n = 0;
let put: (key: string) => Promise<void>;
if (variant === "store") {
  const store = new S3Store(storeConfig, client);
  put = async (key) => {
    await store.put(key, body, {
      contentType: "image/webp",
      cacheControl: "max-age=31536000, public",
      ifAbsent: true,
    });
  };
} else if (variant === "sdk-signed-fetch") {
  // deno-lint-ignore no-explicit-any
  const signer: any = await (client.config.signer as any)({
    name: "sigv4",
    signingName: "s3",
    signingRegion: "us-east-1",
    properties: {},
  });
  const u = new URL(endpoint!);
  put = async (key) => {
    const signed = await signer.sign({
      method: "PUT",
      protocol: u.protocol,
      hostname: u.hostname,
      port: u.port === "" ? undefined : Number(u.port),
      path: `/bench/${key}`,
      query: {},
      headers: {
        host: u.host,
        "content-type": "image/webp",
        "content-length": String(body.byteLength),
        "cache-control": "max-age=31536000, public",
        "if-none-match": "*",
      },
      body,
    }, { signingRegion: "us-east-1", signingService: "s3" });
    const h = new Headers();
    for (const [k, v] of Object.entries(signed.headers)) {
      if (k !== "host" && k !== "content-length") h.set(k, v as string);
    }
    const res = await fetch(`${endpoint}/bench/${key}`, { method: "PUT", headers: h, body });
    await res.body?.cancel();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
  };
} else if (variant === "fetch") {
  put = async (key) => {
    const res = await fetch(`${endpoint}/bench/${key}`, { method: "PUT", body });
    await res.body?.cancel();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
  };
} else {
  put = async (key) => {
    await client.send(
      new PutObjectCommand({
        Bucket: "bench",
        Key: key,
        Body: body,
        ContentLength: body.byteLength,
        ContentType: "image/webp",
        CacheControl: "max-age=31536000, public",
        IfNoneMatch: "*",
      }),
    );
  };
}
const run = Date.now().toString(36);
const warmEnd = Date.now() + 1000;
const loop = async (id: number, end: number, count: boolean) => {
  for (let i = 0; Date.now() < end; i++) {
    await put(`${run}-${count ? "m" : "w"}-${id}-${i}`);
    if (count) n++;
  }
};
await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i, warmEnd, false)));
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const end = Date.now() + seconds * 1000;
await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i, end, true)));
const wall = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({
  variant,
  ops: n,
  opsPerSec: Math.round(n / wall),
  cpuMsPerOp: +(((cpu.user + cpu.system) / 1000) / n).toFixed(3),
}));
Deno.exit(0);
