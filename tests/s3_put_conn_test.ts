/**
 * The S3 store's PUT over its own HTTP/1.1 connections, against a real local socket server that
 * misbehaves the ways stores and networks do: a kept connection closed between PUTs, a
 * connection reset in the middle of a body, no answer until the deadline, an XML error, chunked
 * and informational answers. Each failure must be classified as it was when PUTs went out over
 * `fetch`: the same server is asked by `fetch` as well, and the classifications compared.
 */
import assert from "node:assert/strict";
import { classifyS3Error, type S3Store } from "../lib/store/s3.ts";
import { StoreError } from "../lib/store/store.ts";
import { Http1Origin } from "../lib/store/http1.ts";
import { OWN_PUT_MAX } from "../lib/store/s3_put.ts";
import { within } from "./support/within.ts";
import { pathStyleStore } from "./support/s3_store.ts";

/** One request as the server read it. */
interface Got {
  method: string;
  /** Body bytes read. */
  bytes: number;
  length: number;
  /** Which connection it came on (1, 2...). */
  conn: number;
}

/** What the server does with a request: read `readUpTo` body bytes, answer, close or hang. */
interface Act {
  readUpTo?: number;
  reply?: string;
  close?: boolean;
  hang?: boolean;
}

const CRLF2 = new TextEncoder().encode("\r\n\r\n");

function find(buf: Uint8Array, n: number): number {
  outer: for (let i = 0; i + 4 <= n; i++) {
    for (let j = 0; j < 4; j++) if (buf[i + j] !== CRLF2[j]) continue outer;
    return i;
  }
  return -1;
}

function startStore(act: (got: Got) => Act) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const got: Got[] = [];
  const conns = new Set<Deno.Conn>();
  let connCount = 0;
  let waiters: (() => void)[] = [];
  /** Connections the client ended (the server read their end), by id. */
  const ended: number[] = [];
  let endWaiters: (() => void)[] = [];
  const handle = async (conn: Deno.Conn, id: number) => {
    conns.add(conn);
    let buf = new Uint8Array(1 << 20);
    let n = 0;
    const more = async () => {
      if (n === buf.length) {
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
      const r = await conn.read(buf.subarray(n));
      if (r === null) {
        ended.push(id);
        const w = endWaiters;
        endWaiters = [];
        for (const f of w) f();
        return false;
      }
      n += r;
      return true;
    };
    let hung = false;
    try {
      for (;;) {
        let end = find(buf, n);
        while (end === -1) {
          if (!await more()) return;
          end = find(buf, n);
        }
        const head = new TextDecoder().decode(buf.subarray(0, end));
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        const req: Got = { method: head.split(" ")[0]!, bytes: 0, length, conn: id };
        const a = act(req);
        const want = Math.min(length, a.readUpTo ?? length);
        while (n - end - 4 < want) if (!await more()) return;
        req.bytes = want;
        got.push(req);
        const rest = buf.slice(end + 4 + want, n);
        buf.set(rest);
        n = rest.length;
        const w = waiters;
        waiters = [];
        for (const f of w) f();
        if (a.hang) {
          hung = true; // closed by the client's abort, or at the end
          return;
        }
        if (a.reply !== undefined) await conn.write(new TextEncoder().encode(a.reply));
        if (a.close) return;
      }
    } catch {
      /* the client went away */
    } finally {
      if (!hung) {
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) handle(conn, ++connCount);
  })().catch(() => {});
  return {
    port: listener.addr.port,
    got,
    ended,
    /** Resolves when the client has ended `count` connections in all. */
    async endedCount(count: number) {
      while (ended.length < count) await new Promise<void>((r) => endWaiters.push(r));
    },
    /** Resolves when the server has read the next request. */
    nextRequest: () => new Promise<void>((r) => waiters.push(r)),
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await accepting;
    },
  };
}

function storeAt(port: number): S3Store {
  return pathStyleStore(`http://127.0.0.1:${port}`, "bkt");
}

const OK = 'HTTP/1.1 200 OK\r\nETag: "1"\r\nContent-Length: 0\r\n\r\n';
const PUT_OPTIONS = { contentType: "image/png", cacheControl: null, ifAbsent: false } as const;

