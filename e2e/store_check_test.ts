/**
 * The start-up store check, on the real program (bin/start, the exact permission flags) against
 * versitygw over real sockets: a store that cannot work stops the program with exit 2 and one
 * message naming the variable (never a secret); a region left unset or set wrong still stores;
 * a store that is down at start is served around, checked again, and used once it answers.
 */
import assert from "node:assert/strict";
import {
  ACCESS_KEY,
  banner,
  baseEnv,
  equalBytes,
  freePort,
  get,
  keyOf,
  Proc,
  ROOT,
  SECRET_KEY,
  SourceServer,
  startImgproxy,
  Versitygw,
} from "./support/harness.ts";

const IMG = await banner("store_check_test.ts");
const BUCKET = "checked";

/** Starts bin/start with `env` on a free port; imgproxy is wherever `env` says. */
async function startProxy(env: Record<string, string>): Promise<{ proc: Proc; base: string }> {
  const bind = `127.0.0.1:${freePort()}`;
  const proc = new Proc("proxy", "sh", [`${ROOT}/bin/start`], {
    env: { ...await baseEnv(), IMGPROXY_BIND: bind, ...env },
  });
  return { proc, base: `http://${bind}` };
}

/** Runs the proxy to its exit (it must not get as far as waiting for imgproxy). */
async function runToExit(env: Record<string, string>): Promise<{ code: number; out: Proc }> {
  const { proc } = await startProxy({
    IMGPROXY_URL: `http://127.0.0.1:${freePort()}`,
    HEALTH_CHECK_TIMEOUT_IN_SEC: "1",
    ...env,
  });
  const status = await proc.wait(30_000);
  return { code: status.code, out: proc };
}

function s3Env(gw: Versitygw, extra: Record<string, string> = {}): Record<string, string> {
  return {
    S3_BUCKET: BUCKET,
    S3_ENDPOINT: gw.endpoint,
    AWS_ACCESS_KEY_ID: ACCESS_KEY,
    AWS_SECRET_ACCESS_KEY: SECRET_KEY,
    HOME: gw.dir,
    ...extra,
  };
}

/** Asserts exit 2 with one ERROR line that names `variable`, and no secret anywhere. */
function assertStopped(run: { code: number; out: Proc }, variable: string, secret: string) {
  const out = run.out.output();
  assert.equal(run.code, 2, out);
  const errors = run.out.lines.filter((l) => / ERROR /.test(l));
  assert.equal(errors.length, 1, out);
  assert.match(errors[0]!, new RegExp(`: ${variable}[:/]`), out);
  assert.ok(!out.includes(secret), `the secret appears in the output:\n${out}`);
  assert.ok(!/Listening|Waiting for imgproxy|Uncaught|\s{4}at /.test(out), out);
}

