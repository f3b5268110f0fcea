/**
 * The real stack through entrypoint.sh, started the way the Docker image starts it: imgproxy
 * (real when a binary is available, else the stand-in; the banner and every test name say
 * which), the proxy via bin/start with its exact permission flags, versitygw as S3.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  banner,
  baseEnv,
  chooseImgproxy,
  equalBytes,
  FIXTURES,
  freePort,
  get,
  imageInfo,
  keyOf,
  ROOT,
} from "./support/harness.ts";
import { sign } from "./support/stand_in_imgproxy.ts";
import { BUCKET, Stack } from "./support/stack.ts";

const IMG = await banner("entrypoint_test.ts");
const photo = await Deno.readFile(`${FIXTURES}/photo.jpg`);
const logo = await Deno.readFile(`${FIXTURES}/logo.png`);

/** Requests a fresh image and waits until it is stored: everything queued before has landed. */
async function barrier(stack: Stack, width: number): Promise<string> {
  const path = `/insecure/rs:fit:${width}:${width}/plain/${stack.source("logo.png")}@png`;
  const res = await get(stack.base + path);
  assert.equal(res.status, 200, `barrier request failed: ${res.status}`);
  const key = keyOf(path);
  await stack.s3.waitForObject(BUCKET, key);
  return key;
}

for (const addressing of ["path", "virtual"] as const) {
  Deno.test(`entrypoint: resize → image stored byte-identical; HEAD, OPTIONS, missing source store nothing; 20 concurrent → one PUT; HEALTHCHECK [${IMG.label}, ${addressing === "path" ? "path-style" : "virtual-hosted"} S3]`, async (t) => {
    // Virtual-hosted: reads go through the bucket's host too (CACHE_MODE=read looks up first).
    const env: Record<string, string> = addressing === "virtual" ? { CACHE_MODE: "read" } : {};
    const stack = await Stack.start({ addressing, env });
    try {
      const path = `/insecure/rs:fit:32:24/plain/${stack.source("photo.jpg")}@png`;
      await t.step("a resize request returns the image and stores the same bytes", async () => {
        const res = await get(stack.base + path);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("x-cache"), "MISS");
        if (IMG.real) {
          assert.equal(res.headers.get("content-type"), "image/png");
          assert.deepEqual(imageInfo(res.body), { format: "png", width: 32, height: 24 });
        } else {
          // The stand-in does not process: it answers with the source bytes, and says so.
          assert.equal(res.headers.get("x-imgproxy-stand-in"), "source bytes, not processed");
          assert.ok(equalBytes(res.body, photo), "stand-in should return the source bytes");
        }
        const obj = await stack.s3.waitForObject(BUCKET, keyOf(path));
        assert.ok(equalBytes(obj.body, res.body), "stored bytes differ from what the client got");
        assert.equal(obj.contentType, res.headers.get("content-type"));
        assert.equal(obj.cacheControl, res.headers.get("cache-control"));
        assert.match(obj.cacheControl ?? "", /max-age=\d+/);
        if (addressing === "virtual") {
          const hit = await get(stack.base + path);
          assert.equal(hit.headers.get("x-cache"), "HIT");
          assert.ok(equalBytes(hit.body, res.body), "the hit differs from what was stored");
        }
      });

      await t.step("HEAD, OPTIONS and a missing source store nothing", async () => {
        const other = `/insecure/rs:fit:20:20/plain/${stack.source("photo.jpg")}@png`;
        for (const method of ["HEAD", "OPTIONS"]) {
          const res = await get(stack.base + other, { method });
          assert.equal(res.status, 200, `${method} status`);
          // No image: imgproxy 4.0.12 answers HEAD/OPTIONS with text/plain " " (1 byte) and
          // `Cache-Control: max-age=..., public`, which is exactly why the method rule exists.
          assert.ok(res.body.byteLength <= 1, `${method} body has ${res.body.byteLength} bytes`);
          assert.match(res.headers.get("x-cache") ?? "", /^BYPASS; reason=method/);
        }
        const missing = `/insecure/rs:fit:20:20/plain/${stack.source("missing.jpg")}@png`;
        const res = await get(stack.base + missing);
        assert.equal(res.status, 404);
        const sentinel = await barrier(stack, 17);
        assert.deepEqual(await stack.s3.keys(BUCKET), [keyOf(path), sentinel].sort());
        assert.equal((await stack.s3.puts(BUCKET, keyOf(other))).length, 0);
        assert.equal((await stack.s3.puts(BUCKET, keyOf(missing))).length, 0);
      });

      await t.step("20 concurrent identical requests → one object, one PUT", async () => {
        const p = `/insecure/rs:fill:16:16/plain/${stack.source("logo.png")}@png`;
        const answers = await Promise.all(
          Array.from({ length: 20 }, () => get(stack.base + p)),
        );
        for (const a of answers) {
          assert.equal(a.status, 200);
          assert.ok(equalBytes(a.body, answers[0]!.body), "concurrent answers differ");
        }
        if (IMG.real) {
          assert.deepEqual(imageInfo(answers[0]!.body), { format: "png", width: 16, height: 16 });
        } else assert.ok(equalBytes(answers[0]!.body, logo));
        const obj = await stack.s3.waitForObject(BUCKET, keyOf(p));
        assert.ok(equalBytes(obj.body, answers[0]!.body));
        await barrier(stack, 19);
        const puts = await stack.s3.puts(BUCKET, keyOf(p));
        assert.equal(puts.length, 1, `expected one PUT, versitygw logged ${puts.length}`);
        assert.equal(puts[0]!.status, 200);
      });

      await t.step("the Dockerfile's HEALTHCHECK (imgproxy health) probes the proxy", async () => {
        // In the container IMGPROXY_BIND is the proxy's address, so `imgproxy health` asks the
        // proxy for /health, which the proxy forwards to imgproxy.
        const ok = await new Deno.Command(IMG.bin, {
          args: ["health"],
          env: { IMGPROXY_BIND: stack.proxyBind },
          stdout: "null",
          stderr: "null",
        }).output();
        assert.equal(ok.code, 0, "imgproxy health should pass against the running proxy");
      });
    } finally {
      await stack.close();
    }
  });
}

