/**
 * Methods neither upstream client can send as the client did (TRACE, TRACK, lower-case
 * spellings) get imgproxy's own answer to them, 404 with a one-space body, on both upstream
 * paths, without asking imgproxy and without an "unreachable" line; a malformed method is a 400.
 */
import assert from "node:assert/strict";
import { forwardable } from "../lib/methods.ts";
import { rawRequest } from "./support/fake_imgproxy.ts";
import { serveInProcess } from "./support/in_process.ts";

Deno.test("forwardable(): only upper-case methods fetch can send", () => {
  for (const m of ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "PURGE"]) {
    assert.equal(forwardable(m), true, m);
  }
  for (const m of ["TRACE", "TRACK", "CONNECT", "get", "Get", "head", "post", "patch"]) {
    assert.equal(forwardable(m), false, m);
  }
});

Deno.test("methods the clients cannot send get imgproxy's 404 on both upstream paths", async () => {
  const dir = await Deno.makeTempDir({ prefix: "methods-" });
  const { fake, logger, port, close } = await serveInProcess({
    CACHE_DIR: dir,
    CACHE_MODE: "read",
  });
  try {
    // The first target goes through fetch, the second through node:http ("..").
    for (const target of ["/_/plain/http://example.com/a.jpg", "/_/plain/http://x/../a.jpg"]) {
      for (const method of ["TRACE", "TRACK", "get", "Get", "post", "head"]) {
        const res = await rawRequest(port, `${method} ${target} HTTP/1.1`);
        assert.equal(res.status, 404, `${method} ${target}`);
        assert.equal(res.headers.get("content-type"), "text/plain");
        assert.equal(new TextDecoder().decode(res.body), " ");
      }
      // Malformed: the runtime's parser answers 400, as imgproxy's does.
      const bad = await rawRequest(port, `G@T ${target} HTTP/1.1`);
      assert.equal(bad.status, 400);
    }
    assert.equal(fake.requests.length, 0, "imgproxy was asked");
    assert.deepEqual(logger.find("unreachable"), []);
    assert.deepEqual(logger.lines.filter((l) => / (WARN|ERROR) /.test(l)), []);
    // Methods it can send still go to imgproxy, as sent.
    const patch = await rawRequest(port, "PATCH /_/plain/http://x/../a.jpg HTTP/1.1");
    assert.equal(patch.status, 404);
    assert.deepEqual(fake.requests.map((r) => r.method), ["PATCH"]);
  } finally {
    await close();
    await Deno.remove(dir, { recursive: true });
  }
});
