import assert from "node:assert/strict";
import { createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { startFakeImgproxy } from "./support/fake_imgproxy.ts";

const IMAGE = "/insecure/rs:fit:10:10/plain/http://example.com/cat.jpg";

/** Serves one miss through the app configured by `vars`; returns what it logged. */
async function logOfOneMiss(vars: Record<string, string>): Promise<MemoryLogger> {
  const fake = startFakeImgproxy();
  const dir = await Deno.makeTempDir({ prefix: "stored-line-" });
  const env: Record<string, string> = { IMGPROXY_URL: fake.url, CACHE_DIR: dir, ...vars };
  const logger = new MemoryLogger();
  const app = await createApp(loadConfig((n) => env[n]), logger);
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  try {
    const res = await fetch(`http://127.0.0.1:${server.addr.port}${IMAGE}`);
    await res.bytes();
    assert.equal(res.headers.get("x-cache"), "MISS");
    assert.deepEqual((await app.uploader.drain(5000)).lost, []);
    assert.equal(app.uploader.stats.stored, 1);
  } finally {
    await server.shutdown();
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
  return logger;
}

Deno.test("the line per object stored is INFO with the access log on (the default)", async () => {
  const logger = await logOfOneMiss({});
  const stored = logger.find("Stored in cache directory");
  assert.equal(stored.length, 1);
  assert.match(
    stored[0]!,
    / INFO Stored in cache directory path=\/insecure\/\S+ dir=\S+ key=[0-9a-f]{32}$/,
  );
});

Deno.test("the line per object stored is DEBUG with ACCESS_LOG=false", async () => {
  const logger = await logOfOneMiss({ ACCESS_LOG: "false" });
  const stored = logger.find("Stored in cache directory");
  assert.equal(stored.length, 1);
  assert.match(
    stored[0]!,
    / DEBUG Stored in cache directory path=\/insecure\/\S+ dir=\S+ key=[0-9a-f]{32}$/,
  );
  assert.deepEqual(logger.find(" INFO "), [], "no per-request or per-object INFO line");
});