Deno.test(`entrypoint: IMGPROXY_KEY/SALT — signed URL served and stored, bad signature 403 and not stored [${IMG.label}]`, async () => {
  const key = "0123456789abcdef0123456789abcdef";
  const salt = "fedcba9876543210fedcba9876543210";
  const stack = await Stack.start({ env: { IMGPROXY_KEY: key, IMGPROXY_SALT: salt } });
  try {
    const rest = `/rs:fit:24:24/plain/${stack.source("photo.jpg")}@png`;
    const signature = sign(Buffer.from(key, "hex"), Buffer.from(salt, "hex"), rest);
    const good = `/${signature}${rest}`;
    const res = await get(stack.base + good);
    assert.equal(res.status, 200);
    if (IMG.real) assert.deepEqual(imageInfo(res.body), { format: "png", width: 24, height: 18 });
    const obj = await stack.s3.waitForObject(BUCKET, keyOf(good));
    assert.ok(equalBytes(obj.body, res.body));
    assert.equal(obj.contentType, res.headers.get("content-type"));

    const bad = `/${signature.slice(0, -2)}AA${rest}`;
    const denied = await get(stack.base + bad);
    assert.equal(denied.status, 403);
    const unsigned = `/insecure${rest}`;
    assert.equal((await get(stack.base + unsigned)).status, 403);
    // The barrier must be signed too.
    const rest2 = `/rs:fit:12:12/plain/${stack.source("logo.png")}@png`;
    const sentinel = `/${sign(Buffer.from(key, "hex"), Buffer.from(salt, "hex"), rest2)}${rest2}`;
    assert.equal((await get(stack.base + sentinel)).status, 200);
    await stack.s3.waitForObject(BUCKET, keyOf(sentinel));
    assert.deepEqual(await stack.s3.keys(BUCKET), [keyOf(good), keyOf(sentinel)].sort());
    assert.equal((await stack.s3.puts(BUCKET, keyOf(bad))).length, 0);
  } finally {
    await stack.close();
  }
});

