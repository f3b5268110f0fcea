/**
 * What a newcomer runs, run here with real imgproxy:
 *
 * - the README's quick start: imgproxy serving examples/images/ as local:///, the proxy started
 *   by `deno task start` with no bucket, the README's curl path → a MISS, then the object and its
 *   `.meta.json` sidecar under the key the README prints, then a HIT with `CACHE_MODE=read`;
 * - examples/compose.yaml's configuration on loopback: imgproxy with the imgproxy service's
 *   environment (its /images volume mapped back to examples/images), versitygw with a bucket made
 *   the way the storage service makes it (a directory), and the proxy with the proxy service's
 *   environment, service host names replaced by loopback addresses → MISS, stored, HIT.
 *
 * Both need real imgproxy (the stand-in reads no local:// sources); CI always has it.
 */
import assert from "node:assert/strict";
import { GetObjectCommand } from "@aws-sdk/client-s3";
// Test-only parser, locked in tests/deno.lock (see tests/dependencies_test.ts).
// deno-lint-ignore no-import-prefix
import { parse as parseYaml } from "npm:yaml@2.9.1";
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
  startImgproxy,
  Versitygw,
  waitFor,
  waitForHealth,
} from "./support/harness.ts";

const IMG = await banner("examples_test.ts");

/** Starts the proxy the way the README says: `deno task start`, here with `env`. */
async function startProxy(env: Record<string, string>): Promise<{ proc: Proc; base: string }> {
  const bind = `127.0.0.1:${freePort()}`;
  const proc = new Proc("proxy", "deno", ["task", "start"], {
    env: { ...await baseEnv(), HEALTH_CHECK_TIMEOUT_IN_SEC: "20", ...env, IMGPROXY_BIND: bind },
  });
  await proc.waitForLine(/INFO Listening address=/, 60_000);
  return { proc, base: `http://${bind}` };
}

