/**
 * Hostile requests answered as real imgproxy answers them: what the proxy answers itself must
 * be what imgproxy would have said.
 */
import assert from "node:assert/strict";
import { type App, createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { objectKey } from "../lib/key.ts";
import { MemoryLogger } from "../lib/log.ts";
import { banner, startImgproxy, waitForHealth } from "./support/harness.ts";
import { rawRequest } from "../tests/support/fake_imgproxy.ts";

const IMG = await banner("hostile_test.ts");

/**
 * Runs `fn` against real imgproxy and the proxy in-process in front of it, storing in a new
 * temporary directory (named with `prefix`) with `env` added to its configuration.
 */
async function withProxy(
  prefix: string,
  env: Record<string, string>,
  fn: (proxy: { app: App; port: number; imgproxyPort: number }) => Promise<void>,
): Promise<void> {
  const imgproxy = await startImgproxy(IMG.bin);
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await waitForHealth(imgproxy.url, imgproxy.proc);
    const all: Record<string, string> = { IMGPROXY_URL: imgproxy.url, CACHE_DIR: dir, ...env };
    const app = await createApp(loadConfig((n) => all[n]), new MemoryLogger());
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
    try {
      await fn({ app, port: server.addr.port, imgproxyPort: Number(new URL(imgproxy.url).port) });
    } finally {
      await server.shutdown();
      await app.uploader.drain(1000);
    }
  } finally {
    await imgproxy.proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test(`methods the proxy answers itself get real imgproxy's answer [${IMG.label}]`, async () => {
  await withProxy("e2e-hostile-", {}, async ({ port, imgproxyPort }) => {
    for (const method of ["TRACE", "TRACK", "get", "Get", "post", "G@T"]) {
      const line = `${method} /insecure/rs:fit:10:10/plain/http://127.0.0.1:1/a.jpg HTTP/1.1`;
      const direct = await rawRequest(imgproxyPort, line);
      const proxied = await rawRequest(port, line);
      assert.equal(proxied.status, direct.status, method);
      if (direct.status === 404) {
        assert.equal(proxied.headers.get("content-type"), direct.headers.get("content-type"));
        assert.deepEqual(proxied.body, direct.body, method);
      }
    }
  });
});

Deno.test(`a stored image past its exp: gets real imgproxy's answer, not the stored one [${IMG.label}]`, async () => {
  await withProxy(
    "e2e-hostile-exp-",
    { CACHE_MODE: "read" },
    async ({ app, port, imgproxyPort }) => {
      const past = Math.floor(Date.now() / 1000) - 60;
      const path = `/insecure/exp:${past}/rs:fit:10:10/plain/http://127.0.0.1:1/a.jpg`;
      await app.store.put(objectKey(path, "", ""), new Uint8Array([0xff, 0xd8, 0xff]), {
        contentType: "image/jpeg",
        cacheControl: "max-age=3600, public",
        ifAbsent: false,
      });
      const direct = await rawRequest(imgproxyPort, `GET ${path} HTTP/1.1`);
      const proxied = await rawRequest(port, `GET ${path} HTTP/1.1`);
      assert.equal(direct.status, 404);
      assert.equal(proxied.status, direct.status);
      assert.equal(proxied.headers.get("content-type"), direct.headers.get("content-type"));
      assert.deepEqual(proxied.body, direct.body);
      assert.equal(proxied.headers.get("x-cache-lookup"), "expired");
    },
  );
});
