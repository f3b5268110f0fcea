/**
 * Read-mode hits over real sockets: an expired `exp:` URL is left to imgproxy without asking
 * the store; an object whose length is not the one recorded at write is a miss; a store that
 * stalls mid-body never hangs the client (a small hit goes to imgproxy instead, a large one is
 * cut so the client cannot take it for complete).
 */
import assert from "node:assert/strict";
import { expired } from "../lib/hit.ts";
import { objectKey } from "../lib/key.ts";
import { LocalStore } from "../lib/store/local.ts";
import type { S3Store } from "../lib/store/s3.ts";
import type { Store } from "../lib/store/store.ts";
import { imageBytes, rawRequest } from "./support/fake_imgproxy.ts";
import { serveInProcess } from "./support/in_process.ts";
import { readUntilClosed, serveRaw } from "./support/net_fs.ts";
import { s3StoreAt, startS3 } from "./support/s3.ts";

const NOW = Date.UTC(2026, 10, 29) / 1000;

Deno.test("expired(): exp: and expires: options read as imgproxy reads them", () => {
  const rows: [string, boolean][] = [
    [`/sig/exp:${NOW - 1}/plain/http://x/a.jpg`, true],
    [`/sig/rs:fit:10:10/expires:${NOW - 100}/plain/http://x/a.jpg`, true],
    [`/sig/exp:${NOW + 100}/plain/http://x/a.jpg`, false],
    [`/sig/exp:${NOW}/plain/http://x/a.jpg`, false], // not before now
    ["/sig/exp:0/plain/http://x/a.jpg", false], // 0: no expiry
    ["/sig/exp:-5/plain/http://x/a.jpg", false],
    [`/sig/exp:+${NOW - 1}/plain/http://x/a.jpg`, true],
    ["/sig/exp:abc/plain/http://x/a.jpg", false], // imgproxy refuses it anyway
    [`/sig/exp:${NOW - 1}:2/plain/http://x/a.jpg`, false], // too many arguments: ditto
    [`/sig/rs:fit:1:1/plain/http://x/exp:${NOW - 1}/a.jpg`, false], // in the source
    [`/sig/plain/exp:${NOW - 1}`, false],
    [`/exp:${NOW - 1}/rs:fit:1:1/plain/http://x/a.jpg`, false], // that is the signature
    [`/sig/EXP:${NOW - 1}/plain/http://x/a.jpg`, false], // option names are case-sensitive
    [`/sig/exp:${NOW - 1}/aHR0cDovL3gvYS5qcGc.png?x=1`, true],
    [`/sig/rs:fit:1:1/aHR0cDovL3gvYS5qcGc.png?exp:${NOW - 1}`, false], // query ignored
  ];
  for (const [target, want] of rows) assert.equal(expired(target, NOW * 1000), want, target);
});

/** A read-mode proxy over `store`, with the stand-in imgproxy behind it. */
function readMode(store: Store, env: Record<string, string> = {}) {
  return serveInProcess({ CACHE_MODE: "read", CACHE_DIR: "/nonexistent", ...env }, { store });
}

const META = { contentType: "image/jpeg", cacheControl: "max-age=60", ifAbsent: true };

Deno.test("a hit past its exp: goes to imgproxy, the store is not asked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hit-exp-" });
  let opened = 0;
  class CountingStore extends LocalStore {
    override open(key: string) {
      opened++;
      return super.open(key);
    }
  }
  const store = new CountingStore(dir);
  const h = await readMode(store);
  try {
    const past = Math.floor(Date.now() / 1000) - 60;
    const path = `/_/exp:${past}/rs:fit:10:10/plain/http://example.com/a.jpg`;
    await store.put(objectKey(path, "", ""), new Uint8Array([1, 2, 3]), META);
    const res = await rawRequest(h.port, `GET ${path} HTTP/1.1`);
    assert.notEqual(res.headers.get("x-cache"), "HIT");
    assert.equal(res.headers.get("x-cache-lookup"), "expired");
    assert.equal(opened, 0, "the store was asked");
    assert.deepEqual(h.fake.requests.map((r) => r.target), [path]);
    assert.equal(h.app.hitStats.expired, 1);
    // The same path with a future expiry is a hit.
    const future = path.replace(`exp:${past}`, `exp:${past + 3600}`);
    await store.put(objectKey(future, "", ""), new Uint8Array([1, 2, 3]), META);
    const hit = await rawRequest(h.port, `GET ${future} HTTP/1.1`);
    assert.equal(hit.headers.get("x-cache"), "HIT");
    assert.deepEqual(hit.body, new Uint8Array([1, 2, 3]));
  } finally {
    await h.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a truncated local object is a miss, logged and counted, never a 200 HIT", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hit-trunc-" });
  const store = new LocalStore(dir);
  const h = await readMode(store);
  try {
    const path = "/_/rs:fit:10:10/plain/http://example.com/t.jpg";
    const key = objectKey(path, "", "");
    await store.put(key, imageBytes("whole", 5000), META);
    await Deno.truncate(`${dir}/${key}`, 1000);
    const res = await rawRequest(h.port, `GET ${path} HTTP/1.1`);
    assert.equal(res.status, 200);
    assert.notEqual(res.headers.get("x-cache"), "HIT");
    assert.equal(res.headers.get("x-cache-lookup"), "mismatch");
    assert.deepEqual(res.body, imageBytes(`${path}|jpeg`)); // imgproxy's answer
    assert.equal(h.app.hitStats.mismatched, 1);
    assert.equal(h.logger.find("Stored object is not what was written").length, 1);
    // Read again later (nothing remembered): still a miss.
    const fresh = new LocalStore(dir);
    const h2 = await readMode(fresh);
    try {
      const again = await rawRequest(h2.port, `GET ${path} HTTP/1.1`);
      assert.equal(again.headers.get("x-cache-lookup"), "mismatch");
    } finally {
      await h2.close();
    }
  } finally {
    await h.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a foreign S3 object (length not the recorded one) is a miss", async () => {
  const s3 = await startS3();
  try {
    const store = s3StoreAt(s3.endpoint, s3.bucket);
    const h = await readMode(store);
    try {
      const good = "/_/rs:fit:10:10/plain/http://example.com/good.jpg";
      await store.put(objectKey(good, "", ""), imageBytes("good", 3000), META);
      const hit = await rawRequest(h.port, `GET ${good} HTTP/1.1`);
      assert.equal(hit.headers.get("x-cache"), "HIT");
      assert.deepEqual(hit.body, imageBytes("good", 3000));
      // Another writer put other bytes under the key, keeping our recorded length.
      const bad = "/_/rs:fit:10:10/plain/http://example.com/bad.jpg";
      await store.put(objectKey(bad, "", ""), imageBytes("bad", 3000), META);
      const { PutObjectCommand } = await import("@aws-sdk/client-s3");
      await store.client.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: objectKey(bad, "", ""),
          Body: new Uint8Array(10),
          ContentType: "image/jpeg",
          Metadata: { length: "3000" },
        }),
      );
      const res = await rawRequest(h.port, `GET ${bad} HTTP/1.1`);
      assert.equal(res.headers.get("x-cache-lookup"), "mismatch");
      assert.deepEqual(res.body, imageBytes(`${bad}|jpeg`));
      assert.equal(h.app.hitStats.mismatched, 1);
    } finally {
      await h.close();
    }
  } finally {
    await s3.stop();
  }
});

