/**
 * Permission-scoped runs: the real program started by bin/start (the flags lib/permissions.ts
 * computes, nothing more) with HOME unset — the AWS SDK trap in the facts file — for the S3
 * store (versitygw) and the local-directory store. No NotCapable, no crash, the image stored,
 * a clean exit on SIGTERM.
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
  waitFor,
} from "./support/harness.ts";
import { BUCKET } from "./support/stack.ts";

const IMG = await banner("permissions_test.ts");

const ADMIN_TOKEN = "e2e-admin-token-0123456789";

/** Purges `path` through the proxy's `POST /purge`; returns the keys it removed. */
async function purge(admin: string, path: string): Promise<string[]> {
  const res = await fetch(`http://${admin}/purge`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    body: `${path}\n`,
  });
  const report = await res.json();
  assert.equal(res.status, 200, JSON.stringify(report));
  return report.results[0].keys;
}

/**
 * Runs bin/start with exactly `env` (no HOME) plus a metrics listener with the purge endpoint,
 * requests one image, stops it with SIGTERM.
 */
async function runScoped(
  env: Record<string, string>,
  check: (
    path: string,
    res: { body: Uint8Array; headers: Headers },
    admin: string,
  ) => Promise<void>,
): Promise<void> {
  const sources = new SourceServer();
  const imgproxy = await startImgproxy(IMG.bin);
  let proxy: Proc | null = null;
  try {
    const bind = `127.0.0.1:${freePort()}`;
    const admin = `127.0.0.1:${freePort()}`;
    const full: Record<string, string> = {
      ...await baseEnv(),
      ...env,
      IMGPROXY_BIND: bind,
      IMGPROXY_URL: imgproxy.url,
      METRICS_BIND: admin,
      ADMIN_TOKEN,
    };
    assert.equal(full.HOME, undefined);
    proxy = new Proc("proxy", "sh", [`${ROOT}/bin/start`], { env: full });
    await proxy.waitForLine(/INFO Listening address=/, 30_000);
    const path = `/insecure/rs:fit:16:12/plain/${sources.base}/photo.jpg@png`;
    const res = await get(`http://${bind}${path}`);
    assert.equal(res.status, 200, proxy.output());
    await check(path, res, admin);
    proxy.signal("SIGTERM");
    const status = await proxy.wait(20_000);
    const problems = proxy.lines.filter((l) => /NotCapable|Requires \w+ access|Uncaught/.test(l));
    assert.deepEqual(problems, [], `permission problems:\n${proxy.output()}`);
    assert.equal(status.code, 0, proxy.output());
  } finally {
    await proxy?.stop();
    await imgproxy.proc.stop();
    await sources.close();
  }
}

// Virtual-hosted addressing sends S3 requests to <bucket>.<endpoint host>, a host the flags
// must name too; the bucket's host resolves through a hosts entry (see VIRTUAL_DOMAIN).
for (const addressing of ["path", "virtual"] as const) {
  Deno.test(`permissions: S3 store (${addressing === "path" ? "path-style" : "virtual-hosted"}), HOME unset, exact flags → stored, no NotCapable, exit 0 [${IMG.label}]`, async () => {
    const gw = await Versitygw.start({ virtualHosted: addressing === "virtual" });
    try {
      await gw.createBucket(BUCKET);
      if (addressing === "virtual") await gw.requireVirtualHost(BUCKET);
      await runScoped({
        S3_BUCKET: BUCKET,
        S3_ENDPOINT: addressing === "virtual" ? gw.virtualEndpoint : gw.endpoint,
        S3_FORCE_PATH_STYLE: String(addressing === "path"),
        AWS_ACCESS_KEY_ID: ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY: SECRET_KEY,
        AWS_REGION: "us-east-1",
      }, async (path, res, admin) => {
        const obj = await gw.waitForObject(BUCKET, keyOf(path));
        assert.ok(equalBytes(obj.body, res.body));
        assert.equal(obj.contentType, res.headers.get("content-type"));
        assert.equal(obj.cacheControl, res.headers.get("cache-control"));
        // A path-style request sent to the bucket's host would be filed under BUCKET/key.
        assert.deepEqual(await gw.keys(BUCKET), [keyOf(path)]);
        // Listing and DeleteObject work under the same flags, in this addressing style.
        assert.deepEqual(await purge(admin, path), [keyOf(path)]);
        assert.deepEqual(await gw.keys(BUCKET), []);
      });
    } finally {
      await gw.close();
    }
  });
}

Deno.test(`permissions: local store, HOME unset, exact flags → stored in CACHE_DIR only, exit 0 [${IMG.label}]`, async () => {
  const dir = await Deno.makeTempDir({ prefix: "e2e-local-" });
  try {
    // Bounded: the start-up scan and eviction run under the same flags.
    await runScoped({
      CACHE_DIR: `${dir}/cache`,
      CACHE_DIR_MAX_BYTES: "10000000",
    }, async (path, res, admin) => {
      const file = `${dir}/cache/${keyOf(path)}`;
      const body = await waitFor(`${file} to be written`, async () => {
        try {
          return await Deno.readFile(file);
        } catch {
          return undefined;
        }
      });
      assert.ok(equalBytes(body, res.body));
      assert.deepEqual(await purge(admin, path), [keyOf(path)]);
      assert.deepEqual([...Deno.readDirSync(`${dir}/cache`)], []);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
