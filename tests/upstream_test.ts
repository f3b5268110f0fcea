/**
 * The upstream client against a raw TCP server that records the request line's exact bytes.
 */
import assert from "node:assert/strict";
import { createUpstream, fetchPreservesTarget, type UpstreamRequest } from "../lib/upstream.ts";
import { upstreamRequestHeaders } from "../lib/headers.ts";

const encoder = new TextEncoder();
const latin1 = (b: Uint8Array) => String.fromCharCode(...b);

interface RawServer {
  port: number;
  base: string;
  /** Request heads received (request line + headers), as raw bytes. */
  heads: Uint8Array[];
  /** Resolves when a connection is closed by the client before the server finished. */
  clientClosed: Promise<void>;
  close(): Promise<void>;
}

/**
 * A tiny HTTP/1.1 server: one request per connection. The request target selects the answer:
 * `cut` (Content-Length 100, 10 bytes, close), `hang` (headers and 3 bytes, then nothing until
 * the client leaves), `stall` (nothing at all until the client leaves), `s600` (a status no
 * Response can carry), `badreason` (404 with DEL in its reason phrase), else a 200 with two
 * Set-Cookie headers and body "hello" (no body for HEAD).
 */
function startRawServer(): RawServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const heads: Uint8Array[] = [];
  const conns = new Set<Promise<void>>();
  const closed = Promise.withResolvers<void>();
  const open = new Set<Deno.Conn>();

  async function serve(conn: Deno.Conn): Promise<void> {
    open.add(conn);
    try {
      let data = new Uint8Array(0);
      const buf = new Uint8Array(16384);
      let end = -1;
      while (end === -1) {
        const n = await conn.read(buf);
        if (n === null) return;
        const next = new Uint8Array(data.byteLength + n);
        next.set(data);
        next.set(buf.subarray(0, n), data.byteLength);
        data = next;
        end = latin1(data).indexOf("\r\n\r\n");
      }
      const head = data.subarray(0, end);
      heads.push(head);
      const requestLine = latin1(head).split("\r\n")[0]!;
      const [method, target] = requestLine.split(" ");
      const write = (s: string) => conn.write(encoder.encode(s));
      if (target!.includes("stall")) {
        await conn.read(buf).catch(() => null);
        closed.resolve();
        return;
      }
      if (target!.includes("cut")) {
        await write(
          "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n0123456789",
        );
        return;
      }
      if (target!.includes("s600")) {
        await write("HTTP/1.1 600 Weird\r\nContent-Length: 0\r\n\r\n");
        return;
      }
      if (target!.includes("badreason")) {
        await write("HTTP/1.1 404 Not\x7fFound\r\nContent-Length: 2\r\n\r\nno");
        return;
      }
      if (target!.includes("hang")) {
        await write("HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\nabc");
        await conn.read(buf).catch(() => null);
        closed.resolve();
        return;
      }
      await write(
        "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n" +
          "X-Echo: yes\r\nContent-Length: 5\r\nConnection: close\r\n\r\n" +
          (method === "HEAD" ? "" : "hello"),
      );
    } catch {
      // The client went away.
    } finally {
      open.delete(conn);
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }

  const accepting = (async () => {
    for await (const conn of listener) {
      const p = serve(conn);
      conns.add(p);
      p.finally(() => conns.delete(p));
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    heads,
    clientClosed: closed.promise,
    async close() {
      listener.close();
      await accepting.catch(() => {});
      for (const c of open) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await Promise.all(conns);
    },
  };
}

function request(target: string, init: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return {
    method: "GET",
    target,
    headers: new Headers({ accept: "image/webp" }),
    body: null,
    signal: new AbortController().signal,
    ...init,
  };
}

/** Targets as received by the proxy, and whether `fetch` would send them unchanged. */
const TARGETS: [string, boolean][] = [
  ["/_/rs:fill:300:300/plain/http://example.com/image.jpg", true],
  ["/_/plain/http://example.com/image.jpg?a=1&b=2", true],
  ["/_/plain/http://example.com/a/../b.jpg", false],
  ["/_/plain/http://example.com/%2e%2e/b.jpg", false],
  ["/_/plain/http://example.com/./c.jpg", false],
  ["/_/plain/http://example.com//double.jpg", true],
  ['/_/plain/http://example.com/"{}".jpg', false],
  ["/_/plain/http://example.com/back\\slash.jpg", false],
  ["/_/plain/http://example.com/café/日本.jpg", false],
  ["/_/plain/http://example.com/x.jpg?q=%2e%2e/../{}", true],
  ['/_/plain/http://example.com/x.jpg?q="<x>"', false],
];

Deno.test("upstream sends the raw target's bytes on the wire, by fetch or node:http", async () => {
  const server = startRawServer();
  try {
    const upstream = createUpstream(server.base);
    for (const [target, viaFetch] of TARGETS) {
      assert.equal(fetchPreservesTarget(server.base + target), viaFetch, target);
      const res = await upstream(request(target));
      assert.equal(res.status, 200, target);
      assert.equal(await res.text(), "hello", target);
    }
    const lines = server.heads.map((h) => latin1(h).split("\r\n")[0]);
    const expected = TARGETS.map(([t]) => `GET ${latin1(encoder.encode(t))} HTTP/1.1`);
    assert.deepEqual(lines, expected);
  } finally {
    await server.close();
  }
});

Deno.test("headers built as pairs go on the wire as the same Headers would, on both paths", async () => {
  const server = startRawServer();
  try {
    const upstream = createUpstream(server.base);
    const incoming = new Headers([
      ["Host", "img.example"],
      ["User-Agent", "test/1"],
      ["Accept", "image/avif"],
      ["accept", "image/webp"],
      ["Connection", "keep-alive, X-Named"],
      ["X-Named", "1"],
      ["Cookie", "a=b"],
      ["Set-Cookie", "s=1"],
      ["Set-Cookie", "t=2"],
      ["Zz", "last"],
    ]);
    const client = { ip: "10.0.0.7", host: "img.example", proto: "http" };
    const pairs = upstreamRequestHeaders(incoming, client);
    const asHeaders = new Headers([...pairs]);
    for (const target of ["/ok.jpg", "/a/../ok.jpg"]) {
      for (const headers of [pairs, asHeaders]) {
        const res = await upstream(request(target, { headers }));
        assert.equal(await res.text(), "hello", target);
      }
    }
    const heads = server.heads.map((h) => latin1(h));
    assert.equal(heads.length, 4);
    assert.equal(heads[0], heads[1], "fetch");
    assert.equal(heads[2], heads[3], "node:http");
    assert.match(heads[0]!, /\r\naccept: image\/avif, image\/webp\r\n/);
    assert.match(heads[0]!, /\r\nx-forwarded-for: 10\.0\.0\.7\r\n/);
    assert.doesNotMatch(heads[0]!, /x-named/i);
  } finally {
    await server.close();
  }
});

Deno.test("upstream keeps the base URL's path prefix on both paths", async () => {
  const server = startRawServer();
  try {
    const upstream = createUpstream(server.base + "/imgproxy");
    for (const target of ["/_/plain/http://ex.com/a.jpg", "/_/plain/http://ex.com/../a.jpg"]) {
      const res = await upstream(request(target));
      await res.body?.cancel();
    }
    assert.deepEqual(server.heads.map((h) => latin1(h).split("\r\n")[0]), [
      "GET /imgproxy/_/plain/http://ex.com/a.jpg HTTP/1.1",
      "GET /imgproxy/_/plain/http://ex.com/../a.jpg HTTP/1.1",
    ]);
  } finally {
    await server.close();
  }
});

Deno.test("upstream passes status, headers and multiple Set-Cookie on both paths", async () => {
  const server = startRawServer();
  try {
    const upstream = createUpstream(server.base);
    for (const target of ["/ok.jpg", "/a/../ok.jpg"]) {
      const res = await upstream(request(target, { headers: new Headers({ "x-req": "1" }) }));
      assert.equal(res.status, 200, target);
      assert.equal(res.headers.get("content-type"), "image/png", target);
      assert.equal(res.headers.get("x-echo"), "yes", target);
      assert.deepEqual(res.headers.getSetCookie(), ["a=1", "b=2"], target);
      assert.equal(await res.text(), "hello", target);
    }
    for (const head of server.heads) assert.match(latin1(head), /\r\nx-req: 1(\r\n|$)/i);
  } finally {
    await server.close();
  }
});

Deno.test("upstream HEAD answers have no body on both paths", async () => {
  const server = startRawServer();
  try {
    const upstream = createUpstream(server.base);
    for (const target of ["/ok.jpg", "/a/../ok.jpg"]) {
      const res = await upstream(request(target, { method: "HEAD" }));
      assert.equal(res.status, 200, target);
      assert.equal(res.body, null, target);
      assert.equal(res.headers.get("content-length"), "5", target);
    }
  } finally {
    await server.close();
  }
});

Deno.test("upstream errors the body stream when the body is cut short, on both paths", async () => {
  const server = startRawServer();
  try {
    const upstream = createUpstream(server.base);
    for (const target of ["/cut.jpg", "/a/../cut.jpg"]) {
      const res = await upstream(request(target));
      assert.equal(res.status, 200, target);
      await assert.rejects(res.bytes(), target);
    }
  } finally {
    await server.close();
  }
});

Deno.test("upstream abort rejects a pending request and closes the connection, on both paths", async () => {
  for (const target of ["/stall.jpg", "/a/../stall.jpg"]) {
    const server = startRawServer();
    try {
      const upstream = createUpstream(server.base);
      const ac = new AbortController();
      const pending = upstream(request(target, { signal: ac.signal }));
      while (server.heads.length === 0) await new Promise((r) => setTimeout(r, 5));
      ac.abort();
      await assert.rejects(pending, target);
      await server.clientClosed;
    } finally {
      await server.close();
    }
  }
});

Deno.test("upstream abort cancels a body in flight and closes the connection, on both paths", async () => {
  for (const target of ["/hang.jpg", "/a/../hang.jpg"]) {
    const server = startRawServer();
    try {
      const upstream = createUpstream(server.base);
      const ac = new AbortController();
      const res = await upstream(request(target, { signal: ac.signal }));
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      const first = await reader.read();
      assert.deepEqual(first.value, encoder.encode("abc"));
      ac.abort();
      await assert.rejects(reader.read(), target);
      await server.clientClosed;
    } finally {
      await server.close();
    }
  }
});

Deno.test("upstream: an answer no Response can carry rejects (a 502), never throws; a bad reason phrase is dropped", async () => {
  const server = startRawServer();
  try {
    const upstream = createUpstream(server.base);
    // On the node:http path a throw in its callback would be uncaught and end the process.
    for (const target of ["/s600.jpg", "/a/../s600.jpg"]) {
      await assert.rejects(upstream(request(target)), /status 600|600/, target);
    }
    // node:http reads such a reason phrase; the proxy drops it and passes the 404 on. fetch's
    // parser refuses the whole answer (a 502), which is fine too: what matters is no crash.
    const res = await upstream(request("/a/../badreason.jpg"));
    assert.equal(res.status, 404);
    assert.equal(res.statusText, "");
    assert.equal(await res.text(), "no");
    await assert.rejects(upstream(request("/badreason.jpg")));
  } finally {
    await server.close();
  }
});

Deno.test("upstream: a request without a body sends no Content-Length, whatever the client declared", async () => {
  // Deno.serve gives a GET no body even when it declared one: imgproxy must not wait for it.
  const server = startRawServer();
  try {
    const upstream = createUpstream(server.base);
    for (const target of ["/ok.jpg", "/a/../ok.jpg"]) {
      const headers = new Headers({ "content-length": "5", "x-req": "1" });
      const res = await upstream(request(target, { headers }));
      assert.equal(await res.text(), "hello", target);
    }
    assert.equal(server.heads.length, 2);
    for (const head of server.heads) {
      assert.doesNotMatch(latin1(head), /\r\ncontent-length:/i, latin1(head));
      assert.match(latin1(head), /\r\nx-req: 1/i);
    }
  } finally {
    await server.close();
  }
});
