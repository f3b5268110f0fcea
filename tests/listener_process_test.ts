/**
 * The real program's listeners: an address it cannot listen on stops it with a non-zero exit
 * and one line, and running out of descriptors never ends the listener.
 */
import assert from "node:assert/strict";
import { freePort, readUntilClosed } from "./support/net_fs.ts";
import { start, stop, stopAndWait, withFakeImgproxy, withProcess } from "./support/process.ts";

/** A fake imgproxy and a temporary directory for one test. */
const withFake = (fn: (imgproxyUrl: string, dir: string) => Promise<void>) =>
  withFakeImgproxy("listener-process-", (fake, dir) => fn(fake.url, dir));

for (const variable of ["IMGPROXY_BIND", "METRICS_BIND"] as const) {
  Deno.test(`process exits 1 with one line when ${variable}'s address is taken`, async () => {
    await withFake(async (imgproxyUrl, dir) => {
      const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const takenPort = (taken.addr as Deno.NetAddr).port;
      const otherPort = freePort();
      try {
        const env: Record<string, string> = {
          IMGPROXY_URL: imgproxyUrl,
          CACHE_DIR: dir,
          HEALTH_CHECK_TIMEOUT_IN_SEC: "10",
          IMGPROXY_BIND: `127.0.0.1:${variable === "IMGPROXY_BIND" ? takenPort : otherPort}`,
          METRICS_BIND: `127.0.0.1:${variable === "METRICS_BIND" ? takenPort : freePort()}`,
        };
        const proxy = start(env);
        // No signal needed: the process stops on its own.
        const { code, output } = await proxy.done;
        assert.equal(code, 1, output);
        const errors = output.split("\n").filter((l) => / ERROR /.test(l));
        assert.deepEqual(errors.length, 1, output);
        assert.match(
          errors[0]!,
          new RegExp(
            `ERROR ${variable}: cannot listen on 127\\.0\\.0\\.1:${takenPort}: address already in use`,
          ),
        );
        assert.doesNotMatch(output, /Unhandled| {4}at |Uncaught|Serving metrics/, output);
        // Nothing was left listening on the address that was free.
        await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: otherPort }));
      } finally {
        taken.close();
      }
    });
  });
}

Deno.test("process under a small descriptor limit: idle sockets never end the listener", async () => {
  await withFake(async (imgproxyUrl, dir) => {
    const port = freePort();
    const proxy = start(
      {
        IMGPROXY_URL: imgproxyUrl,
        CACHE_DIR: dir,
        HEALTH_CHECK_TIMEOUT_IN_SEC: "10",
        IMGPROXY_BIND: `127.0.0.1:${port}`,
        CLIENT_HEADER_TIMEOUT_IN_SEC: "2",
      },
      false,
      128,
    );
    const hostile: Deno.Conn[] = [];
    try {
      await proxy.waitFor("Listening");
      // More idle sockets than the process has descriptors.
      for (let i = 0; i < 200; i++) {
        hostile.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      }
      await proxy.waitFor("Cannot accept connections, retrying");
      // The header timeout frees descriptors; the listener is still there and serves again.
      const res = await fetch(`http://127.0.0.1:${port}/health`, {
        signal: AbortSignal.timeout(30_000),
      });
      assert.equal(res.status, 200);
      await res.body?.cancel();
      await proxy.waitFor("Accepting connections again");
      stop(proxy);
      const { code, output } = await proxy.done;
      assert.equal(code, 0, output);
      assert.doesNotMatch(output, /Unhandled rejection|Uncaught|panicked/, output);
    } finally {
      for (const c of hostile) c.close();
      await stopAndWait(proxy);
    }
  });
});

Deno.test("process: connections closed for want of a request head are counted in the metrics", async () => {
  await withFake(async (imgproxyUrl, dir) => {
    const port = freePort();
    const metricsPort = freePort();
    const proxy = start({
      IMGPROXY_URL: imgproxyUrl,
      CACHE_DIR: dir,
      CACHE_MODE: "read",
      HEALTH_CHECK_TIMEOUT_IN_SEC: "10",
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      METRICS_BIND: `127.0.0.1:${metricsPort}`,
      CLIENT_HEADER_TIMEOUT_IN_SEC: "1",
    });
    try {
      await proxy.waitFor("Serving metrics");
      const idle = await Deno.connect({ hostname: "127.0.0.1", port });
      // The server closes it: the read ends (a guard fails the test instead of hanging).
      const guard = setTimeout(() => idle.close(), 20_000);
      const n = await idle.read(new Uint8Array(16)).catch(() => "reset");
      clearTimeout(guard);
      try {
        idle.close();
      } catch {
        // closed by the guard
      }
      assert.ok(n === null || n === "reset", "the idle connection was not closed");
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(
        text,
        /^imgproxy_cache_connections_closed_total\{listener="proxy",reason="header_timeout"\} 1$/m,
      );
      assert.match(
        text,
        /^imgproxy_cache_connections_closed_total\{listener="proxy",reason="send_timeout"\} 0$/m,
      );
      // Closed by the header timeout: not a connection the client ended without a request.
      assert.match(
        text,
        /^imgproxy_cache_connections_without_request_total\{listener="proxy"\} 0$/m,
      );
      assert.match(text, /^imgproxy_cache_connections_open\{listener="metrics"\} 1$/m);
      assert.match(text, /^imgproxy_cache_hits_not_served_total\{reason="length_mismatch"\} 0$/m);
      stop(proxy);
      const { code, output } = await proxy.done;
      assert.equal(code, 0, output);
    } finally {
      await stopAndWait(proxy);
    }
  });
});

Deno.test("process: an answer given during SIGTERM's drain says Connection: close, then the connection closes", async () => {
  await withProcess({ slowHeadersMs: 1500 }, {}, async (proxy, base, _dir, fake) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(base).port) });
    // A kept-alive request whose answer imgproxy gives only after SIGTERM has come.
    const target = "/_/plain/http://example.com/slowhead.jpg";
    await conn.write(new TextEncoder().encode(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`));
    assert.ok(await fake.waitRequested(target, 30_000), "imgproxy got the request");
    stop(proxy);
    await proxy.waitFor("Shutting down");
    const { text, ending } = await readUntilClosed(conn, 20_000);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(text, /\r\nconnection: close\r\n/i, text.slice(0, 400));
    assert.equal(ending, "eof", "the connection stayed open after the answer");
    const { code, output } = await proxy.done;
    assert.equal(code, 0, output);
  });
});
