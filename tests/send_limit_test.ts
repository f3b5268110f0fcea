/**
 * The listener's send limit over real sockets: a client that asks for a large answer and never
 * reads it is cut once the grace plus the answer's length at the minimum rate has passed
 * (streamed bodies, files and fetched bodies alike: JavaScript sees no write progress of the
 * last two), counted and logged, its access line `end=aborted`; a slow but steady reader within
 * the rate gets its whole answer; other clients are served meanwhile.
 */
import { listenerOptions } from "./support/listener.ts";
import assert from "node:assert/strict";
import { createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { registerListenerMetrics } from "../lib/defense_metrics.ts";
import type { Fields, Level, Logger } from "../lib/log.ts";
import { Registry } from "../lib/prometheus.ts";
import { listen, type ServeHandler, type ServerOptions } from "../lib/server.ts";
import { SendLimits } from "../lib/send_limit.ts";
import { startFakeImgproxy } from "./support/fake_imgproxy.ts";
import { readUntilClosed, withTempDir } from "./support/net_fs.ts";
import { within } from "./support/within.ts";
import { AccessLines } from "./support/access_lines.ts";

const encoder = new TextEncoder();
const MiB = 1024 * 1024;

/** Lines kept, and a promise for the first WARN saying a client was too slow. */
class WatchingLogger implements Logger {
  readonly lines: { level: Level; msg: string; fields?: Fields }[] = [];
  #warned!: (fields: Fields | undefined) => void;
  readonly warned = new Promise<Fields | undefined>((r) => this.#warned = r);
  log(level: Level, msg: string, fields?: Fields): void {
    this.lines.push({ level, msg, fields });
    if (level === "WARN" && msg.includes("did not take its answer")) this.#warned(fields);
  }
}

function start(handler: ServeHandler, options: Partial<ServerOptions>) {
  const logger = new WatchingLogger();
  const server = listen(
    listenerOptions({ maxConnections: 100, sendTimeoutMs: 500, logger, ...options }),
    handler,
  );
  return { server, logger, port: server.addr.port };
}

/** Sends a request and reads nothing until the server has cut the connection. */
async function neverRead(port: number, logger: WatchingLogger, path = "/big") {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  await conn.write(encoder.encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
  let fields: Fields | undefined;
  try {
    fields = await within("the send limit cutting a client that never reads", logger.warned);
  } catch (err) {
    // Not cut: close it ourselves, so the server can shut down and the test fail cleanly.
    conn.close();
    throw err;
  }
  const elapsedMs = performance.now() - started;
  const result = await readUntilClosed(conn);
  return { fields, elapsedMs, ...result };
}

/** Reads the whole answer at a steady pace: a pause of `pauseMs` after each MiB. */
async function readSlowly(port: number, pauseMs: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode("GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  const buf = new Uint8Array(64 * 1024);
  let received = 0;
  let sincePause = 0;
  let ending = "eof";
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      received += n;
      sincePause += n;
      if (sincePause >= MiB) {
        sincePause = 0;
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    }
  } catch {
    ending = "reset";
  } finally {
    conn.close();
  }
  return { received, ending };
}

const HEAD_MAX = 512;

/**
 * An answer of `size` bytes streamed from JavaScript (as a tee'd miss or a counted body is),
 * produced only as fast as it is taken; `ended` says whether it was sent whole or cancelled.
 */
function streamed(size: number, ended: (how: "complete" | "cancelled") => void = () => {}) {
  let sent = 0;
  const chunk = new Uint8Array(256 * 1024);
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= size) {
        controller.close();
        ended("complete");
        return;
      }
      sent += chunk.length;
      controller.enqueue(chunk.slice());
    },
    cancel() {
      ended("cancelled");
    },
  });
  return new Response(body, { headers: { "content-length": String(size) } });
}

