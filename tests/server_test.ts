/**
 * The listener over real sockets: hostile clients (idle, slowloris, too many) are closed or
 * pushed out while normal requests keep being served; a taken address is a ListenError; answers
 * finished while shutting down carry `Connection: close`, and those still in flight at the
 * shutdown deadline are cut and told apart from answers sent in full; a request head the runtime
 * refuses is counted.
 */
import { listenerOptions } from "./support/listener.ts";
import assert from "node:assert/strict";
import { MemoryLogger } from "../lib/log.ts";
import { listen, ListenError, type ServeHandler, type ServerOptions } from "../lib/server.ts";
import { freePort, readUntilClosed } from "./support/net_fs.ts";
import { within } from "./support/within.ts";

const encoder = new TextEncoder();

function start(handler: ServeHandler, options: Partial<ServerOptions> = {}) {
  const logger = new MemoryLogger();
  const server = listen(
    listenerOptions({
      headerTimeoutMs: 500,
      idleTimeoutMs: 500,
      maxConnections: 1000,
      logger,
      ...options,
    }),
    handler,
  );
  return { server, logger, port: server.addr.port };
}

const hello: ServeHandler = () => new Response("hello");

Deno.test("listen: a connection that never completes its request head is closed after the header timeout", async () => {
  const { server, port } = start(hello);
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n"));
    const started = performance.now();
    const { text, closed } = await readUntilClosed(conn);
    assert.ok(closed, "the server kept a connection without a complete head open");
    assert.equal(text, "");
    assert.ok(performance.now() - started >= 400, "closed before the header timeout");
    assert.equal(server.stats.headerTimeouts, 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("listen: slowloris (a byte every 100 ms, never finishing) is closed at the header timeout", async () => {
  const { server, port } = start(hello, { headerTimeoutMs: 600 });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const head = "GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + "a".repeat(1000);
    let stop = false;
    const trickle = (async () => {
      for (let i = 0; i < head.length && !stop; i++) {
        try {
          await conn.write(encoder.encode(head[i]!));
        } catch {
          return; // the server closed it
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const { closed } = await readUntilClosed(conn);
    stop = true;
    await trickle;
    assert.ok(closed, "a trickling head kept the connection open");
    assert.equal(server.stats.headerTimeouts, 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("listen: an idle kept-alive connection is closed, one with a request in flight is not", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  const handler: ServeHandler = (req) => {
    if (new URL(req.url).pathname === "/slow") {
      // A body that takes three idle timeouts to arrive.
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(encoder.encode("a"));
          await released;
          controller.enqueue(encoder.encode("b"));
          controller.close();
        },
      });
      return new Response(body);
    }
    return new Response("hello");
  };
  const { server, port } = start(handler, { idleTimeoutMs: 300 });
  try {
    const idle = await Deno.connect({ hostname: "127.0.0.1", port });
    await idle.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    const busy = await Deno.connect({ hostname: "127.0.0.1", port });
    await busy.write(encoder.encode("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
    const idleResult = await readUntilClosed(idle);
    assert.ok(idleResult.closed);
    assert.match(idleResult.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nhello$/);
    // The idle one was closed after a whole idle timeout; give the busy one two more.
    await new Promise((r) => setTimeout(r, 600));
    release();
    const busyResult = await readUntilClosed(busy);
    assert.match(busyResult.text, /\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n$/);
    assert.equal(server.stats.idleTimeouts, 2); // the idle one, then the busy one once done
    assert.equal(server.stats.headerTimeouts, 0);
  } finally {
    release();
    await server.shutdown();
  }
});

Deno.test("listen: at the connection cap, idle hostile connections make room for real requests", async () => {
  // Long timeouts: only the cap's eviction can free a slot within the test.
  const { server, port } = start(hello, {
    maxConnections: 20,
    headerTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
  });
  const hostile: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 100; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      await c.write(encoder.encode("GET / HTTP/1.1\r\n"));
      hostile.push(c);
    }
    const started = performance.now();
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } });
      assert.equal(await res.text(), "hello");
    }
    const ms = performance.now() - started;
    assert.ok(ms < 10_000, `30 requests took ${ms} ms`);
    assert.ok(server.stats.open <= 20, `${server.stats.open} open`);
    assert.ok(server.stats.evicted >= 30, `evicted ${server.stats.evicted}`);
  } finally {
    for (const c of hostile) c.close();
    await server.shutdown();
  }
});

Deno.test("listen: at the cap with every connection busy, a new one waits for a slot", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  let calls = 0;
  const handler: ServeHandler = async () => {
    if (calls++ === 0) await released;
    return new Response(`answer ${calls}`, { headers: { connection: "close" } });
  };
  const { server, port } = start(handler, { maxConnections: 1 });
  try {
    const first = fetch(`http://127.0.0.1:${port}/`);
    while (calls === 0) await new Promise((r) => setTimeout(r, 5));
    let secondDone = false;
    const second = fetch(`http://127.0.0.1:${port}/`).then(async (r) => {
      secondDone = true;
      return await r.text();
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(secondDone, false, "a busy connection was evicted or the cap ignored");
    assert.equal(calls, 1);
    release();
    assert.equal(await (await first).text(), "answer 1");
    assert.equal(await second, "answer 2");
  } finally {
    release();
    await server.shutdown();
  }
});

Deno.test("listen: a taken address is a ListenError naming the variable and the address", () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    assert.throws(
      () =>
        listen(
          listenerOptions({
            variable: "METRICS_BIND",
            port,
            headerTimeoutMs: 1000,
            idleTimeoutMs: 1000,
            maxConnections: 10,
            sendTimeoutMs: 1000,
          }),
          hello,
        ),
      (err: unknown) => {
        assert.ok(err instanceof ListenError);
        assert.equal(
          err.message,
          `METRICS_BIND: cannot listen on 127.0.0.1:${port}: address already in use (os error 98)`,
        );
        return true;
      },
    );
  } finally {
    taken.close();
  }
});

Deno.test("listen: answers finished while shutting down carry Connection: close, then the connection closes", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  let arrived!: () => void;
  const inFlight = new Promise<void>((r) => arrived = r);
  const handler: ServeHandler = async () => {
    arrived();
    await released;
    return new Response("done");
  };
  const { server, port } = start(handler, { idleTimeoutMs: 60_000 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  await within("the request reaching the handler", inFlight);
  const shutdown = server.shutdown();
  release();
  const { text, closed } = await readUntilClosed(conn);
  await shutdown;
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(text, /\r\nconnection: close\r\n/i);
  assert.ok(text.endsWith("\r\n\r\ndone"), text);
  assert.ok(closed);
  await server.finished;
  // Nothing listens any more.
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
});

Deno.test("listen: a port freed by shutdown can be listened on again", async () => {
  const port = freePort();
  const a = start(hello, { port });
  await a.server.shutdown();
  const b = start(hello, { port });
  const res = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(await res.text(), "hello");
  await b.server.shutdown();
});

Deno.test("listen: a request head the runtime refuses is answered 400 without the handler, and counted", async () => {
  let handled = 0;
  const { server, port } = start(() => {
    handled++;
    return new Response("hello");
  }, { idleTimeoutMs: 60_000, headerTimeoutMs: 60_000 });
  // Not a token where the method goes: the runtime's parser answers it.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode("G@T / HTTP/1.1\r\nHost: x\r\n\r\n"));
  const { text, closed } = await readUntilClosed(conn);
  assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.ok(closed);
  // A connection that delivered a request is not counted.
  const res = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(await res.text(), "hello");
  // Shutdown waits for every connection to end: the count is final then.
  await server.shutdown();
  assert.equal(handled, 1);
  assert.equal(server.stats.withoutRequest, 1);
  assert.equal(server.stats.headerTimeouts + server.stats.idleTimeouts, 0);
});

Deno.test("listen: cutInFlight() cuts an answer still streaming, tells it was not sent, and shutdown ends", async () => {
  let ended!: Promise<string>;
  let answering!: () => void;
  const answered = new Promise<void>((r) => answering = r);
  const handler: ServeHandler = (_req, info, sent) => {
    // Declares 100 bytes, sends 10, then nothing: still going at the deadline.
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(10));
      },
    });
    ended = info.completed.then(
      () => new Promise<string>((resolve) => sent!.known(resolve)),
      () => "completed rejected",
    );
    answering();
    return new Response(body, { headers: { "content-length": "100" } });
  };
  // No timeout of the listener's own may cut it first.
  const { server, port } = start(handler, { idleTimeoutMs: 60_000, sendTimeoutMs: 60_000 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  await within("the answer being handed over", answered);
  const first = new Uint8Array(1024);
  assert.ok((await conn.read(first)) !== null);
  const shutdown = server.shutdown();
  server.cutInFlight();
  const { closed } = await readUntilClosed(conn, 10_000);
  assert.ok(closed, "the connection was not cut");
  await within("shutdown once the cut answer is done with", shutdown);
  assert.equal(await ended, "aborted");
});
