/**
 * imgproxy's own behaviour the proxy depends on, through the whole stack (entrypoint.sh, the
 * proxy with its exact permissions, versitygw): output formats negotiated from `Accept` and
 * stored per format, `Cache-Control` passed through from the source, `expires:`, source errors,
 * fallback images, and a processed image larger than UPLOAD_MAX_OBJECT_BYTES. They hold the proxy to the real thing, so they run against real
 * imgproxy only; CI always has it (E2E_EXPECT_IMGPROXY), elsewhere they are reported as ignored.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { banner, equalBytes, FIXTURES, get, imageInfo, keyOf } from "./support/harness.ts";
import { BUCKET, Stack } from "./support/stack.ts";

const IMG = await banner("real_imgproxy_test.ts");
const now = () => Math.floor(Date.now() / 1000);

/** Requests a fresh image and waits until it is stored: everything queued before has landed. */
async function barrier(stack: Stack, width: number): Promise<string> {
  const path = `/insecure/rs:fit:${width}:${width}/plain/${stack.source("logo.png")}@png`;
  const res = await get(stack.base + path);
  assert.equal(res.status, 200, `barrier request failed: ${res.status}`);
  await stack.s3.waitForObject(BUCKET, keyOf(path));
  return keyOf(path);
}

const maxAge = (cc: string | null | undefined) => Number(/max-age=(\d+)/.exec(cc ?? "")?.[1]);

Deno.test({
  name:
    `real imgproxy: Cache-Control passthrough stored as sent, no-store not stored, a source's 304 not stored, expires: shortens max-age, expired and source errors not stored, larger than UPLOAD_MAX_OBJECT_BYTES served but not stored [${IMG.label}]`,
  ignore: !IMG.real,
  fn: async (t) => {
    const stack = await Stack.start({
      env: { IMGPROXY_CACHE_CONTROL_PASSTHROUGH: "true", UPLOAD_MAX_OBJECT_BYTES: "4000" },
    });
    const stored: string[] = [];
    const notStored: string[] = [];
    try {
      await t.step(
        "the source's Cache-Control is what imgproxy sends and what is stored",
        async () => {
          const path = `/insecure/rs:fit:16:16/plain/${
            stack.source("cache-control/777/logo.png")
          }@png`;
          const res = await get(stack.base + path);
          assert.equal(res.status, 200);
          assert.equal(res.headers.get("cache-control"), "max-age=777, public");
          assert.equal(res.headers.get("x-cache"), "MISS");
          const obj = await stack.s3.waitForObject(BUCKET, keyOf(path));
          assert.equal(obj.cacheControl, "max-age=777, public");
          assert.ok(equalBytes(obj.body, res.body));
          stored.push(keyOf(path));
        },
      );

      await t.step("a source's no-store reaches the client and nothing is stored", async () => {
        const path = `/insecure/rs:fit:16:16/plain/${
          stack.source("cache-control/no-store/logo.png")
        }@png`;
        const res = await get(stack.base + path);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("cache-control"), "no-store");
        assert.equal(res.headers.get("x-cache"), "BYPASS; reason=cache-control");
        notStored.push(keyOf(path));
      });

      await t.step(
        "expires: in 10 minutes → imgproxy's shortened max-age, stored with it",
        async () => {
          const path = `/insecure/exp:${now() + 600}/rs:fit:18:18/plain/${
            stack.source("logo.png")
          }@png`;
          const res = await get(stack.base + path);
          assert.equal(res.status, 200);
          const age = maxAge(res.headers.get("cache-control"));
          assert.ok(age > 540 && age <= 600, `max-age ${age}`);
          const obj = await stack.s3.waitForObject(BUCKET, keyOf(path));
          assert.equal(obj.cacheControl, res.headers.get("cache-control"));
          stored.push(keyOf(path));
        },
      );

      await t.step(
        "a conditional request the source answers with 304 → 304, not stored",
        async () => {
          const path = `/insecure/rs:fit:16:16/plain/${stack.source("validators/logo.png")}@png`;
          const res = await get(stack.base + path, {
            headers: { "if-none-match": '"v1-logo.png"' },
          });
          assert.equal(res.status, 304);
          assert.equal(res.body.byteLength, 0);
          assert.equal(res.headers.get("etag"), '"v1-logo.png"');
          assert.match(res.headers.get("x-cache") ?? "", /^BYPASS; reason=/);
          notStored.push(keyOf(path));
        },
      );

      await t.step("an expired exp: → 404, not stored", async () => {
        const path = `/insecure/exp:${now() - 60}/rs:fit:18:18/plain/${
          stack.source("logo.png")
        }@png`;
        const res = await get(stack.base + path);
        assert.equal(res.status, 404);
        assert.equal(new TextDecoder().decode(res.body), "Invalid URL");
        notStored.push(keyOf(path));
      });

      await t.step("source 404 → 404, source 500 → 502, neither stored", async () => {
        for (const [name, status] of [["missing.png", 404], ["status/500/a.png", 502]] as const) {
          const path = `/insecure/rs:fit:16:16/plain/${stack.source(name)}@png`;
          const res = await get(stack.base + path);
          assert.equal(res.status, status, name);
          assert.equal(res.headers.get("x-cache"), "BYPASS; reason=status");
          notStored.push(keyOf(path));
        }
      });

      await t.step(
        "a processed image larger than UPLOAD_MAX_OBJECT_BYTES is served whole, not stored",
        async () => {
          const path = `/insecure/rs:fit:400:300/el:1/plain/${stack.source("photo.jpg")}@png`;
          const res = await get(stack.base + path);
          assert.equal(res.status, 200);
          assert.deepEqual(imageInfo(res.body), { format: "png", width: 400, height: 300 });
          assert.ok(res.body.byteLength > 4000, `only ${res.body.byteLength} bytes`);
          assert.equal(res.headers.get("content-length"), String(res.body.byteLength));
          assert.equal(res.headers.get("x-cache"), "BYPASS; reason=too-large");
          notStored.push(keyOf(path));
        },
      );

      await t.step(
        "only the storable answers were stored; nothing else was even attempted",
        async () => {
          const sentinel = await barrier(stack, 17);
          assert.deepEqual(await stack.s3.keys(BUCKET), [...stored, sentinel].sort());
          for (const key of notStored) assert.deepEqual(await stack.s3.puts(BUCKET, key), [], key);
        },
      );
    } finally {
      await stack.close();
    }
  },
});

