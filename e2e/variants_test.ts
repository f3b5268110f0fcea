/**
 * Format negotiation cached correctly by default, on the whole stack (entrypoint.sh, imgproxy,
 * versitygw) with imgproxy's AUTO_WEBP only: clients whose Accept differs but who get the same
 * format share one object named by that format; an answer in a URL's own format is never
 * stored under a negotiated format's key; read mode looks up the format imgproxy will decide
 * on before asking it. Requests are sequential (WebP under concurrency crashes this imgproxy
 * build).
 */
import assert from "node:assert/strict";
import { banner, equalBytes, get, imageInfo, keyOf } from "./support/harness.ts";
import { BUCKET, Stack } from "./support/stack.ts";

const IMG = await banner("variants_test.ts");
const CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
const OLDER = "image/webp,*/*";

// The stand-in does not transcode (it answers the source's bytes and type): these tests need
// imgproxy's own decision, so they run on real imgproxy only.
const REAL_ONLY = { ignore: !IMG.real };

Deno.test(
  `variants: AUTO_WEBP only, default settings → Chrome's and an older browser's Accept share one md5-webp; a URL's own format stays under md5 [${IMG.label}]`,
  REAL_ONLY,
  async () => {
    const stack = await Stack.start({ env: { IMGPROXY_AUTO_WEBP: "true" } });
    try {
      const path = `/insecure/rs:fit:32:24/plain/${stack.source("photo.jpg")}`;
      const chrome = await get(stack.base + path, { headers: { accept: CHROME } });
      const older = await get(stack.base + path, { headers: { accept: OLDER } });
      for (const res of [chrome, older]) {
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("content-type"), "image/webp");
        assert.match(res.headers.get("vary") ?? "", /accept/i);
      }
      assert.equal(imageInfo(chrome.body).format, "webp");
      const stored = await stack.s3.waitForObject(BUCKET, keyOf(path, "-webp"));
      assert.ok(equalBytes(stored.body, chrome.body));
      // The URL names PNG and nothing is enforced: a webp-taking client gets PNG, which is the
      // answer every client gets, so it goes under the plain key (never under md5-webp).
      const named = `/insecure/rs:fit:32:24/plain/${stack.source("photo.jpg")}@png`;
      const png = await get(stack.base + named, { headers: { accept: CHROME } });
      assert.equal(png.headers.get("content-type"), "image/png");
      const storedPng = await stack.s3.waitForObject(BUCKET, keyOf(named));
      assert.ok(equalBytes(storedPng.body, png.body));
      // Drain, then count: exactly one object per format, one PUT each.
      stack.proc.signal("SIGTERM");
      assert.equal((await stack.proc.wait(30_000)).code, 0, stack.proc.output());
      assert.deepEqual(
        await stack.s3.keys(BUCKET),
        [keyOf(path, "-webp"), keyOf(named)].sort(),
      );
      const puts = (await stack.s3.log()).filter((l) => l.op === "s3_PutObject");
      assert.equal(puts.length, 2, JSON.stringify(puts));
    } finally {
      await stack.close();
    }
  },
);

Deno.test(
  `variants: CACHE_MODE=read looks up the format imgproxy will decide on → HIT for another Accept of the same format [${IMG.label}]`,
  REAL_ONLY,
  async () => {
    const stack = await Stack.start({ env: { IMGPROXY_AUTO_WEBP: "true", CACHE_MODE: "read" } });
    try {
      const path = `/insecure/rs:fit:30:20/plain/${stack.source("photo.jpg")}`;
      const first = await get(stack.base + path, { headers: { accept: OLDER } });
      assert.equal(first.headers.get("x-cache"), "MISS");
      await stack.s3.waitForObject(BUCKET, keyOf(path, "-webp"));
      // Chrome also takes AVIF, which this imgproxy does not produce: same object.
      const hit = await get(stack.base + path, { headers: { accept: CHROME } });
      assert.equal(hit.headers.get("x-cache"), "HIT");
      assert.equal(hit.headers.get("content-type"), "image/webp");
      assert.equal(hit.headers.get("vary"), "Accept");
      assert.ok(equalBytes(hit.body, first.body));
      // A client that takes no negotiated format is not given the webp object.
      const plain = await get(stack.base + path, { headers: { accept: "image/png,*/*" } });
      assert.equal(plain.headers.get("x-cache"), "MISS");
      assert.notEqual(plain.headers.get("content-type"), "image/webp");
    } finally {
      await stack.close();
    }
  },
);