Deno.test(`entrypoint: IMGPROXY_AUTO_WEBP with CACHE_VARIANTS=off → Vary: Accept answers are not stored [${IMG.label}]`, async () => {
  const stack = await Stack.start({ env: { IMGPROXY_AUTO_WEBP: "true", CACHE_VARIANTS: "off" } });
  try {
    const path = `/insecure/rs:fit:32:24/plain/${stack.source("photo.jpg")}`;
    const res = await get(stack.base + path, { headers: { accept: "image/webp,*/*" } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("vary") ?? "", /accept/i);
    assert.equal(res.headers.get("x-cache"), "BYPASS; reason=vary");
    if (IMG.real) assert.equal(imageInfo(res.body).format, "webp");
    // Said once, with what to change.
    await stack.proc.waitForLine(/WARN .*CACHE_VARIANTS=accept/);
    // Nothing may be stored later either: stop the stack, which drains every upload first.
    stack.proc.signal("SIGTERM");
    assert.equal((await stack.proc.wait(30_000)).code, 0, stack.proc.output());
    const drained = stack.proc.lines.find((l) => /Uploads drained/.test(l)) ?? "";
    assert.match(drained, /stored=0 .*failed=0 lost=0/, stack.proc.output());
    assert.deepEqual(await stack.s3.keys(BUCKET), []);
    assert.equal((await stack.s3.log()).filter((l) => l.op === "s3_PutObject").length, 0);
  } finally {
    await stack.close();
  }
});

Deno.test(`entrypoint: IMGPROXY_AUTO_WEBP, variants by default → stored per variant (md5, md5-webp) [${IMG.label}]`, async () => {
  const stack = await Stack.start({ env: { IMGPROXY_AUTO_WEBP: "true" } });
  try {
    const path = `/insecure/rs:fit:32:24/plain/${stack.source("photo.jpg")}`;
    const webp = await get(stack.base + path, { headers: { accept: "image/webp,image/*" } });
    const plain = await get(stack.base + path, { headers: { accept: "image/png,image/*" } });
    assert.equal(webp.status, 200);
    assert.equal(plain.status, 200);
    if (IMG.real) {
      assert.deepEqual(imageInfo(webp.body), { format: "webp", width: 32, height: 24 });
      assert.deepEqual(imageInfo(plain.body), { format: "jpeg", width: 32, height: 24 });
    }
    const storedWebp = await stack.s3.waitForObject(BUCKET, keyOf(path, "-webp"));
    const storedPlain = await stack.s3.waitForObject(BUCKET, keyOf(path));
    assert.ok(equalBytes(storedWebp.body, webp.body), "md5-webp holds the webp answer");
    assert.ok(equalBytes(storedPlain.body, plain.body), "md5 holds the non-webp answer");
    assert.equal(storedWebp.contentType, webp.headers.get("content-type"));
    assert.equal(storedPlain.contentType, plain.headers.get("content-type"));
    assert.deepEqual(await stack.s3.keys(BUCKET), [keyOf(path), keyOf(path, "-webp")].sort());
  } finally {
    await stack.close();
  }
});

Deno.test(`entrypoint: imgproxy dies → script exits ≠ 0 and the proxy is gone [${IMG.label}]`, async () => {
  const stack = await Stack.start();
  try {
    Deno.kill(stack.imgproxyPid!, "SIGKILL");
    const status = await stack.proc.wait(30_000);
    assert.notEqual(status.code, 0, stack.proc.output());
    assert.equal(status.code, 137, "the status of imgproxy, killed by SIGKILL (128+9)");
    await stack.childrenGone();
    assert.ok(stack.proc.lines.some((l) => /imgproxy exited \(status 137\)/.test(l)));
  } finally {
    await stack.close();
  }
});

Deno.test(`entrypoint: the proxy dies → script exits ≠ 0 and imgproxy is gone [${IMG.label}]`, async () => {
  const stack = await Stack.start();
  try {
    Deno.kill(stack.proxyPid!, "SIGKILL");
    const status = await stack.proc.wait(30_000);
    assert.equal(status.code, 137, stack.proc.output());
    await stack.childrenGone();
    assert.ok(stack.proc.lines.some((l) => /imgproxy-cache exited \(status 137\)/.test(l)));
  } finally {
    await stack.close();
  }
});

Deno.test(`entrypoint: a taken IMGPROXY_BIND → the proxy exits 1 with one line, the script exits 1 [${IMG.label}]`, async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const bind = `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`;
  const dir = await Deno.makeTempDir({ prefix: "e2e-entry-bind-" });
  try {
    const child = await new Deno.Command("sh", {
      args: [`${ROOT}/entrypoint.sh`],
      env: {
        ...await baseEnv(),
        IMGPROXY_BIN: (await chooseImgproxy()).bin,
        INTERNAL_IMGPROXY_BIND: `127.0.0.1:${freePort()}`,
        IMGPROXY_BIND: bind,
        CACHE_DIR: dir,
        HEALTH_CHECK_TIMEOUT_IN_SEC: "20",
      },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(child.stdout) + new TextDecoder().decode(child.stderr);
    assert.equal(child.code, 1, out);
    assert.match(out, new RegExp(`ERROR IMGPROXY_BIND: cannot listen on ${bind}: address already`));
    assert.match(out, /imgproxy-cache exited \(status 1\)/);
    assert.doesNotMatch(out, /Unhandled|Uncaught| {4}at /);
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(`entrypoint: SIGTERM with uploads pending → they land, both stop, exit 0 [${IMG.label}]`, async () => {
  // Every S3 answer is held back 1.5 s, so the uploads are still pending when SIGTERM comes.
  const stack = await Stack.start({ s3DelayMs: 1500 });
  try {
    const paths = [20, 21, 22].map((w) =>
      `/insecure/rs:fit:${w}:${w}/plain/${stack.source("photo.jpg")}@png`
    );
    const answers = await Promise.all(paths.map((p) => get(stack.base + p)));
    for (const a of answers) assert.equal(a.status, 200);
    stack.proc.signal("SIGTERM");
    const status = await stack.proc.wait(30_000);
    assert.equal(status.code, 0, stack.proc.output());
    await stack.childrenGone();
    const draining = stack.proc.lines.find((l) => /INFO Draining uploads pending=\d+/.test(l));
    assert.ok(draining, `the proxy should have had uploads pending:\n${stack.proc.output()}`);
    assert.ok(stack.proc.lines.some((l) => /Uploads drained stored=3 .*lost=0/.test(l)));
    for (const [i, p] of paths.entries()) {
      const obj = await stack.s3.get(BUCKET, keyOf(p));
      assert.ok(obj !== null, `upload of ${p} did not land`);
      assert.ok(equalBytes(obj.body, answers[i]!.body));
    }
  } finally {
    await stack.close();
  }
});

Deno.test(`entrypoint: a missing imgproxy binary stops the script at once with 127`, async () => {
  const child = await new Deno.Command("sh", {
    args: ["entrypoint.sh"],
    env: { IMGPROXY_BIN: "/nonexistent/imgproxy" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(child.code, 127);
  assert.match(new TextDecoder().decode(child.stderr), /imgproxy not found/);
});

Deno.test(`entrypoint: a zero-padded drain timeout is decimal, and IMGPROXY_URL credentials are never logged [stand-in imgproxy that only sleeps: the proxy must exit 2 before imgproxy matters]`, async () => {
  // imgproxy here is a stand-in that just waits: the proxy refuses the URL and exits 2 first.
  const dir = await Deno.makeTempDir({ prefix: "e2e-entry-" });
  try {
    await Deno.writeTextFile(`${dir}/imgproxy`, "#!/bin/sh\nexec sleep 30\n", { mode: 0o755 });
    const child = await new Deno.Command("sh", {
      args: [`${ROOT}/entrypoint.sh`],
      env: {
        ...await baseEnv(),
        IMGPROXY_BIN: `${dir}/imgproxy`,
        // "09" is not a valid octal number: shell arithmetic on it used to kill the script.
        UPLOAD_DRAIN_TIMEOUT_IN_SEC: "09",
        IMGPROXY_URL: "http://admin:s3cretPW@127.0.0.1:8081",
      },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(child.stderr);
    assert.equal(child.code, 2, err);
    assert.doesNotMatch(err, /Illegal number|s3cretPW/);
    assert.match(err, /started imgproxy-cache pid=\d+ imgproxy=http:\/\/\*\*\*@127\.0\.0\.1:8081/);
    assert.match(err, /IMGPROXY_URL: credentials in the URL are not allowed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
