/**
 * Conditional hits: a read-mode hit carries a strong ETag and Last-Modified, and a request whose
 * If-None-Match or If-Modified-Since matches gets a 304 without a body and without imgproxy
 * being asked. Over real sockets, with the local store and with an S3 server.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createApp } from "../lib/app.ts";
import { notModified } from "../lib/conditional.ts";
import { decodeImageHeaders, encodeImageHeaders, imageHeaders } from "../lib/image_headers.ts";
import { loadConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { startFakeImgproxy } from "./support/fake_imgproxy.ts";
import { S3RVER_CREDENTIALS, startS3 } from "./support/s3.ts";
import { S3Client } from "@aws-sdk/client-s3";
import { s3ClientConfig, S3Store } from "../lib/store/s3.ts";

Deno.test("notModified() follows RFC 9110: weak comparison for If-None-Match, which overrides the date", () => {
  const tag = '"abc"';
  const date = "Sun, 29 Nov 2026 10:00:00 GMT";
  const rows: [Record<string, string>, string | undefined, string | undefined, boolean][] = [
    [{}, tag, date, false],
    [{ "if-none-match": '"abc"' }, tag, date, true],
    [{ "if-none-match": 'W/"abc"' }, tag, date, true],
    [{ "if-none-match": '"x", "abc"' }, tag, date, true],
    [{ "if-none-match": '"x,y", W/"abc"' }, tag, date, true],
    [{ "if-none-match": "*" }, tag, date, true],
    [{ "if-none-match": '"other"' }, tag, date, false],
    [{ "if-none-match": '"abc"' }, undefined, date, false],
    // A tag list that does not match wins over a date that would.
    [{ "if-none-match": '"other"', "if-modified-since": date }, tag, date, false],
    [{ "if-modified-since": date }, tag, date, true],
    [{ "if-modified-since": "Sun, 29 Nov 2026 11:00:00 GMT" }, tag, date, true],
    [{ "if-modified-since": "Sun, 29 Nov 2026 09:59:59 GMT" }, tag, date, false],
    [{ "if-modified-since": "not a date" }, tag, date, false],
    [{ "if-modified-since": date }, tag, undefined, false],
  ];
  for (const [headers, etag, lastModified, expected] of rows) {
    assert.equal(
      notModified(new Headers(headers), etag, lastModified),
      expected,
      JSON.stringify(headers),
    );
  }
});

const IMAGE = "/insecure/rs:fit:10:10/plain/http://example.com/cat.jpg";

async function conditionalHits(
  vars: Record<string, string>,
  expectEtag: (b: Uint8Array) => string,
  s3 = false,
) {
  const fake = startFakeImgproxy();
  const dir = await Deno.makeTempDir({ prefix: "conditional-" });
  const env: Record<string, string> = {
    IMGPROXY_URL: fake.url,
    CACHE_DIR: dir,
    CACHE_MODE: "read",
    ...vars,
  };
  const logger = new MemoryLogger();
  const config = loadConfig((n) => env[n]);
  const store = s3 && config.store.kind === "s3"
    ? new S3Store(
      config.store,
      new S3Client({ ...s3ClientConfig(config.store), credentials: S3RVER_CREDENTIALS }),
    )
    : undefined;
  const app = await createApp(config, logger, { store });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  const url = `http://127.0.0.1:${server.addr.port}${IMAGE}`;
  try {
    const miss = await fetch(url);
    const bytes = await miss.bytes();
    assert.equal(miss.headers.get("x-cache"), "MISS");
    await app.uploader.drain(5000);
    const hit = await fetch(url);
    assert.deepEqual(await hit.bytes(), bytes);
    assert.equal(
      hit.headers.get("x-cache"),
      "HIT",
      `${hit.headers.get("x-cache-lookup")} ${logger.lines.join("\n")}`,
    );
    // The headers imgproxy sent that describe the image come back with the hit.
    for (const name of ["content-disposition", "content-security-policy"]) {
      assert.ok(miss.headers.get(name) !== null, `the stand-in sends ${name}`);
      assert.equal(hit.headers.get(name), miss.headers.get(name), name);
    }
    assert.equal(hit.headers.get("x-request-id"), null, "not about the image: not stored");
    const etag = hit.headers.get("etag");
    const lastModified = hit.headers.get("last-modified");
    assert.equal(etag, expectEtag(bytes));
    assert.ok(lastModified !== null && !Number.isNaN(Date.parse(lastModified)), lastModified!);
    const asked = fake.requests.length;

    for (
      const headers of [
        { "if-none-match": etag! } as Record<string, string>,
        { "if-none-match": `"stale", W/${etag}` },
        { "if-modified-since": lastModified! },
      ]
    ) {
      const res = await fetch(url, { headers });
      assert.equal(res.status, 304, JSON.stringify(headers));
      assert.deepEqual(await res.bytes(), new Uint8Array(0));
      assert.equal(res.headers.get("etag"), etag);
      assert.equal(res.headers.get("last-modified"), lastModified);
      assert.equal(res.headers.get("cache-control"), hit.headers.get("cache-control"));
      assert.equal(res.headers.get("x-cache"), "HIT");
    }
    for (
      const headers of [
        { "if-none-match": '"stale"' } as Record<string, string>,
        { "if-modified-since": new Date(Date.parse(lastModified!) - 60_000).toUTCString() },
      ]
    ) {
      const res = await fetch(url, { headers });
      assert.equal(res.status, 200, JSON.stringify(headers));
      assert.deepEqual(await res.bytes(), bytes);
    }
    assert.equal(fake.requests.length, asked, "imgproxy was not asked for any of them");
  } finally {
    await server.shutdown();
    await app.uploader.drain(1000);
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const md5Tag = (b: Uint8Array) => `"${createHash("md5").update(b).digest("hex")}"`;

Deno.test("read-mode hits from the local store: imgproxy's image headers, ETag from the bytes, Last-Modified, 304 on a match", async () => {
  await conditionalHits({}, md5Tag);
});

Deno.test("read-mode hits from an S3 store: imgproxy's image headers, the object's ETag and Last-Modified, 304 on a match", async () => {
  const s3 = await startS3();
  try {
    // A single-part upload's S3 ETag is the MD5 of its bytes.
    await conditionalHits({ ...s3.env, S3_CONDITIONAL_WRITE: "false" }, md5Tag, true);
  } finally {
    await s3.stop();
  }
});

Deno.test("image headers: only the listed ones are kept, and survive S3's ASCII-only metadata", () => {
  const kept = imageHeaders(
    new Headers({
      "content-disposition": 'inline; filename="caf\u00e9 1.jpg"',
      "content-security-policy": "script-src 'none'",
      "x-request-id": "abc",
      server: "imgproxy",
      "content-type": "image/jpeg",
    }),
  )!;
  assert.deepEqual(Object.keys(kept).sort(), ["content-disposition", "content-security-policy"]);
  assert.equal(imageHeaders(new Headers({ "content-type": "image/png" })), undefined);
  const encoded = encodeImageHeaders(kept);
  assert.match(encoded, /^[\x21-\x7e]+$/, "US-ASCII, no spaces");
  assert.deepEqual(decodeImageHeaders(encoded), kept);
  // Metadata naming other headers, or not JSON, adds nothing.
  assert.deepEqual(
    decodeImageHeaders(encodeURIComponent(JSON.stringify({ "set-cookie": "a=b", link: "<x>" }))),
    { link: "<x>" },
  );
  assert.equal(decodeImageHeaders("%E0%A4%A"), undefined);
  assert.equal(decodeImageHeaders(null), undefined);
});
