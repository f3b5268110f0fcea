/**
 * The S3 store's requests against the AWS SDK's own commands, on the wire: both are sent to a
 * real local socket server that records them as they arrive, with the signing clock fixed, and
 * must be equal byte for byte (request line, every header the SDK sends and its value, the
 * signature, the body), but for the SDK's telemetry headers, which the store does not send.
 * The store's PUT goes out over HTTP/1.1 connections of its own: no header may differ at all
 * (the SDK's `Connection`, which node:http adds, is the only one left out); its other requests
 * over `fetch`, which adds unsigned headers of its own.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { loadConfig, type S3StoreConfig } from "../lib/config.ts";
import { s3ClientConfig, S3Store } from "../lib/store/s3.ts";
import { encodeImageHeaders, IMAGE_HEADERS_META } from "../lib/image_headers.ts";
import { type Captured, startCapture } from "./support/capture.ts";

/** The SDK's telemetry headers: not sent by the store, removed from the SDK's before signing. */
const TELEMETRY = ["user-agent", "x-amz-user-agent", "amz-sdk-invocation-id", "amz-sdk-request"];
/** Unsigned headers each HTTP client adds on its own (node:http; Deno's fetch). */
const SDK_TRANSPORT = ["connection"];
const FETCH_TRANSPORT = ["accept", "accept-language", "accept-encoding", "user-agent"];

const CREDENTIALS = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfi" };
/** Temporary credentials: the session token is sent, and signed, as `x-amz-security-token`. */
const SESSION = {
  ...CREDENTIALS,
  sessionToken: "FwoGZXIvYXdzEJr//////////wEaDGV4YW1wbGU+dG9rZW4=",
};

function configOf(env: Record<string, string>): S3StoreConfig {
  const config = loadConfig((name) => env[name]);
  assert.equal(config.store.kind, "s3");
  return config.store as S3StoreConfig;
}

function respond(req: Captured): string {
  const method = req.requestLine.split(" ")[0];
  if (method === "PUT") return 'HTTP/1.1 200 OK\r\netag: "0"\r\ncontent-length: 0\r\n\r\n';
  if (method === "DELETE") return "HTTP/1.1 204 No Content\r\n\r\n";
  const head = "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncache-control: max-age=60\r\n" +
    "content-length: 3\r\n\r\n";
  return method === "HEAD" ? head : head + "abc";
}

/** Headers as a name → value map, less `drop`; each name must appear once. */
function headerMap(req: Captured, drop: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const [name, value] of req.headers) {
    const n = name.toLowerCase();
    assert.ok(!m.has(n), `${n} sent twice`);
    if (!drop.includes(n)) m.set(n, value);
  }
  return m;
}

function signedHeaders(req: Captured): string[] {
  const auth = req.headers.find(([n]) => n.toLowerCase() === "authorization")?.[1] ?? "";
  const m = /SignedHeaders=([^,]+), Signature=[0-9a-f]{64}$/.exec(auth);
  assert.ok(m, `no SigV4 authorization in ${auth}`);
  return m[1]!.split(";");
}

const KEYS = [
  "0123456789abcdef0123456789abcdef",
  "images/processed/0123456789abcdef0123456789abcdef.webp",
  "a folder/é ü/+~!'()*&$=;:@,[]%2F#?.png",
];

const CASES: {
  name: string;
  env: Record<string, string>;
  host: (bucket: string) => string;
  credentials?: typeof SESSION;
}[] = [
  {
    name: "path-style, IP endpoint with a port",
    env: { S3_BUCKET: "bkt", S3_ENDPOINT: "http://127.0.0.1:9000" },
    host: () => "127.0.0.1:9000",
  },
  {
    name: "path-style forced, endpoint with a port and a path prefix",
    env: {
      S3_BUCKET: "bkt",
      S3_ENDPOINT: "http://s3.example.test:9000/pre/fix/",
      S3_FORCE_PATH_STYLE: "true",
    },
    host: () => "s3.example.test:9000",
  },
  {
    name: "virtual-hosted, endpoint with a port",
    env: { S3_BUCKET: "bkt", S3_ENDPOINT: "http://s3.example.test:9000" },
    host: (b) => `${b}.s3.example.test:9000`,
  },
  {
    name: "virtual-hosted, endpoint with a path prefix and the default port",
    env: { S3_BUCKET: "my-bucket", S3_ENDPOINT: "http://s3.example.test/pre" },
    host: (b) => `${b}.s3.example.test`,
  },
  {
    name: "virtual-hosted asked, IP endpoint: path-style",
    env: {
      S3_BUCKET: "bkt",
      S3_ENDPOINT: "http://127.0.0.1:9000",
      S3_FORCE_PATH_STYLE: "false",
    },
    host: () => "127.0.0.1:9000",
  },
  {
    name: "virtual-hosted asked, a bucket that is no DNS label: path-style",
    env: { S3_BUCKET: "my.Bucket_1", S3_ENDPOINT: "http://s3.example.test:9000" },
    host: () => "s3.example.test:9000",
  },
  {
    name: "temporary credentials (session token), another region",
    env: { S3_BUCKET: "bkt", S3_ENDPOINT: "http://127.0.0.1:9000", S3_REGION: "ap-south-2" },
    host: () => "127.0.0.1:9000",
    credentials: SESSION,
  },
];