/**
 * An S3 endpoint that answers every GetObject with `size` bytes announced and `sent` of them
 * sent, then stalls until closed (or, with `hangUp`, closes the connection at once).
 */
function stallingS3(size: number, sent: number, hangUp = false) {
  const server = serveRaw(async (conn) => {
    const buf = new Uint8Array(65536);
    let head = "";
    while (!head.includes("\r\n\r\n")) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return;
      head += new TextDecoder().decode(buf.subarray(0, n));
    }
    const headers = "HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\n" +
      `content-length: ${size}\r\nx-amz-meta-length: ${size}\r\n\r\n`;
    await conn.write(new TextEncoder().encode(headers)).catch(() => {});
    await conn.write(new Uint8Array(sent).fill(7)).catch(() => {});
    if (hangUp) conn.close();
  });
  return { endpoint: `http://127.0.0.1:${server.port}`, close: () => server.close() };
}

function stalledStore(endpoint: string): S3Store {
  return s3StoreAt(endpoint, "b");
}

Deno.test("a small hit whose store stalls mid-body is answered by imgproxy instead", async () => {
  const s3 = stallingS3(10_000, 4_000);
  const h = await readMode(stalledStore(s3.endpoint), { STORE_LOOKUP_TIMEOUT_MS: "300" });
  try {
    const path = "/_/rs:fit:10:10/plain/http://example.com/small.jpg";
    const res = await rawRequest(h.port, `GET ${path} HTTP/1.1`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-cache-lookup"), "error");
    assert.deepEqual(res.body, imageBytes(`${path}|jpeg`));
  } finally {
    await h.close();
    await s3.close();
  }
});

Deno.test("a small hit whose store hangs up mid-body is answered by imgproxy instead, never cut short", async () => {
  const s3 = stallingS3(10_000, 4_000, true);
  const h = await readMode(stalledStore(s3.endpoint));
  try {
    const path = "/_/rs:fit:10:10/plain/http://example.com/gone.jpg";
    const res = await rawRequest(h.port, `GET ${path} HTTP/1.1`);
    assert.equal(res.status, 200);
    assert.notEqual(res.headers.get("x-cache"), "HIT");
    assert.equal(res.headers.get("x-cache-lookup"), "error");
    assert.deepEqual(res.body, imageBytes(`${path}|jpeg`));
    assert.equal(h.logger.find("Store lookup failed, asking imgproxy").length, 1);
  } finally {
    await h.close();
    await s3.close();
  }
});

Deno.test("a large hit whose store stalls mid-body is cut after the body timeout, and logged", async () => {
  const s3 = stallingS3(600_000, 100_000);
  const h = await readMode(stalledStore(s3.endpoint), { STORE_BODY_TIMEOUT_IN_SEC: "1" });
  try {
    const path = "/_/rs:fit:10:10/plain/http://example.com/large.jpg";
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port });
    await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
    const { text, received, closed } = await readUntilClosed(conn, 20_000);
    assert.ok(closed, "the client was left hanging");
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(text, /content-length: 600000\r\n/i);
    assert.ok(received < 600_000, `received ${received}: the cut answer looked complete`);
    assert.equal(h.app.hitStats.cut, 1);
    assert.equal(h.logger.find("Hit cut: the store stopped sending").length, 1);
  } finally {
    await h.close();
    await s3.close();
  }
});