Deno.test("send limit: a client that never reads a large streamed answer is cut after grace + length/rate, counted and logged", async () => {
  const body = { length: 16 * MiB };
  const handler: ServeHandler = (req) =>
    new URL(req.url).pathname === "/big" ? streamed(body.length) : new Response("hello");
  // 0.5 s + 16 MiB at 16 MiB/s: 1.5 s.
  const { server, logger, port } = start(handler, { minSendBytesPerSec: 16 * MiB });
  try {
    const cut = await neverRead(port, logger);
    assert.ok(cut.closed, "the connection stayed open");
    assert.ok(cut.received < body.length, `received ${cut.received} of ${body.length}`);
    assert.ok(cut.elapsedMs >= 1400, `cut after ${cut.elapsedMs} ms, before the limit`);
    assert.equal(cut.fields?.owedBytes, body.length);
    assert.equal(server.stats.sendTimeouts, 1);
    assert.equal(server.stats.idleTimeouts, 0);
    const registry = new Registry();
    registerListenerMetrics(registry, { proxy: server.stats });
    assert.match(
      registry.render(),
      /^imgproxy_cache_connections_closed_total\{listener="proxy",reason="send_timeout"\} 1$/m,
    );
    // Others are served as before.
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(await res.text(), "hello");
    assert.equal(server.stats.sendTimeouts, 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("send limit: a slow but steady reader within the rate gets its whole answer; without the rate part it is cut", async () => {
  const body = { length: 32 * MiB };
  const handler: ServeHandler = () => streamed(body.length);
  // 0.5 s + 32 MiB at 4 MiB/s: 8.5 s; the reader takes 32 × 50 ms = 1.6 s and more.
  const steady = start(handler, { minSendBytesPerSec: 4 * MiB });
  // The grace alone (0.5 s) is less than the reader needs.
  const graceOnly = start(handler, { minSendBytesPerSec: 0 });
  try {
    const whole = await readSlowly(steady.port, 50);
    assert.equal(whole.ending, "eof");
    assert.ok(whole.received > body.length && whole.received < body.length + HEAD_MAX);
    assert.equal(steady.server.stats.sendTimeouts, 0);

    const cut = await readSlowly(graceOnly.port, 50);
    assert.ok(cut.received < body.length, `received ${cut.received} of ${body.length}`);
    assert.equal(graceOnly.server.stats.sendTimeouts, 1);
  } finally {
    await steady.server.shutdown();
    await graceOnly.server.shutdown();
  }
});

Deno.test("send limit: a file answer to a client that never reads is cut", async () => {
  await withTempDir("send-limit-", async (dir) => {
    const path = `${dir}/big.bin`;
    await Deno.writeFile(path, new Uint8Array(16 * MiB));
    const handler: ServeHandler = async () => {
      const file = await Deno.open(path);
      return new Response(file.readable, { headers: { "content-length": String(16 * MiB) } });
    };
    const { server, logger, port } = start(handler, { minSendBytesPerSec: 16 * MiB });
    try {
      const cut = await neverRead(port, logger);
      assert.ok(cut.closed);
      assert.ok(cut.received < 16 * MiB);
      assert.equal(server.stats.sendTimeouts, 1);
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("send limit: a fetched (pass-through) answer to a client that never reads is cut and the upstream body released", async () => {
  const size = 16 * MiB;
  let released!: (how: string) => void;
  const upstreamEnded = new Promise<string>((r) => released = r);
  const upstream = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => streamed(size, released),
  );
  const handler: ServeHandler = (req) =>
    new URL(req.url).pathname === "/big"
      ? fetch(`http://127.0.0.1:${upstream.addr.port}/`)
      : new Response("hello");
  const { server, logger, port } = start(handler, { minSendBytesPerSec: 16 * MiB });
  try {
    const cut = await neverRead(port, logger);
    assert.ok(cut.closed);
    assert.ok(cut.received < size);
    assert.equal(server.stats.sendTimeouts, 1);
    assert.equal(await within("the upstream body released", upstreamEnded), "cancelled");
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(await res.text(), "hello");
  } finally {
    await server.shutdown();
    await upstream.shutdown();
  }
});

for (const kind of ["local hit", "pass-through"] as const) {
  Deno.test(`send limit: the proxy's ${kind} to a client that never reads is cut and logged end=aborted without bytes`, async () => {
    const largeBytes = 16 * MiB;
    const fake = startFakeImgproxy({ largeBytes });
    const dir = await Deno.makeTempDir({ prefix: "send-limit-" });
    const env: Record<string, string> = {
      IMGPROXY_URL: fake.url,
      CACHE_DIR: dir,
      CACHE_MODE: "read",
      // A skipped path is neither looked up nor stored: imgproxy's body goes out as fetched.
      ...(kind === "pass-through" ? { CACHE_SKIP: "large" } : {}),
    };
    const access = new AccessLines();
    const app = await createApp(loadConfig((n) => env[n]), access);
    const { server, logger, port } = start(app.handler, { minSendBytesPerSec: 16 * MiB });
    const path = "/insecure/plain/http://example.com/large.png";
    try {
      if (kind === "local hit") {
        const filled = await fetch(`http://127.0.0.1:${port}${path}`);
        assert.equal((await filled.bytes()).length, largeBytes);
        await access.until(1);
        await app.uploader.drain(10_000);
      }
      const before = access.lines.length;
      const cut = await neverRead(port, logger, path);
      assert.ok(cut.closed);
      assert.ok(cut.received < largeBytes);
      assert.equal(server.stats.sendTimeouts, 1);
      await access.until(before + 1);
      const line = access.lines[before]!;
      assert.equal(line.cache, kind === "local hit" ? "HIT" : "BYPASS");
      assert.equal(line.status, 200);
      assert.equal(line.end, "aborted");
      assert.equal(line.bytes, undefined);
    } finally {
      await server.shutdown();
      await app.uploader.drain(2000);
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("send limit: shutting down with a client that never reads ends once the limit cuts it", async () => {
  let asked!: () => void;
  const handed = new Promise<void>((r) => asked = r);
  const handler: ServeHandler = () => {
    asked();
    return streamed(16 * MiB);
  };
  const { server, port } = start(handler, { minSendBytesPerSec: 16 * MiB });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode("GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
    await within("the request reaching the handler", handed);
    // The drain waits for answers in flight: the limit is what ends this one.
    await within("shutdown", server.shutdown());
    assert.equal(server.stats.sendTimeouts, 1);
    assert.equal(server.stats.open, 0);
  } finally {
    conn.close();
    await server.shutdown();
  }
});

Deno.test("send limit: a body held whole owes its length, read from the body; a stream its declared length", () => {
  const limits = new SendLimits({ graceMs: 60_000, minBytesPerSec: 1000 });
  const req = new Request("http://x/");
  const owedMs = (res: Response) => {
    const send = limits.connection(() => {});
    const before = performance.now();
    send.handedOver(req, res);
    const ms = send.since - before;
    send.close();
    return ms;
  };
  // 5000 bytes at 1000 B/s: 5 s, whether or not a length is declared (the runtime sends the
  // body's own length).
  const whole = owedMs(new Response(new Uint8Array(5000)));
  assert.ok(whole >= 5000 && whole < 5000 + 1000, `${whole}`);
  const declared = owedMs(
    new Response(new Uint8Array(5000), { headers: { "content-length": "5000" } }),
  );
  assert.ok(declared >= 5000 && declared < 5000 + 1000, `${declared}`);
  const stream = new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  const streamed = owedMs(new Response(stream, { headers: { "content-length": "3000" } }));
  assert.ok(streamed >= 3000 && streamed < 3000 + 1000, `${streamed}`);
  const undeclared = owedMs(
    new Response(new ReadableStream<Uint8Array>({ start: (c) => c.close() })),
  );
  assert.ok(undeclared >= 0 && undeclared < 1000, `${undeclared}`);
});
