/**
 * Micro-benchmark of one S3 PutObject path, against a store given by URL (the null store from
 * bench/servers.ts, or versitygw): `PutObjectCommand` through the SDK's stack and node:http,
 * the project's `S3Store.put` (its own signer + fetch), the SDK's signer + fetch, a bare
 * unsigned fetch PUT (the floor for `fetch`), and the same PUT written by hand on a kept
 * connection (`socket`: HTTP/1.1 request bytes, the answer's head read back; the floor for any
 * HTTP client in the runtime). `idle` sends nothing: with PACE_MS, what the pacing alone costs.
 *
 * Usage: deno run --allow-net=127.0.0.1 --allow-env --allow-read --allow-sys bench/s3-put.ts
 *   ENDPOINT VARIANT [SECONDS] [CONCURRENCY] [BYTES] [PACE_MS]
 * VARIANT: sdk-node (PutObjectCommand) | store (S3Store.put) | sdk-signed-fetch | fetch | socket
 * | idle. PACE_MS: each of the CONCURRENCY loops waits that long after each PUT (default 0): a
 * low rate, as in front of imgproxy, where each PUT wakes an idle process. Prints one JSON line
 * with ops/s and CPU ms per op.
 */
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import process from "node:process";
import type { S3StoreConfig } from "../lib/config.ts";
import { s3ClientConfig, S3Store } from "../lib/store/s3.ts";

const [endpoint, variant, secArg, concArg, bytesArg] = Deno.args;
const seconds = Number(secArg ?? 5);
const concurrency = Number(concArg ?? 8);
const body = new Uint8Array(Number(bytesArg ?? 30 * 1024)).fill(7);
const paceMs = Number(Deno.args[5] ?? 0);
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
} else if (variant === "socket") {
  const u = new URL(endpoint!);
  const idle: Deno.TcpConn[] = [];
  const buf = new Uint8Array(4096);
  const decoder = new TextDecoder();
  put = async (key) => {
    const conn = idle.pop() ??
      await Deno.connect({ hostname: u.hostname, port: Number(u.port || 80) });
    const head = new TextEncoder().encode(
      `PUT /bench/${key} HTTP/1.1\r\nhost: ${u.host}\r\ncontent-type: image/webp\r\n` +
        `content-length: ${body.byteLength}\r\n\r\n`,
    );
    const request = new Uint8Array(head.byteLength + body.byteLength);
    request.set(head);
    request.set(body, head.byteLength);
    for (let at = 0; at < request.byteLength;) at += await conn.write(request.subarray(at));
    // The null store answers a PUT with a head and no body.
    let answer = "";
    while (!answer.includes("\r\n\r\n")) {
      const got = await conn.read(buf);
      if (got === null) throw new Error("the store closed the connection");
      answer += decoder.decode(buf.subarray(0, got));
    }
    if (!answer.startsWith("HTTP/1.1 200")) throw new Error(answer.split("\r\n")[0]);
    idle.push(conn);
  };
} else if (variant === "idle") {
  put = () => Promise.resolve();
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
    if (paceMs > 0) await new Promise((resolve) => setTimeout(resolve, paceMs));
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