/** The same PUT by `fetch`, as the store sent PUTs before: its failure, classified. */
async function byFetch(port: number, body: Uint8Array, signal?: AbortSignal) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/bkt/k?x-id=PutObject`, {
      method: "PUT",
      body: body as Uint8Array<ArrayBuffer>,
      signal,
    });
    await res.body?.cancel();
    return null;
  } catch (err) {
    return classifyS3Error(err, "PutObject k");
  }
}

async function failure(p: Promise<unknown>): Promise<StoreError> {
  const err = await p.then(() => null, (e: unknown) => e);
  assert.ok(err instanceof StoreError, `a StoreError, got ${err}`);
  return err;
}

Deno.test("S3 PUT on the store's connections: connections are kept, and one the store closed while idle is replaced without an error", async () => {
  let closing = false;
  const server = startStore(() => ({ reply: OK, close: closing }));
  const store = storeAt(server.port);
  try {
    const body = new Uint8Array(30 * 1024).fill(1);
    for (let i = 0; i < 3; i++) {
      assert.equal(await store.put(`k${i}`, body, PUT_OPTIONS), "stored");
    }
    assert.deepEqual(server.got.map((g) => g.conn), [1, 1, 1], "one kept connection");
    // From now on the store closes each connection after its answer, saying nothing: the next
    // PUT finds its kept connection dead before any answer and is sent again on a new one.
    closing = true;
    for (let i = 0; i < 5; i++) {
      assert.equal(await store.put(`c${i}`, body, PUT_OPTIONS), "stored");
    }
    const after = server.got.slice(3);
    assert.equal(after.length, 5, "each PUT read once, whole");
    assert.ok(after.every((g) => g.bytes === body.byteLength));
    assert.deepEqual(after.map((g) => g.conn), [1, 2, 3, 4, 5]);
    // Bodies up to OWN_PUT_MAX go on the store's kept connection; a larger one over fetch.
    closing = false;
    const most = new Uint8Array(OWN_PUT_MAX).fill(8);
    const large = new Uint8Array(OWN_PUT_MAX + 1).fill(9);
    for (const b of [most, most, large]) {
      assert.equal(await store.put("b", b, PUT_OPTIONS), "stored");
    }
    assert.deepEqual(
      server.got.slice(8).map((g) => [g.conn, g.bytes, g.length]),
      [[6, most.length, most.length], [6, most.length, most.length], [
        7,
        large.length,
        large.length,
      ]],
    );
  } finally {
    store.client.destroy();
    await store.close();
    await server.close();
  }
});

Deno.test("S3 PUT on the store's connections: a store that says Connection: close gets a new connection for each PUT, each sent once", async () => {
  const server = startStore(() => ({
    reply: 'HTTP/1.1 200 OK\r\nETag: "1"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
  }));
  const store = storeAt(server.port);
  try {
    const body = new Uint8Array(1000).fill(1);
    for (let i = 0; i < 4; i++) assert.equal(await store.put(`k${i}`, body, PUT_OPTIONS), "stored");
    assert.deepEqual(server.got.map((g) => g.conn), [1, 2, 3, 4]);
    // The store closed each one itself: the server read their ends.
    await within("the client ending its connections", server.endedCount(4));
  } finally {
    store.client.destroy();
    await store.close();
    await server.close();
  }
});

Deno.test("S3 PUT on the store's connections: a kept connection that dies before answering is retried once, and a new one that does is a retryable error", async () => {
  let mode: "ok" | "drop" = "ok";
  const server = startStore(() => mode === "ok" ? { reply: OK } : { close: true });
  const store = storeAt(server.port);
  try {
    const body = new Uint8Array(2000).fill(4);
    assert.equal(await store.put("k", body, PUT_OPTIONS), "stored");
    mode = "drop";
    const err = await failure(store.put("k", body, PUT_OPTIONS));
    assert.equal(err.retryable, true, err.message);
    assert.match(err.message, /^PutObject k: ConnectionClosed: /);
    // The kept connection, then one new connection: never a third try.
    assert.deepEqual(server.got.map((g) => g.conn), [1, 1, 2]);
    const before = await byFetch(server.port, body);
    assert.ok(before !== null && before.retryable, "fetch fails the same way");
  } finally {
    store.client.destroy();
    await store.close();
    await server.close();
  }
});

Deno.test("S3 PUT on the store's connections: informational and chunked answers are read to their end, and only then is the connection used again", async () => {
  const xml = '<?xml version="1.0"?>\n<Error><Code>SlowDown</Code>' +
    "<Message>Please &quot;reduce&quot; your rate</Message></Error>";
  const chunked = (text: string) =>
    `${text.length.toString(16)}\r\n${text}\r\n0\r\nx-trailer: 1\r\n\r\n`;
  const answers = [
    // An informational answer first, then the final one: chunked, empty.
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nETag: "1"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    // An error document in two chunks, with a trailer.
    `HTTP/1.1 503 Slow Down\r\nTransfer-Encoding: chunked\r\n\r\n` +
    `${(xml.length - 10).toString(16)}\r\n${xml.slice(0, -10)}\r\n` + chunked(xml.slice(-10)),
    // An HTTP/1.0 answer without keep-alive; one with bytes after its end; one whose body runs
    // to the end of the connection: none of their connections can be used again (the server
    // leaves the first two open).
    "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n",
    "HTTP/1.1 200 OK\r\n\r\nsome text",
    OK,
    OK,
  ];
  let i = 0;
  const server = startStore(() => ({ reply: answers[i++]!, close: i === 5 }));
  const store = storeAt(server.port);
  try {
    const body = new Uint8Array(100).fill(5);
    assert.equal(await within("PUT", store.put("k", body, PUT_OPTIONS)), "stored");
    const err = await within("PUT", failure(store.put("k", body, PUT_OPTIONS)));
    assert.deepEqual([err.code, err.retryable, err.message], [
      "SlowDown",
      true,
      'PutObject k: SlowDown (HTTP 503): Please "reduce" your rate',
    ]);
    for (let n = 0; n < 5; n++) {
      assert.equal(await within("PUT", store.put("k", body, PUT_OPTIONS)), "stored");
    }
    // The first two answers were read to their end (the connection kept); each of the next
    // three left its connection unusable, so the PUT after it went on a new one.
    assert.deepEqual(server.got.map((g) => g.conn), [1, 1, 1, 2, 3, 4, 4]);
  } finally {
    store.client.destroy();
    await store.close();
    await server.close();
  }
});

Deno.test("S3 PUT on the store's connections: idle connections are closed after a while, and all of them when the store closes", async () => {
  const server = startStore(() => ({ reply: OK }));
  const origin = new Http1Origin(
    () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
    200,
  );
  const store = storeAt(server.port);
  try {
    const head = (n: number) => ({ host: "127.0.0.1", "content-length": String(n) });
    const a = await origin.request("PUT", "/bkt/a", head(3), new Uint8Array(3), 100);
    assert.equal(a.status, 200);
    // A request too large to copy beside its head is written in two pieces, and arrives whole.
    const large = await origin.request(
      "PUT",
      "/bkt/b",
      head(1 << 20),
      new Uint8Array(1 << 20),
      100,
    );
    assert.equal(large.status, 200);
    assert.deepEqual(server.got.map((g) => [g.bytes, g.length]), [[3, 3], [1 << 20, 1 << 20]]);
    // No request for longer than the idle time: the connection is closed by the client.
    await within("the client ending its connections", server.endedCount(1));
    // Connections kept an hour: only closing ends them.
    const kept = new Http1Origin(
      () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      3_600_000,
    );
    await Promise.all(
      [1, 2, 3].map((n) => kept.request("PUT", `/bkt/k${n}`, head(1), new Uint8Array(1), 100)),
    );
    const conns = new Set(server.got.slice(2).map((g) => g.conn)).size;
    assert.equal(conns, 3);
    kept.close();
    await within("the client ending its connections", server.endedCount(1 + conns));
    // A closed store opens no connection.
    const body = new Uint8Array(10);
    assert.equal(await store.put("k", body, PUT_OPTIONS), "stored");
    await store.close();
    const err = await failure(store.put("k", body, PUT_OPTIONS));
    assert.equal(err.retryable, false, err.message);
  } finally {
    store.client.destroy();
    origin.close();
    await store.close();
    await server.close();
  }
});

Deno.test("S3 PUT on the store's connections: a connection reset in the middle of the body is a retryable StoreError, as by fetch", async () => {
  const server = startStore(() => ({ readUpTo: 64 * 1024, close: true }));
  const store = storeAt(server.port);
  try {
    const body = new Uint8Array(OWN_PUT_MAX).fill(2);
    const err = await failure(store.put("k", body, PUT_OPTIONS));
    assert.equal(err.retryable, true, err.message);
    assert.match(err.message, /^PutObject k: /);
    const before = await byFetch(server.port, body);
    assert.ok(before !== null, "fetch fails too");
    assert.equal(err.retryable, before.retryable);
    assert.ok(server.got.length >= 2 && server.got.every((g) => g.bytes < g.length));
  } finally {
    store.client.destroy();
    await store.close();
    await server.close();
  }
});

Deno.test("S3 PUT on the store's connections: an aborted PUT (deadline, shutdown) is classified as by fetch", async () => {
  const server = startStore(() => ({ hang: true }));
  const store = storeAt(server.port);
  try {
    const body = new Uint8Array(30 * 1024).fill(3);
    for (
      const [reason, retryable] of [
        [new DOMException("no answer within 1 s", "TimeoutError"), true],
        [new DOMException("shutting down", "AbortError"), false],
      ] as const
    ) {
      const viaConn = new AbortController();
      const asked = server.nextRequest();
      const put = failure(store.put("k", body, { ...PUT_OPTIONS, signal: viaConn.signal }));
      await within("the PUT reaching the server", asked);
      viaConn.abort(reason);
      const err = await put;
      const viaFetch = new AbortController();
      const fetchAsked = server.nextRequest();
      const before = byFetch(server.port, body, viaFetch.signal);
      await within("fetch's PUT reaching the server", fetchAsked);
      viaFetch.abort(reason);
      const was = await before;
      assert.ok(was !== null);
      assert.equal(err.retryable, retryable, err.message);
      assert.equal(err.code, reason.name);
      assert.deepEqual([err.code, err.retryable, err.message], [
        was.code,
        was.retryable,
        was.message,
      ]);
    }
    // An already aborted signal sends nothing.
    const count = server.got.length;
    const gone = AbortSignal.abort(new DOMException("gone", "AbortError"));
    const err = await failure(store.put("k", body, { ...PUT_OPTIONS, signal: gone }));
    assert.equal(err.code, "AbortError");
    assert.equal(server.got.length, count);
  } finally {
    store.client.destroy();
    await store.close();
    await server.close();
  }
});

Deno.test("S3 PUT on the store's connections: an error answer (XML body, or none) is the same StoreError as a GET's by fetch", async () => {
  const xml = '<?xml version="1.0"?>\n<Error><Code>AccessDenied</Code>' +
    "<Message>Access &#34;denied&#34; &amp; logged</Message></Error>";
  const answers = [
    `HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: ${xml.length}\r\n\r\n${xml}`,
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n",
  ];
  let answer = answers[0]!;
  const server = startStore(() => ({ reply: answer }));
  const store = storeAt(server.port);
  try {
    const expected = [
      ["AccessDenied", false, 'PutObject k: AccessDenied (HTTP 403): Access "denied" & logged'],
      ["UnknownError", false, "PutObject k: UnknownError (HTTP 400): Bad Request"],
      ["UnknownError", true, "PutObject k: UnknownError (HTTP 503): Service Unavailable"],
    ];
    for (const [i, a] of answers.entries()) {
      answer = a;
      const err = await failure(store.put("k", new Uint8Array(10), PUT_OPTIONS));
      assert.deepEqual([err.code, err.retryable, err.message], expected[i]);
      const got = await failure(store.get("k"));
      assert.deepEqual(
        [got.code, got.retryable, got.message.replace("GetObject", "PutObject")],
        expected[i],
      );
    }
  } finally {
    store.client.destroy();
    await store.close();
    await server.close();
  }
});
