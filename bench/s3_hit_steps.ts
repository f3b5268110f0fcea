/**
 * One step of the S3 hit ladder (bench/s3-hit-ladder.ts): a `Deno.serve` answering every
 * request with one stored 30 KB object read whole from an S3 store (the bench's null store),
 * each step adding one thing the proxy's read-mode hit does, with the proxy's own modules:
 *
 * - `whole`: an unsigned `fetch` of the object, its body read whole, answered as a new
 *   `Response` with its type and `Cache-Control` (the runtime's floor for a small hit);
 * - `hashes`: the unsigned `fetch` and three SHA-256 digests of signing's length, unsent;
 * - `init`: the signed request's headers, computed once, sent with each `fetch`;
 * - `signcalc`: the signature computed per request, not sent;
 * - `signed`: the same `fetch` signed per request by lib/store/s3_sign.ts, its headers as
 *   lib/store/s3_request.ts builds them (`redirect: "manual"`);
 * - `requester`: `S3Requester.send` (credentials, address, signing, the header record);
 * - `signal`: the same with a new `AbortController`'s signal on the `fetch`;
 * - `store`: `S3Store.open(key, signal, WHOLE_HIT_BYTES)` (the answer's metadata, the body read
 *   whole by the store);
 * - `slots`: the same with a lookup deadline slot added and cancelled, nothing raced;
 * - `deadline`: the same raced against the deadline as the lookup does (`withDeadline`);
 * - `lookup`: the proxy's `withLookup` on a request context (the key's digest, the expiry and
 *   validator checks, the answer's headers), nothing else of the proxy;
 * - `app`: the whole proxy's handler (`createApp`, access log off) under `Deno.serve`.
 *
 * Started by bench/s3-hit-ladder.ts: `deno run --allow-net=127.0.0.1 --allow-env --allow-read
 * --allow-sys=... bench/s3_hit_steps.ts STEP PORT STORE_PORT UPSTREAM_PORT` prints `ready PORT`.
 */
import { S3Client } from "@aws-sdk/client-s3";
import { S3Requester } from "../lib/store/s3_request.ts";
import { S3Store } from "../lib/store/s3.ts";
import { EMPTY_SHA256, sha256Hex, SigV4Signer } from "../lib/store/s3_sign.ts";
import { WHOLE_HIT_BYTES } from "../lib/hit.ts";
import { Deadlines } from "../lib/timers.ts";
import { withLookup } from "../lib/lookup.ts";
import { withDeadline } from "../lib/timers.ts";
import { objectKey } from "../lib/key.ts";
import { contextOf } from "../lib/context.ts";
import { createLogger } from "../lib/log.ts";
import { loadConfig } from "../lib/config.ts";
import { createApp } from "../lib/app.ts";
import { FormatNegotiation } from "../lib/negotiation.ts";
import type { S3StoreConfig } from "../lib/config.ts";
import type { Uploader } from "../lib/uploader.ts";

const [step, portArg, storePort, upstreamPort] = Deno.args;
const PATH = "/30k/hit.webp";
const key = objectKey(PATH, "", "");
const env: Record<string, string> = {
  S3_BUCKET: "bench",
  S3_ENDPOINT: `http://127.0.0.1:${storePort}`,
  S3_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: "benchkey",
  AWS_SECRET_ACCESS_KEY: "benchsecret",
  IMGPROXY_URL: `http://127.0.0.1:${upstreamPort}`,
  CACHE_MODE: "read",
  ACCESS_LOG: "false",
  STORE_CHECK: "false",
};
const config = loadConfig((n) => env[n]);
const s3 = config.store as S3StoreConfig;
const client = new S3Client({
  region: s3.region,
  endpoint: s3.endpoint,
  forcePathStyle: s3.forcePathStyle,
});
const url = `http://127.0.0.1:${storePort}/bench/${key}?x-id=GetObject`;

function answer(body: Uint8Array, type: string | null, cc: string | null): Response {
  return new Response(body as Uint8Array<ArrayBuffer>, {
    headers: [["content-type", type!], ["cache-control", cc!]],
  });
}

/** The client's answer made of a store's answer read whole. */
async function answerOf(res: Response): Promise<Response> {
  const h = res.headers;
  return answer(await res.bytes(), h.get("content-type"), h.get("cache-control"));
}

const signer = new SigV4Signer("s3");
const credentials = { accessKeyId: "benchkey", secretAccessKey: "benchsecret" };