Deno.test({
  name:
    `real imgproxy: a fallback image for a failed source is served with FALLBACK_IMAGE_TTL and never stored [${IMG.label}]`,
  ignore: !IMG.real,
  fn: async () => {
    const logo = await Deno.readFile(`${FIXTURES}/logo.png`);
    const stack = await Stack.start({
      env: {
        IMGPROXY_FALLBACK_IMAGE_DATA: Buffer.from(logo).toString("base64"),
        IMGPROXY_FALLBACK_IMAGE_TTL: "60",
      },
    });
    try {
      const missing = `/insecure/rs:fit:20:20/plain/${stack.source("missing.jpg")}@png`;
      const res = await get(stack.base + missing);
      // imgproxy answers a failed download with the placeholder and 200: only its TTL tells.
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "image/png");
      assert.equal(imageInfo(res.body).format, "png");
      assert.equal(res.headers.get("cache-control"), "max-age=60, public");
      assert.equal(res.headers.get("x-cache"), "BYPASS; reason=fallback-image");
      const good = `/insecure/rs:fit:20:20/plain/${stack.source("photo.jpg")}@png`;
      const ok = await get(stack.base + good);
      assert.equal(ok.headers.get("x-cache"), "MISS");
      assert.equal(ok.headers.get("cache-control"), "max-age=31536000, public");
      await stack.s3.waitForObject(BUCKET, keyOf(good));
      const sentinel = await barrier(stack, 19);
      assert.deepEqual(await stack.s3.keys(BUCKET), [keyOf(good), sentinel].sort());
      assert.deepEqual(await stack.s3.puts(BUCKET, keyOf(missing)), []);
    } finally {
      await stack.close();
    }
  },
});
/** The format the key's variant suffix names ("" for the suffix-less key). */
function formatOfKey(key: string, hash: string): string {
  assert.ok(key.startsWith(hash), `${key} is not a variant of ${hash}`);
  return key.slice(hash.length).replace(/^-/, "");
}

Deno.test({
  name:
    `real imgproxy: IMGPROXY_AUTO_WEBP/AVIF with variants → one object per decided format (browsers' Accept headers share), each holding the format its key names [${IMG.label}]`,
  ignore: !IMG.real,
  fn: async () => {
    const stack = await Stack.start({
      env: { IMGPROXY_AUTO_WEBP: "true", IMGPROXY_AUTO_AVIF: "true" }, // variants are on by default
    });
    try {
      const path = `/insecure/rs:fit:32:24/plain/${stack.source("photo.jpg")}`;
      // Browsers' Accept headers (image requests): Chrome's and Firefox's get AVIF, Safari's WebP;
      // clients with the same outcome share one object, named by that format.
      const accepts: [string, string][] = [
        ["image/avif,image/*", "avif"],
        ["image/webp,image/*", "webp"],
        ["image/png,image/*", "jpeg"],
        ["image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "avif"],
        ["image/avif,image/webp,*/*", "avif"],
        ["image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5", "webp"],
      ];
      // One at a time: this imgproxy build crashes under concurrent WebP encoding.
      const answers = [];
      for (const [accept, format] of accepts) {
        const res = await get(stack.base + path, { headers: { accept } });
        assert.equal(res.status, 200, accept);
        assert.equal(res.headers.get("vary"), "Accept");
        assert.equal(res.headers.get("content-type"), `image/${format}`, accept);
        assert.equal(imageInfo(res.body).format, format, accept);
        answers.push(res);
      }
      // Every upload has landed once the stack has stopped (its shutdown drains them).
      stack.proc.signal("SIGTERM");
      assert.equal((await stack.proc.wait(30_000)).code, 0, stack.proc.output());
      const drained = stack.proc.lines.find((l) => /Uploads drained/.test(l)) ?? "";
      assert.match(drained, /failed=0 lost=0/, stack.proc.output());
      const hash = keyOf(path);
      const keys = await stack.s3.keys(BUCKET);
      assert.deepEqual(
        keys,
        [hash, `${hash}-avif`, `${hash}-webp`].sort(),
        "one object per decided format, named by it",
      );
      for (const key of keys) {
        const obj = (await stack.s3.get(BUCKET, key))!;
        const format = imageInfo(obj.body).format;
        const named = formatOfKey(key, hash);
        // The suffix-less key holds what a client without avif/webp in Accept gets.
        assert.equal(named === "" ? "jpeg" : named, format, `${key} holds ${format}`);
        assert.equal(obj.contentType, `image/${format}`, key);
        assert.ok(answers.some((a) => equalBytes(a.body, obj.body)), `${key}: bytes nobody got`);
      }
    } finally {
      await stack.close();
    }
  },
});