/** Headers an image answer kept beside the object, one of them needing escaping. */
const IMAGE_HEADERS = {
  "content-disposition": 'inline; filename="a  b é.png"',
  "x-result-width": "300",
};

/** Signing times: two days, so a store signing on past midnight derives the new day's key. */
const TIMES = [Date.UTC(2026, 10, 29, 12, 34, 56), Date.UTC(2026, 10, 30, 0, 0, 1)];

for (const c of CASES) {
  Deno.test(`S3 requests equal the SDK's on the wire: ${c.name}`, async () => {
    const cap = startCapture(respond);
    const agent = new http.Agent({ keepAlive: false });
    // Every connection goes to the capture server, whatever host the request names.
    (agent as unknown as { createConnection: () => net.Socket }).createConnection = () =>
      net.connect(cap.port, "127.0.0.1");
    const routed = Deno.createHttpClient({ allowHost: true });
    const config = configOf({ S3_REGION: "eu-west-3", ...c.env, IMGPROXY_URL: "http://i:1" });
    const credentials = c.credentials ?? CREDENTIALS;
    const sdk = new S3Client({
      ...s3ClientConfig(config),
      credentials,
      requestHandler: { httpAgent: agent },
    });
    // Telemetry off, before the SDK's signer runs (so the signature covers what remains).
    type Args = { request: { headers: Record<string, string> } };
    const noTelemetry = (next: (args: Args) => Promise<unknown>) => (args: Args) => {
      for (const h of TELEMETRY) delete args.request.headers[h];
      return next(args);
    };
    sdk.middlewareStack.addRelativeTo(
      noTelemetry as unknown as Parameters<S3Client["middlewareStack"]["addRelativeTo"]>[0],
      { relation: "before", toMiddleware: "httpSigningMiddleware", name: "noTelemetry" },
    );
    const store = new S3Store(
      config,
      new S3Client({ ...s3ClientConfig(config), credentials }),
      (url, init) => {
        // What fetch would send if the name resolved: the URL's host, to the capture server.
        const u = new URL(url as string);
        const headers = new Headers(init?.headers);
        headers.set("host", u.host);
        u.hostname = "127.0.0.1";
        u.port = String(cap.port);
        return fetch(u, { ...init, headers, client: routed });
      },
      // The PUT's own connections, to the capture server, whatever host the request names.
      () => Deno.connect({ hostname: "127.0.0.1", port: cap.port }),
    );
    const realNow = Date.now;
    try {
      for (const [time, key] of TIMES.flatMap((t) => KEYS.map((k) => [t, k] as const))) {
        Date.now = () => time;
        const body = new TextEncoder().encode("image bytes");
        const pairs: [string, () => Promise<unknown>, () => Promise<unknown>][] = [
          [
            "HeadObject",
            () => sdk.send(new HeadObjectCommand({ Bucket: config.bucket, Key: key })),
            async () => assert.equal(await store.has(key), true),
          ],
          [
            "GetObject",
            async () => {
              const out = await sdk.send(new GetObjectCommand({ Bucket: config.bucket, Key: key }));
              assert.equal(await out.Body!.transformToString(), "abc");
            },
            async () => {
              const got = await store.get(key);
              assert.equal(new TextDecoder().decode(got!.body), "abc");
              assert.equal(got!.contentType, "image/png");
              assert.equal(got!.cacheControl, "max-age=60");
            },
          ],
          [
            "PutObject",
            () =>
              sdk.send(
                new PutObjectCommand({
                  Bucket: config.bucket,
                  Key: key,
                  Body: body,
                  // Blanks that signing folds: the value as signed is canonical, as sent not.
                  ContentType: "image/webp;  charset=x",
                  CacheControl: "max-age=31536000, public",
                  IfNoneMatch: "*",
                  Metadata: {
                    length: String(body.byteLength),
                    [IMAGE_HEADERS_META.slice("x-amz-meta-".length)]: encodeImageHeaders(
                      IMAGE_HEADERS,
                    ),
                  },
                }),
              ),
            async () =>
              assert.equal(
                await store.put(key, body, {
                  contentType: "image/webp;  charset=x",
                  cacheControl: "max-age=31536000, public",
                  ifAbsent: true,
                  headers: IMAGE_HEADERS,
                }),
                "stored",
              ),
          ],
          [
            "DeleteObject",
            () => sdk.send(new DeleteObjectCommand({ Bucket: config.bucket, Key: key })),
            () => store.delete(key),
          ],
        ];
        for (const [op, bySdk, byStore] of pairs) {
          const before = cap.requests.length;
          await bySdk();
          await byStore();
          assert.equal(cap.requests.length, before + 2, `${op} ${key}: two requests`);
          const [want, got] = cap.requests.slice(before) as [Captured, Captured];
          const what = `${op} ${JSON.stringify(key)} at ${new Date(time).toISOString()}`;
          assert.equal(got.requestLine, want.requestLine, `${what}: request line`);
          const wantHeaders = headerMap(want, SDK_TRANSPORT);
          assert.equal(wantHeaders.get("host"), c.host(config.bucket), `${what}: SDK's host`);
          assert.ok(!TELEMETRY.some((h) => wantHeaders.has(h)), `${what}: telemetry removed`);
          assert.equal(
            wantHeaders.get("x-amz-security-token"),
            c.credentials?.sessionToken,
            `${what}: SDK's session token`,
          );
          // A PUT on the store's own connections: nothing added, nothing left out.
          const transport = op === "PutObject" ? [] : FETCH_TRANSPORT;
          assert.deepEqual(
            Object.fromEntries(headerMap(got, transport)),
            Object.fromEntries(wantHeaders),
            `${what}: headers`,
          );
          // What fetch adds on its own is outside the signature.
          const signed = signedHeaders(got);
          for (const [name] of got.headers) {
            const n = name.toLowerCase();
            if (!wantHeaders.has(n)) assert.ok(!signed.includes(n), `${what}: ${n} unsigned`);
          }
          assert.deepEqual(got.body, want.body, `${what}: body`);
        }
      }
    } finally {
      Date.now = realNow;
      sdk.destroy();
      await store.close();
      routed.close();
      await cap.close();
    }
  });
}