Deno.test({
  name:
    `README quick start stores a real image locally, then answers it from the store (${IMG.label})`,
  ignore: !IMG.real,
  fn: async () => {
    const readme = await Deno.readTextFile(`${ROOT}/README.md`);
    const curl = /curl -sS -D - -o \/tmp\/thumb\.jpg http:\/\/localhost:8080(\/\S+)/.exec(readme);
    assert.ok(curl, "the README's quick start has no curl command for the sample image");
    const path = curl[1]!;
    const listed = /^\s*# ([0-9a-f]{32}) {2}\1\.meta\.json$/m.exec(readme);
    assert.ok(listed, "the README's quick start does not show the stored object and its sidecar");
    assert.equal(listed[1], keyOf(path), "the key the README shows is not md5 of its path");
    assert.match(readme, /IMGPROXY_LOCAL_FILESYSTEM_ROOT="\$PWD\/examples\/images"/);

    const cacheDir = await Deno.makeTempDir({ prefix: "e2e-quickstart-" });
    const imgproxy = await startImgproxy(IMG.bin, {
      IMGPROXY_LOCAL_FILESYSTEM_ROOT: `${ROOT}/examples/images`,
    });
    let proxy: { proc: Proc; base: string } | null = null;
    try {
      await waitForHealth(imgproxy.url, imgproxy.proc);
      const env = { IMGPROXY_URL: imgproxy.url, CACHE_DIR: cacheDir };
      proxy = await startProxy(env);
      const miss = await get(`${proxy.base}${path}`);
      assert.equal(miss.status, 200, proxy.proc.output());
      assert.equal(miss.headers.get("content-type"), "image/jpeg");
      assert.equal(miss.headers.get("x-cache"), "MISS");

      const object = `${cacheDir}/${listed[1]}`;
      await waitFor("the object and its sidecar in CACHE_DIR", async () => {
        try {
          await Deno.stat(`${object}.meta.json`);
          return true;
        } catch {
          return undefined;
        }
      }, 20_000);
      assert.ok(equalBytes(await Deno.readFile(object), miss.body), "stored bytes differ");
      const meta = JSON.parse(await Deno.readTextFile(`${object}.meta.json`));
      assert.equal(meta.contentType, "image/jpeg");
      assert.equal((await proxy.proc.stop(15_000)).code, 0, proxy.proc.output());

      proxy = await startProxy({ ...env, CACHE_MODE: "read" });
      const hit = await get(`${proxy.base}${path}`);
      assert.equal(hit.status, 200);
      assert.equal(hit.headers.get("x-cache"), "HIT", proxy.proc.output());
      assert.ok(equalBytes(hit.body, miss.body), "the hit is not the stored image");
    } finally {
      await proxy?.proc.stop(15_000);
      await imgproxy.proc.stop();
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
});

interface Service {
  environment?: Record<string, string | number | boolean>;
  volumes?: string[];
  entrypoint?: string[];
}

Deno.test({
  name:
    `examples/compose.yaml's configuration stores in the bucket and answers hits (${IMG.label})`,
  ignore: !IMG.real,
  fn: async () => {
    const text = await Deno.readTextFile(`${ROOT}/examples/compose.yaml`);
    const services = (parseYaml(text) as { services: Record<string, Service> }).services;
    const envOf = (s: Service) =>
      Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, String(v)]));
    const path = /http:\/\/localhost:8080(\/\S+)/.exec(text)?.[1];
    assert.ok(path, "compose.yaml's header shows no request to try");

    // imgproxy: the service's environment, container paths mapped back to the host's.
    const imgproxyEnv = envOf(services.imgproxy!);
    for (const volume of services.imgproxy!.volumes ?? []) {
      const [host, container] = volume.split(":");
      for (const [k, v] of Object.entries(imgproxyEnv)) {
        if (v === container) imgproxyEnv[k] = `${ROOT}/examples/${host!.replace(/^\.\//, "")}`;
      }
    }
    // The bucket: the directory the storage service's entrypoint creates.
    const bucket = /mkdir -p \/data\/([a-z0-9.-]+)/.exec(services.storage!.entrypoint!.join(" "));
    assert.ok(bucket, "the storage service creates no bucket");

    const s3 = await Versitygw.start();
    const imgproxy = await startImgproxy(IMG.bin, imgproxyEnv);
    let proxy: { proc: Proc; base: string } | null = null;
    try {
      await Deno.mkdir(`${s3.dir}/root/${bucket[1]}`);
      await waitForHealth(imgproxy.url, imgproxy.proc);
      const env = envOf(services.proxy!);
      assert.equal(env.S3_BUCKET, bucket[1]);
      const swap = (url: string, to: string) => {
        const u = new URL(url);
        return `${to}${u.pathname === "/" ? "" : u.pathname}`;
      };
      proxy = await startProxy({
        ...env,
        IMGPROXY_URL: swap(env.IMGPROXY_URL!, imgproxy.url),
        S3_ENDPOINT: swap(env.S3_ENDPOINT!, s3.endpoint),
        // versitygw's keys here are the harness's; tests/examples_test.ts checks that the
        // file's storage and proxy services agree on theirs.
        AWS_ACCESS_KEY_ID: ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY: SECRET_KEY,
        METRICS_BIND: `127.0.0.1:${freePort()}`,
        HOME: s3.dir,
      });
      const miss = await get(`${proxy.base}${path}`);
      assert.equal(miss.status, 200, proxy.proc.output());
      assert.equal(miss.headers.get("x-cache"), "MISS");
      await proxy.proc.waitForLine(/INFO Uploaded to S3 /, 20_000);
      const stored = await s3.client.send(
        new GetObjectCommand({ Bucket: bucket[1], Key: keyOf(path) }),
      );
      assert.equal(stored.ContentType, "image/jpeg");
      assert.ok(equalBytes(await stored.Body!.transformToByteArray(), miss.body));

      const hit = await get(`${proxy.base}${path}`);
      assert.equal(hit.headers.get("x-cache"), "HIT", proxy.proc.output());
      assert.ok(equalBytes(hit.body, miss.body), "the hit is not the stored image");
    } finally {
      await proxy?.proc.stop(15_000);
      await imgproxy.proc.stop();
      await s3.close();
    }
  },
});
