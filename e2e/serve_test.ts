/**
 * `deno serve serve.ts` for real (the Deno Deploy entry point), with the permission flags
 * lib/permissions.ts computes, imgproxy elsewhere (IMGPROXY_URL) and versitygw as S3 behind a
 * relay that holds every S3 answer back, so the upload is still pending when SIGINT arrives.
 */
import assert from "node:assert/strict";
import { denoServeArgs } from "../tests/support/serve_args.ts";
import {
  ACCESS_KEY,
  banner,
  baseEnv,
  DelayRelay,
  equalBytes,
  freePort,
  get,
  keyOf,
  Proc,
  SECRET_KEY,
  SourceServer,
  startImgproxy,
  Versitygw,
  waitFor,
} from "./support/harness.ts";

const IMG = await banner("serve_test.ts");

Deno.test(`deno serve serve.ts: image served and stored; SIGINT flushes the pending upload, exit 0 [${IMG.label}]`, async () => {
  const gw = await Versitygw.start();
  const sources = new SourceServer();
  const relay = new DelayRelay(gw.port, 1500);
  const imgproxy = await startImgproxy(IMG.bin);
  let serve: Proc | null = null;
  try {
    await gw.createBucket("served");
    const port = freePort();
    const env = {
      ...await baseEnv(),
      HOME: gw.dir,
      S3_BUCKET: "served",
      S3_ENDPOINT: `http://127.0.0.1:${relay.port}`,
      AWS_ACCESS_KEY_ID: ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: SECRET_KEY,
      AWS_REGION: "us-east-1",
      IMGPROXY_URL: imgproxy.url,
      // Only so lib/permissions.ts grants the address `deno serve --port` binds.
      IMGPROXY_BIND: `127.0.0.1:${port}`,
    };
    serve = new Proc("deno serve", "deno", await denoServeArgs(env, port), { env });
    const base = `http://127.0.0.1:${port}`;
    await waitFor("imgproxy to be healthy", async () => {
      const r = await fetch(`${imgproxy.url}/health`);
      await r.body?.cancel();
      return r.status === 200 || undefined;
    }, 20_000);
    await waitFor("deno serve to answer /health through imgproxy", async () => {
      const r = await fetch(`${base}/health`);
      await r.body?.cancel();
      return r.status === 200 || undefined;
    }, 20_000);
    const path = `/insecure/rs:fit:16:16/plain/${sources.base}/logo.png@png`;
    const res = await get(base + path);
    assert.equal(res.status, 200, serve.output());
    assert.equal(res.headers.get("x-cache"), "MISS");
    serve.signal("SIGINT");
    const status = await serve.wait(20_000);
    assert.equal(status.code, 0, serve.output());
    assert.ok(
      serve.lines.some((l) => /INFO Draining uploads pending=1/.test(l)),
      `the upload should still have been pending at SIGINT:\n${serve.output()}`,
    );
    assert.ok(serve.lines.some((l) => /Uploads drained stored=1 .*lost=0/.test(l)));
    const obj = await gw.get("served", keyOf(path));
    assert.ok(obj !== null, "the upload was not flushed before exit");
    assert.ok(equalBytes(obj.body, res.body));
    assert.equal(obj.contentType, res.headers.get("content-type"));
    assert.deepEqual(serve.lines.filter((l) => /NotCapable|Uncaught/.test(l)), []);
  } finally {
    await serve?.stop();
    await imgproxy.proc.stop();
    await relay.close();
    await sources.close();
    await gw.close();
  }
});