Deno.test("S3 requests take renewed credentials when they expire, and keep those that do not", async () => {
  const cap = startCapture(respond);
  const config = configOf({
    S3_BUCKET: "bkt",
    S3_ENDPOINT: `http://127.0.0.1:${cap.port}`,
    S3_REGION: "eu-west-3",
    IMGPROXY_URL: "http://i:1",
  });
  const keyIds = (from: number) =>
    cap.requests.slice(from).map((r) =>
      /Credential=([^/]+)\//.exec(
        r.headers.find(([n]) => n.toLowerCase() === "authorization")?.[1] ?? "",
      )?.[1]
    );
  try {
    for (const expiring of [true, false]) {
      let asked = 0;
      // Expiring within the SDK's refresh window (5 minutes): renewed on every request.
      const provider = () =>
        Promise.resolve({
          ...CREDENTIALS,
          accessKeyId: `AKID${++asked}`,
          ...(expiring ? { expiration: new Date(Date.now() + 60_000) } : {}),
        });
      const client = new S3Client({ ...s3ClientConfig(config), credentials: provider });
      const store = new S3Store(config, client);
      const from = cap.requests.length;
      for (let i = 0; i < 3; i++) assert.equal(await store.has("k"), true);
      const used = keyIds(from);
      if (expiring) {
        // A new identity for each request, the latest the provider gave.
        assert.equal(new Set(used).size, 3, `${used}`);
        assert.equal(used[2], `AKID${asked}`);
      } else {
        assert.deepEqual(used, ["AKID1", "AKID1", "AKID1"]);
        assert.equal(asked, 1);
      }
      client.destroy();
    }
  } finally {
    await cap.close();
  }
});