Deno.test("store check: wrong bucket, wrong secret, unknown key, unusable CACHE_DIR → exit 2 naming the variable; STORE_CHECK=false skips it", async (t) => {
  const gw = await Versitygw.start();
  try {
    await gw.createBucket(BUCKET);
    await t.step("missing bucket → S3_BUCKET", async () => {
      const run = await runToExit(s3Env(gw, { S3_BUCKET: "no-such-bucket" }));
      assertStopped(run, "S3_BUCKET", SECRET_KEY);
      assert.match(run.out.output(), /"no-such-bucket" does not exist/);
    });
    await t.step("wrong secret → AWS_SECRET_ACCESS_KEY, the secret never printed", async () => {
      const secret = "not-the-secret-4f1d";
      const run = await runToExit(s3Env(gw, { AWS_SECRET_ACCESS_KEY: secret }));
      assertStopped(run, "AWS_SECRET_ACCESS_KEY", secret);
    });
    await t.step("unknown access key → AWS_ACCESS_KEY_ID", async () => {
      const run = await runToExit(s3Env(gw, { AWS_ACCESS_KEY_ID: "nobody" }));
      assertStopped(run, "AWS_ACCESS_KEY_ID", SECRET_KEY);
    });
    await t.step(
      "STORE_CHECK=false → no check: the start goes on to wait for imgproxy",
      async () => {
        const run = await runToExit(
          s3Env(gw, { S3_BUCKET: "no-such-bucket", STORE_CHECK: "false" }),
        );
        assert.equal(run.code, 1, run.out.output());
        assert.match(run.out.output(), /Waiting for imgproxy/);
      },
    );
    await t.step("a CACHE_DIR that cannot be created → CACHE_DIR", async () => {
      const dir = await Deno.makeTempDir({ prefix: "e2e-check-" });
      try {
        await Deno.writeTextFile(`${dir}/file`, "not a directory");
        const run = await runToExit({ CACHE_DIR: `${dir}/file/cache` });
        assertStopped(run, "CACHE_DIR", SECRET_KEY);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  } finally {
    await gw.close();
  }
});

/** Requests one image `width` pixels wide through the proxy; returns its key and body. */
async function oneImage(base: string, sources: SourceServer, width: number) {
  const path = `/insecure/rs:fit:${width}:12/plain/${sources.base}/photo.jpg@png`;
  const res = await get(`${base}${path}`);
  assert.equal(res.status, 200);
  return { key: keyOf(path), body: res.body };
}

/**
 * Runs `fn` with versitygw (BUCKET created), the image source server and real imgproxy, and stops
 * them after.
 */
async function withStack(
  fn: (gw: Versitygw, sources: SourceServer, imgproxy: { url: string }) => Promise<void>,
): Promise<void> {
  const gw = await Versitygw.start();
  const sources = new SourceServer();
  const imgproxy = await startImgproxy(IMG.bin);
  try {
    await gw.createBucket(BUCKET);
    await fn(gw, sources, imgproxy);
  } finally {
    await imgproxy.proc.stop();
    await sources.close();
    await gw.close();
  }
}

Deno.test(`store check: region unset, or set wrong, against a us-east-1 store → the store's region is used and images are stored [${IMG.label}]`, async (t) => {
  await withStack(async (gw, sources, imgproxy) => {
    for (
      const [name, extra, note] of [
        ["unset", {}, null],
        [
          "wrong",
          { S3_REGION: "eu-west-1" },
          /WARN S3_REGION: the store expects region "us-east-1"/,
        ],
      ] as const
    ) {
      await t.step(`region ${name}`, async () => {
        const { proc, base } = await startProxy({
          ...s3Env(gw, extra),
          IMGPROXY_URL: imgproxy.url,
        });
        try {
          await proc.waitForLine(/INFO Listening address=/, 30_000);
          const store = await proc.waitForLine(/INFO Store (.*)/);
          assert.equal(
            store[1],
            `bucket=${BUCKET} endpoint=${gw.endpoint} region=us-east-1 addressing=path-style`,
          );
          if (note) await proc.waitForLine(note);
          // Different images per step: a rerun must not find the first one's object.
          const img = await oneImage(base, sources, name === "unset" ? 16 : 15);
          const obj = await gw.waitForObject(BUCKET, img.key);
          assert.ok(equalBytes(obj.body, img.body));
          assert.ok(!proc.lines.some((l) => / ERROR /.test(l)), proc.output());
        } finally {
          await proc.stop();
        }
      });
    }
  });
});

Deno.test(`store check: a store down at start → WARN, serving; checked again, and used once it answers [${IMG.label}]`, async () => {
  const sources = new SourceServer();
  const imgproxy = await startImgproxy(IMG.bin);
  const port = freePort();
  let gw: Versitygw | null = null;
  const { proc, base } = await startProxy({
    S3_BUCKET: BUCKET,
    S3_ENDPOINT: `http://127.0.0.1:${port}`,
    AWS_ACCESS_KEY_ID: ACCESS_KEY,
    AWS_SECRET_ACCESS_KEY: SECRET_KEY,
    IMGPROXY_URL: imgproxy.url,
    UPLOAD_RETRIES: "0",
  });
  try {
    await proc.waitForLine(/WARN The store does not answer: serving without storing/);
    await proc.waitForLine(/INFO Listening address=/, 30_000);
    const before = await oneImage(base, sources, 14);
    assert.ok(before.body.byteLength > 0);
    await proc.waitForLine(/WARN The store still does not answer .*attempts=1/);
    gw = await Versitygw.start({ port });
    await gw.createBucket(BUCKET);
    await proc.waitForLine(/INFO The store answers now: storing resumes/, 30_000);
    const after = await oneImage(base, sources, 13);
    const obj = await gw.waitForObject(BUCKET, after.key);
    assert.ok(equalBytes(obj.body, after.body));
    proc.signal("SIGTERM");
    assert.equal((await proc.wait(20_000)).code, 0, proc.output());
  } finally {
    await proc.stop();
    await imgproxy.proc.stop();
    await sources.close();
    await gw?.close();
  }
});

Deno.test(`without the check (STORE_CHECK=false), a wrong region is corrected by the first write's answer and the retry stores [${IMG.label}]`, async () => {
  await withStack(async (gw, sources, imgproxy) => {
    const { proc, base } = await startProxy({
      ...s3Env(gw, { S3_REGION: "eu-west-1", STORE_CHECK: "false" }),
      IMGPROXY_URL: imgproxy.url,
    });
    try {
      await proc.waitForLine(/INFO Listening address=/, 30_000);
      assert.match((await proc.waitForLine(/INFO Store (.*)/))[1]!, /region=eu-west-1/);
      const img = await oneImage(base, sources, 12);
      const obj = await gw.waitForObject(BUCKET, img.key);
      assert.ok(equalBytes(obj.body, img.body));
      // Said, with the value to set; the entity-encoded quotes of versitygw's message decoded.
      await proc.waitForLine(/set S3_REGION=us-east-1/);
      const said = proc.lines.find((l) => l.includes("set S3_REGION=us-east-1"))!;
      assert.match(said, /region \\?"eu-west-1\\?" is wrong/);
      assert.ok(!said.includes("&#34;"), said);
    } finally {
      await proc.stop();
    }
  });
});
