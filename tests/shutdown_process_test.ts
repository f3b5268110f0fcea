/**
 * The real program at shutdown: a request still in flight when `UPLOAD_DRAIN_TIMEOUT_IN_SEC`
 * runs out is cut, and still gets its access line; under `deno serve` as under `deno run`, the
 * background re-check of a store that did not answer stops.
 */
import assert from "node:assert/strict";
import { freePort } from "./support/net_fs.ts";
import { stop, withFakeImgproxy, withProcess } from "./support/process.ts";
import { serveEnv, withServe } from "./support/serve_args.ts";

/** The shutdown deadline, 1 s after the signal. */
const DEADLINE_1S = { UPLOAD_DRAIN_TIMEOUT_IN_SEC: "1" };

/** The access lines of `output` for `target` (text format). */
function accessLines(output: string, target: string): string[] {
  return output.split("\n").filter((l) =>
    l.includes(" INFO Request ") && l.includes(` path=${target} `)
  );
}

Deno.test("process: an answer still streaming at the shutdown deadline is cut and logged end=aborted", async () => {
  await withProcess({ slowChunks: 80, slowChunkMs: 100 }, DEADLINE_1S, async (proxy, base) => {
    // imgproxy sends a chunk every 100 ms for 8 s: the answer outlasts the deadline.
    const target = "/_/plain/http://example.com/slowbody.jpg";
    const res = await fetch(`${base}${target}`);
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    assert.equal((await reader.read()).done, false);
    stop(proxy);
    // The client keeps reading until the proxy cuts the answer.
    await reader.read().then(async function more(r): Promise<void> {
      if (!r.done) return more(await reader.read());
    }).catch(() => {});
    const { code, output } = await proxy.done;
    assert.equal(code, 0, output);
    assert.match(output, /Responses still in flight at the deadline/);
    const lines = accessLines(output, target);
    assert.equal(lines.length, 1, output);
    assert.match(lines[0]!, / status=200 /);
    assert.match(lines[0]!, / end=aborted/);
    assert.doesNotMatch(lines[0]!, / bytes=/);
  });
});

Deno.test("process: a request still waiting for imgproxy at the shutdown deadline is cut and logged 499", async () => {
  await withProcess({ slowHeadersMs: 6000 }, DEADLINE_1S, async (proxy, base, _dir, fake) => {
    const target = "/_/plain/http://example.com/slowhead.jpg";
    const answer = fetch(`${base}${target}`).then(
      (res) => res.body?.cancel(),
      () => {},
    );
    assert.ok(await fake.waitRequested(target, 30_000), "imgproxy got the request");
    stop(proxy);
    const { code, output } = await proxy.done;
    await answer;
    assert.equal(code, 0, output);
    const lines = accessLines(output, target);
    assert.equal(lines.length, 1, output);
    assert.match(lines[0]!, / status=499 /);
    assert.match(lines[0]!, / cache=NONE /);
  });
});

Deno.test("process: `deno serve` stops the re-check of a store that did not answer, then exits 0", async () => {
  await withFakeImgproxy("shutdown-serve-", async (fake, dir) => {
    const port = freePort();
    const env = serveEnv(port, dir, {
      IMGPROXY_URL: fake.url,
      S3_BUCKET: "images",
      // Nothing listens there: the store does not answer, so it is checked again while serving.
      S3_ENDPOINT: `http://127.0.0.1:${freePort()}`,
      AWS_ACCESS_KEY_ID: "key",
      AWS_SECRET_ACCESS_KEY: "secret",
      AWS_REGION: "us-east-1",
    });
    await withServe(env, port, async (serve) => {
      await serve.line("Listening on");
      // The first request builds the proxy, and the store check with it.
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      await res.body?.cancel();
      await serve.line("The store does not answer");
      serve.child.kill("SIGINT");
      const { code, output } = await serve.done;
      assert.equal(code, 0, output);
      const shutdown = output.slice(output.indexOf("Shutting down"));
      assert.match(
        shutdown,
        /INFO Stopped checking the store: it has not answered since start-up /,
      );
      assert.doesNotMatch(output, /NotCapable|Requires \w+ access|Uncaught/);
    });
  });
});

Deno.test("process: `deno serve` lets a response in flight finish before it exits, and logs it", async () => {
  await withFakeImgproxy("shutdown-serve-flight-", async (fake, dir) => {
    const port = freePort();
    const env = serveEnv(port, dir, {
      IMGPROXY_URL: fake.url,
      CACHE_DIR: dir,
      UPLOAD_DRAIN_TIMEOUT_IN_SEC: "30",
    });
    await withServe(env, port, async (serve) => {
      await serve.line("Listening on");
      // imgproxy sends 2048 bytes in 8 chunks 150 ms apart: the answer is still going when the
      // signal comes. Not stored (no-store): no upload holds the process up meanwhile.
      const target = "/_/plain/http://example.com/slowbody-nostore.jpg";
      const res = await fetch(`http://127.0.0.1:${port}${target}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("x-cache") ?? "", /^BYPASS/);
      const reader = res.body!.getReader();
      let received = (await reader.read()).value?.byteLength ?? 0;
      serve.child.kill("SIGINT");
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        received += r.value.byteLength;
      }
      assert.equal(received, 2048);
      const { code, output } = await serve.done;
      assert.equal(code, 0, output);
      const lines = accessLines(output, target);
      assert.equal(lines.length, 1, output);
      assert.match(lines[0]!, / status=200 bytes=2048 /);
    });
  }, { slowChunks: 8, slowChunkMs: 150 });
});

Deno.test("process: `deno serve` counts the responses still in flight at the deadline, then exits 0", async () => {
  await withFakeImgproxy("shutdown-serve-deadline-", async (fake, dir) => {
    const port = freePort();
    const env = serveEnv(port, dir, {
      IMGPROXY_URL: fake.url,
      CACHE_DIR: dir,
      UPLOAD_DRAIN_TIMEOUT_IN_SEC: "1",
    });
    await withServe(env, port, async (serve) => {
      await serve.line("Listening on");
      // 80 chunks 100 ms apart: the answer outlasts the deadline.
      const target = "/_/plain/http://example.com/slowbody-nostore.jpg";
      const res = await fetch(`http://127.0.0.1:${port}${target}`);
      const reader = res.body!.getReader();
      assert.equal((await reader.read()).done, false);
      serve.child.kill("SIGINT");
      const { code, output } = await serve.done;
      await reader.read().then(() => reader.cancel()).catch(() => {});
      assert.equal(code, 0, output);
      assert.match(
        output,
        /WARN Responses still in flight at the deadline: they will be cut at exit requests=1 /,
      );
    });
  }, { slowChunks: 80, slowChunkMs: 100 });
});
