/**
 * Hostile or unlucky requests found in review: none may crash the proxy, poison the store, or
 * make imgproxy get another target than the client sent.
 */
import assert from "node:assert/strict";
import { objectKey } from "../lib/key.ts";
import { rawRequest, startFakeImgproxy } from "./support/fake_imgproxy.ts";
import { serveInProcess } from "./support/in_process.ts";
import { exists } from "./support/net_fs.ts";

async function setup(env: Record<string, string> = {}, fake = startFakeImgproxy()) {
  const dir = await Deno.makeTempDir({ prefix: "robustness-" });
  const served = await serveInProcess({ CACHE_DIR: dir, ...env }, {}, fake);
  return {
    ...served,
    dir,
    async close() {
      await served.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("a client that drops mid-body on a node:http target does not take the proxy down", async () => {
  const h = await setup();
  try {
    // "/a/../b" goes through node:http (fetch would resolve the dot segment).
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port });
    await conn.write(
      new TextEncoder().encode(
        "POST /a/../b HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + "x".repeat(1000),
      ),
    );
    await new Promise((r) => setTimeout(r, 100));
    conn.close();
    await new Promise((r) => setTimeout(r, 300));
    // Still serving.
    const res = await fetch(`http://127.0.0.1:${h.port}/insecure/plain/http://e.com/a.png`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  } finally {
    await h.close();
  }
});

Deno.test("a target with '#' reaches imgproxy with its fragment, as sent", async () => {
  const h = await setup();
  try {
    const target = "/insecure/plain/http://e.com/a.png#frag";
    const res = await rawRequest(h.port, `GET ${target} HTTP/1.1`);
    assert.equal(res.status, 200);
    assert.ok(h.fake.requests.some((r) => r.target === target), JSON.stringify(h.fake.requests));
    assert.ok(!h.fake.requests.some((r) => r.target === "/insecure/plain/http://e.com/a.png"));
  } finally {
    await h.close();
  }
});

Deno.test("an Accept removed by Connection cannot put one format under another's key", async () => {
  const h = await setup({ CACHE_VARIANTS: "accept" }, startFakeImgproxy({ varyAccept: true }));
  try {
    const path = "/insecure/rs:fit:10:10/plain/http://e.com/c.jpg";
    const res = await fetch(`http://127.0.0.1:${h.port}${path}`, {
      headers: { accept: "image/webp", connection: "accept" },
    });
    const type = res.headers.get("content-type");
    await res.bytes();
    await h.app.uploader.drain(2000);
    // imgproxy never saw Accept: whatever it sent is the no-negotiation variant.
    assert.notEqual(type, "image/webp");
    assert.equal(await exists(`${h.dir}/${objectKey(path, "", "-webp")}`), false);
    assert.equal(await exists(`${h.dir}/${objectKey(path)}`), true);
  } finally {
    await h.close();
  }
});