/** The object's GetObject signed now, as the store signs it: its headers, `host` among them. */
function signedGet(): Record<string, string> {
  const headers: Record<string, string> = { host: `127.0.0.1:${storePort}` };
  signer.sign(
    {
      method: "GET",
      path: `/bench/${key}`,
      query: "x-id=GetObject",
      headers,
      payloadHash: EMPTY_SHA256,
    },
    credentials,
    "us-east-1",
    Date.now(),
  );
  return headers;
}

type Step = (req: Request) => Promise<Response>;

/** The store's read with a lookup deadline's slot, raced against it as the lookup does or not. */
function underDeadline(race: boolean): Step {
  const store = new S3Store(s3, client);
  const deadlines = new Deadlines(config.lookupTimeoutMs);
  return async () => {
    const c = new AbortController();
    const cancel = deadlines.add(() => c.abort(new DOMException("late", "TimeoutError")));
    try {
      const opening = store.open(key, c.signal, WHOLE_HIT_BYTES);
      const o = await (race ? withDeadline(opening, c.signal) : opening);
      return answer(o!.body as Uint8Array, o!.contentType, o!.cacheControl);
    } finally {
      cancel();
    }
  };
}
const steps: Record<string, () => Step | Promise<Step>> = {
  whole: () => async () => {
    return answerOf(await fetch(url));
  },
  init: () => {
    // The signed request's headers, computed once: what sending them costs without signing.
    const headers = signedGet();
    delete headers.host;
    return async () =>
      answerOf(await fetch(url, { method: "GET", headers: { ...headers }, redirect: "manual" }));
  },
  signcalc: () => async () => {
    // Signing computed per request, its headers not sent.
    signedGet();
    return answerOf(await fetch(url));
  },
  signed: () => async () => {
    const headers = signedGet();
    const sent: Record<string, string> = {};
    for (const name in headers) if (name !== "host") sent[name] = headers[name]!;
    return answerOf(await fetch(url, { method: "GET", headers: sent, redirect: "manual" }));
  },
  requester: () => {
    const r = new S3Requester(s3, client);
    return async () => {
      return answerOf(await r.send("GetObject", key, {}));
    };
  },
  signal: () => {
    const r = new S3Requester(s3, client);
    return async () => {
      const c = new AbortController();
      return answerOf(await r.send("GetObject", key, {}, undefined, c.signal));
    };
  },
  store: () => {
    const store = new S3Store(s3, client);
    return async () => {
      const c = new AbortController();
      const o = await store.open(key, c.signal, WHOLE_HIT_BYTES);
      return answer(o!.body as Uint8Array, o!.contentType, o!.cacheControl);
    };
  },
  hashes: () => {
    // Three SHA-256 digests of strings as long as signing hashes, nothing else of signing.
    const text = `GET\n/bench/${key}\nx-id=GetObject\nhost:127.0.0.1:${storePort}\n`.repeat(3);
    return async () => {
      const t = text + Date.now();
      sha256Hex(t);
      sha256Hex(t.slice(100));
      sha256Hex(t.slice(150));
      return answerOf(await fetch(url));
    };
  },
  // The store's read with the lookup's deadline slot added and cancelled, no race.
  slots: () => underDeadline(false),
  // The store's read under the lookup's deadline (its slot and its race).
  deadline: () => underDeadline(true),

  lookup: () => {
    const store = new S3Store(s3, client);
    const handle = withLookup(() => Promise.reject(new Error("not a hit")), {
      mode: "read",
      store,
      uploader: { isRecent: () => false } as unknown as Uploader,
      logger: createLogger({ level: "WARN", format: "text" }),
      folder: "",
      cacheVariants: config.cacheVariants,
      negotiation: new FormatNegotiation(config.negotiatedFormats),
      publicBaseUrl: "",
      timeoutMs: config.lookupTimeoutMs,
    });
    return (req) => handle(contextOf(req));
  },
  app: async () =>
    (await createApp(config, createLogger({ level: "WARN", format: "text" }))).handler,
};

const make = steps[step!];
if (make === undefined) {
  console.error(`usage: s3_hit_steps.ts ${Object.keys(steps).join("|")} PORT STORE_PORT UP_PORT`);
  Deno.exit(2);
}
const handler = await make();
Deno.serve(
  {
    hostname: "127.0.0.1",
    port: Number(portArg),
    onListen: ({ port }) => console.log(`ready ${port}`),
  },
  (req) => handler(req),
);
