/**
 * The "nginx in front" recipe of docs/cache-modes.md, run as written (paths and ports moved to a
 * temporary directory and free loopback ports): nginx caches the proxy's answers in `read` mode,
 * so the second request is an nginx HIT without reaching the proxy, and with imgproxy negotiating
 * WebP the recipe's key keeps the JPEG and WebP answers apart.
 *
 * nginx comes from scripts/install-deps.sh (Debian's nginx package).
 */
import assert from "node:assert/strict";
import {
  banner,
  baseEnv,
  equalBytes,
  freePort,
  get,
  Proc,
  ROOT,
  SourceServer,
  startImgproxy,
  waitFor,
  waitForHealth,
} from "./support/harness.ts";
import { nginxArgs, nginxConf } from "../tests/support/nginx.ts";

const IMG = await banner("nginx_recipe_test.ts");

async function which(cmd: string): Promise<string | null> {
  for (const dir of [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/usr/local/sbin"]) {
    try {
      if ((await Deno.stat(`${dir}/${cmd}`)).isFile) return `${dir}/${cmd}`;
    } catch {
      // not here
    }
  }
  return null;
}

/** The ```nginx block of docs/cache-modes.md, pointed at `dir`, `listen` and the proxy. */
async function recipe(dir: string, listen: number, proxy: number): Promise<string> {
  const doc = await Deno.readTextFile(`${ROOT}/docs/cache-modes.md`);
  const block = /^```nginx\n([\s\S]*?)^```$/m.exec(doc)?.[1];
  assert.ok(block, "docs/cache-modes.md has no nginx recipe");
  const conf = block
    .replace("/var/cache/nginx/images", `${dir}/cache`)
    .replace(/listen 80;/, `listen 127.0.0.1:${listen};`)
    .replace(/server 127\.0\.0\.1:8080;/, `server 127.0.0.1:${proxy};`);
  assert.notEqual(
    conf,
    block,
    "the recipe's cache path, listen or upstream changed: update this test",
  );
  return nginxConf({ dir, temp: dir, workerConnections: 256, http: conf });
}

Deno.test(`nginx recipe: nginx caches the proxy's answers, one entry per negotiated format (${IMG.label})`, async () => {
  const nginx = await which("nginx");
  assert.ok(nginx, "nginx not found: run scripts/install-deps.sh");
  const dir = await Deno.makeTempDir({ prefix: "e2e-nginx-" });
  const sources = new SourceServer();
  const imgproxy = await startImgproxy(IMG.bin, { IMGPROXY_AUTO_WEBP: "true" });
  let proxy: Proc | null = null;
  let front: Proc | null = null;
  try {
    await waitForHealth(imgproxy.url, imgproxy.proc);
    const proxyPort = freePort();
    proxy = new Proc("proxy", "sh", [`${ROOT}/bin/start`], {
      env: {
        ...await baseEnv(),
        IMGPROXY_URL: imgproxy.url,
        IMGPROXY_BIND: `127.0.0.1:${proxyPort}`,
        CACHE_DIR: `${dir}/store`,
        CACHE_MODE: "read",
        CACHE_VARIANTS: "accept",
        ACCESS_LOG: "true",
        // imgproxy's setting, as the Docker image shares it: the proxy then knows a WebP-capable
        // client gets WebP, instead of answering it with the stored JPEG once that upload ends.
        IMGPROXY_AUTO_WEBP: "true",
      },
    });
    await proxy.waitForLine(/INFO Listening address=/, 60_000);

    const port = freePort();
    await Deno.writeTextFile(`${dir}/nginx.conf`, await recipe(dir, port, proxyPort));
    front = new Proc("nginx", nginx, nginxArgs(dir), { env: await baseEnv() });
    await waitFor("nginx to listen", async () => {
      const c = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => null);
      c?.close();
      return c !== null || undefined;
    }, 20_000);

    const url = `http://127.0.0.1:${port}/insecure/rs:fit:64:64/plain/${sources.base}/photo.jpg`;
    const jpeg = { headers: { accept: "image/jpeg" } };
    const webp = { headers: { accept: "image/webp,*/*" } };

    const first = await get(url, jpeg);
    assert.equal(first.status, 200, proxy.output());
    assert.equal(first.headers.get("x-cache-status"), "MISS");
    assert.equal(first.headers.get("x-cache"), "MISS", "the proxy did not answer the first one");
    const again = await get(url, jpeg);
    assert.equal(again.headers.get("x-cache-status"), "HIT", "nginx did not cache the answer");
    assert.ok(equalBytes(again.body, first.body));

    const w = await get(url, webp);
    assert.equal(w.headers.get("x-cache-status"), "MISS", "WebP was served from the JPEG entry");
    assert.equal(w.headers.get("content-type"), "image/webp");
    const w2 = await get(url, webp);
    assert.equal(w2.headers.get("x-cache-status"), "HIT");
    assert.equal(w2.headers.get("content-type"), "image/webp");
    // Without the formats in the key, nginx keeps one variant per key: the WebP answer would
    // have replaced the JPEG one, and this would be a MISS.
    const j2 = await get(url, jpeg);
    assert.equal(j2.headers.get("x-cache-status"), "HIT", "the WebP entry replaced the JPEG one");
    assert.equal(j2.headers.get("content-type"), "image/jpeg");

    // nginx's hits never reached the proxy: its access log has the two misses only.
    await proxy.stop(15_000);
    const served = proxy.lines.filter((l) => /INFO Request method=GET /.test(l));
    assert.equal(served.length, 2, served.join("\n"));
  } finally {
    await front?.stop();
    await proxy?.stop(15_000);
    await imgproxy.proc.stop();
    await sources.close();
    await Deno.remove(dir, { recursive: true });
  }
});
