/**
 * The store's own HTTP/1.1 connections (lib/store/http1.ts) at their edges, over real sockets: an
 * abort that lands while a connection is being handed over, a store closed while one is being
 * opened, header bytes as `fetch` sends them (and none that could split the head), and the
 * start-up check's marker PUT leaving no connection open behind it.
 */
import assert from "node:assert/strict";
import { Http1Origin } from "../lib/store/http1.ts";
import { within } from "./support/within.ts";
import { startCapture } from "./support/capture.ts";
import { pathStyleStore } from "./support/s3_store.ts";
import type { S3StoreConfig } from "../lib/config.ts";

import { checkS3Store } from "../lib/store/s3_check.ts";

/**
 * A server that reads requests and answers each head it reads with `answer` (or nothing; `close`:
 * then closes the connection).
 */
function startRaw(answer: (head: string) => string | { text: string; close: true } | null) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  /** Every head read, and how many bytes each connection sent in all when it ended. */
  const heads: string[] = [];
  /** Which connection (1, 2...) each head came on. */
  const on: number[] = [];
  let opened = 0;
  const ended: number[] = [];
  let waiters: (() => void)[] = [];
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const byId = new Map<number, Deno.Conn>();
  const handle = async (conn: Deno.Conn) => {
    conns.add(conn);
    const id = ++opened;
    byId.set(id, conn);
    let text = "";
    let total = 0;
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        total += n;
        text += new TextDecoder("latin1").decode(buf.subarray(0, n));
        for (;;) {
          const end = text.indexOf("\r\n\r\n");
          if (end < 0) break;
          const head = text.slice(0, end);
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (text.length < end + 4 + length) break;
          text = text.slice(end + 4 + length);
          heads.push(head);
          on.push(id);
          wake();
          const a = answer(head);
          const out = typeof a === "string" ? a : a?.text;
          if (out !== undefined) await conn.write(new TextEncoder().encode(out));
          if (typeof a === "object" && a !== null) return;
          if (out !== undefined && /\r\nconnection: close\r\n/i.test(out)) return;
        }
      }
    } catch {
      /* closed */
    } finally {
      ended.push(total);
      wake();
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) void handle(conn);
  })().catch(() => {});
  return {
    port: listener.addr.port,
    heads,
    on,
    ended,
    /** Writes `text` on connection `id` (1, 2...), asked for or not. */
    async write(id: number, text: string) {
      await byId.get(id)!.write(new TextEncoder().encode(text));
    },
    /** Resolves once `pred` holds (checked as the server reads). */
    async until(pred: () => boolean) {
      while (!pred()) await new Promise<void>((r) => waiters.push(r));
    },
    async close() {
      listener.close();
      for (const c of conns) c.close();
      await accepting;
    },
  };
}

const OK = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
const head = (n: number) => ({ host: "127.0.0.1", "content-length": String(n) });

Deno.test("Http1Origin: an abort that lands after the connection opened and before the request was written ends the request", async () => {
  const server = startRaw(() => null); // reads, never answers
  try {
    // The abort comes `ticks` microtasks after the connection is handed over: each position
    // between the open and the write, one after another.
    for (let ticks = 0; ticks < 16; ticks++) {
      const ctrl = new AbortController();
      const origin = new Http1Origin(async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        let p = Promise.resolve();
        for (let i = 0; i < ticks; i++) p = p.then(() => {});
        void p.then(() => ctrl.abort(new DOMException("deadline", "TimeoutError")));
        return conn;
      });
      try {
        const err = await within(
          `the request aborted ${ticks} microtasks after its connection opened`,
          origin.request("PUT", "/b/k", head(3), new Uint8Array(3), 100, ctrl.signal).then(
            () => null,
            (e: unknown) => e,
          ),
        );
        assert.ok(err instanceof DOMException && err.name === "TimeoutError", `${ticks}: ${err}`);
      } finally {
        origin.close();
      }
    }
  } finally {
    await server.close();
  }
});

Deno.test("Http1Origin: a store closed while a connection is being opened sends nothing on it", async () => {
  const server = startRaw(() => OK);
  let opened!: () => void;
  const gate = new Promise<void>((r) => opened = r);
  let asked!: () => void;
  const connecting = new Promise<void>((r) => asked = r);
  const origin = new Http1Origin(async () => {
    asked();
    await gate;
    return await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  });
  try {
    const request = origin.request("PUT", "/b/k", head(3), new Uint8Array(3), 100).then(
      () => null,
      (e: unknown) => e,
    );
    await within("the connection being opened", connecting);
    origin.close();
    opened();
    const err = await within("the request", request);
    assert.ok(err instanceof DOMException && err.name === "AbortError", String(err));
    // The connection that opened too late was closed unused.
    await within("the late connection ending", server.until(() => server.ended.length === 1));
    assert.deepEqual([server.heads, server.ended], [[], [0]]);
  } finally {
    origin.close();
    await server.close();
  }
});

Deno.test("S3 PUT on the store's connections: header values leave as the bytes fetch sends, and none can split the head", async () => {
  const cap = startCapture(() => 'HTTP/1.1 200 OK\r\nETag: "1"\r\nContent-Length: 0\r\n\r\n');
  const store = pathStyleStore(`http://127.0.0.1:${cap.port}`, "bkt");
  const origin = new Http1Origin(() => Deno.connect({ hostname: "127.0.0.1", port: cap.port }));
  try {
    // A Cache-Control imgproxy passed on from a source, with a Latin-1 byte in it (HTTP's
    // obs-text): fetch sends the byte as is.
    const value = "max-age=60, caf\u00e9";
    await (await fetch(`http://127.0.0.1:${cap.port}/by-fetch`, {
      method: "PUT",
      headers: { "cache-control": value },
      body: "x",
    })).body?.cancel();
    const options = { contentType: "image/png", cacheControl: value, ifAbsent: false };
    await store.put("k", new Uint8Array(1), options).catch(() => {});
    const sent = cap.requests.map((r) => r.headers.find(([n]) => n === "cache-control")?.[1]);
    assert.deepEqual(sent, [value, value], "the same bytes as fetch's");
    // Line breaks or a NUL in a header value, a bad header name, or a target with blanks: fetch
    // refuses them (TypeError) before sending anything, and so does the store's own connection.
    const bad: [string, Record<string, string>][] = [
      ["/b/k", { ...head(1), "content-type": "image/png\r\nx-amz-acl: public-read" }],
      ["/b/k", { ...head(1), "content-type": "image/png\nx: y" }],
      ["/b/k", { ...head(1), "x-amz-meta-a": "a\0b" }],
      ["/b/k", { ...head(1), "x-amz-meta-a\r\nx": "1" }],
      ["/b/k HTTP/1.1\r\nx: y\r\n\r\nPUT /b/j", head(1)],
      ["/b/\u0100", head(1)],
    ];
    for (const [target, headers] of bad) {
      await assert.rejects(
        origin.request("PUT", target, headers, new Uint8Array(1), 100),
        TypeError,
        JSON.stringify([target, headers]),
      );
    }
    for (const h of [[["content-type", "a\r\nb"]], [["a\r\nx", "1"]]] as [string, string][][]) {
      assert.throws(() => new Headers(h), TypeError, "fetch refuses it too");
    }
    assert.equal(cap.requests.length, 2, "nothing was sent");
  } finally {
    store.client.destroy();
    origin.close();
    await store.close();
    await cap.close();
  }
});

Deno.test("The start-up check closes the connection its marker PUT kept open", async () => {
  // HeadBucket refused (the check then writes its marker), the PUT answered on a kept connection.
  const close = "Content-Length: 0\r\nConnection: close\r\n\r\n";
  let endedAtProbe = -1;
  const server = startRaw((h) => {
    if (h.startsWith("HEAD ")) return `HTTP/1.1 403 Forbidden\r\n${close}`;
    if (h.startsWith("PUT ")) return 'HTTP/1.1 200 OK\r\nETag: "1"\r\nContent-Length: 0\r\n\r\n';
    endedAtProbe = server.ended.length;
    return `HTTP/1.1 200 OK\r\n${close}`;
  });
  const saved = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"].map((n) => [n, Deno.env.get(n)]);
  Deno.env.set("AWS_ACCESS_KEY_ID", "AKID");
  Deno.env.set("AWS_SECRET_ACCESS_KEY", "secret");
  try {
    const config: S3StoreConfig = {
      kind: "s3",
      bucket: "bkt",
      endpoint: `http://127.0.0.1:${server.port}`,
      region: "us-east-1",
      forcePathStyle: true,
      conditionalWrite: false,
    };
    const result = await checkS3Store(config, { folder: "", timeoutMs: 10_000 });
    assert.equal(result.kind, "ok", JSON.stringify(result));
    assert.ok(server.heads.some((h) => h.startsWith("PUT /bkt/.imgproxy-cache-check")));
    // The check closed the PUT's connection before it returned (left to itself, the store
    // closes it after 4 s idle): its end reached the server before a request sent after it.
    await (await fetch(`http://127.0.0.1:${server.port}/probe`)).body?.cancel();
    assert.equal(endedAtProbe, 2, "the HeadBucket's and the PUT's connections had ended");
  } finally {
    for (const [n, v] of saved) v === undefined ? Deno.env.delete(n!) : Deno.env.set(n!, v);
    await server.close();
  }
});

Deno.test("Http1Origin: a store closed under a waiting request fails it as closed, and an abort after that is harmless", async () => {
  const server = startRaw(() => null); // reads, never answers
  const origins: Http1Origin[] = [];
  try {
    for (const abortAfter of [false, true]) {
      const origin = new Http1Origin(() =>
        Deno.connect({ hostname: "127.0.0.1", port: server.port })
      );
      origins.push(origin);
      const ctrl = new AbortController();
      const read = server.heads.length + 1;
      const request = origin.request("PUT", "/b/k", head(1), new Uint8Array(1), 100, ctrl.signal)
        .then(() => null, (e: unknown) => e);
      await within(
        "the request reaching the server",
        server.until(() => server.heads.length === read),
      );
      origin.close();
      // The deadline or shutdown fires before the request has seen its connection end: the
      // connection is not closed a second time (that threw in the signal's listener: an
      // uncaught error, which ends the program).
      const reason = new DOMException("shutting down", "AbortError");
      if (abortAfter) ctrl.abort(reason);
      const err = await within("the request", request);
      assert.ok(err instanceof DOMException && err.name === "AbortError", String(err));
      if (abortAfter) assert.equal(err, reason);
      else assert.match(err.message, /closed/);
    }
  } finally {
    for (const o of origins) o.close();
    await server.close();
  }
});

Deno.test("Http1Origin: a kept connection that fails after part of the answer is not sent again", async () => {
  // The server saw the request and began to answer: a resend could store twice what the first
  // answer was about to say (or answer a request it never got); the error is the caller's.
  for (
    const partial of [
      "HTTP/1.1 200 O",
      'HTTP/1.1 200 OK\r\nETag: "1"\r\nContent-Length: 5\r\n\r\nab',
    ]
  ) {
    let n = 0;
    const server = startRaw(() => ++n === 1 ? OK : { text: partial, close: true });
    const origin = new Http1Origin(() =>
      Deno.connect({ hostname: "127.0.0.1", port: server.port })
    );
    try {
      assert.equal(
        (await origin.request("PUT", "/b/k", head(1), new Uint8Array(1), 100)).status,
        200,
      );
      await assert.rejects(
        within(
          "the second request",
          origin.request("PUT", "/b/k", head(1), new Uint8Array(1), 100),
        ),
        (e: Error) => e.name !== "ConnectionClosed",
      );
      assert.deepEqual(server.on, [1, 1], "both on the kept connection, the second never resent");
    } finally {
      origin.close();
      await server.close();
    }
  }
});

Deno.test("Http1Origin: a kept connection that gets bytes while idle is not used again: the next request goes on a new one", async () => {
  // An answer no request asked for (a 2xx here) must never be taken for the next request's.
  const server = startRaw(() => OK);
  // Kept idle for an hour: only the stray bytes can end the connection here.
  const origin = new Http1Origin(
    () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
    3600_000,
  );
  try {
    const first = await origin.request("PUT", "/b/k", head(1), new Uint8Array(1), 100);
    assert.equal(first.status, 200);
    await server.write(1, 'HTTP/1.1 201 Created\r\nETag: "stray"\r\nContent-Length: 0\r\n\r\n');
    // The client closes the connection as soon as the stray bytes arrive.
    await within("the idle connection closed", server.until(() => server.ended.length === 1));
    const second = await origin.request("PUT", "/b/k", head(2), new Uint8Array(2), 100);
    assert.equal(second.status, 200, "the server's answer, not the stray 201");
    assert.equal(second.headers.get("etag"), null);
    assert.deepEqual(server.on, [1, 2], "the second request on a new connection");
  } finally {
    origin.close();
    await server.close();
  }
});

Deno.test("Http1Origin: a kept connection is used again, its pending read handed to the answer", async () => {
  const server = startRaw(() => OK);
  const origin = new Http1Origin(() => Deno.connect({ hostname: "127.0.0.1", port: server.port }));
  try {
    for (let i = 0; i < 3; i++) {
      assert.equal(
        (await origin.request("PUT", "/b/k", head(1), new Uint8Array(1), 100)).status,
        200,
      );
    }
    assert.deepEqual(server.on, [1, 1, 1], "one kept connection");
  } finally {
    origin.close();
    await server.close();
  }
});

Deno.test("Http1Origin: an idle kept connection does not keep a finished program up", async () => {
  // The program keeps its connection for an hour and never closes it: it must still end once
  // its work is done, with the connection idle.
  const server = startRaw(() => OK);
  try {
    const code = `
      import { Http1Origin } from ${
      JSON.stringify(new URL("../lib/store/http1.ts", import.meta.url).href)
    };
      const origin = new Http1Origin(() => Deno.connect({ hostname: "127.0.0.1", port: ${server.port} }), 3600_000);
      const a = await origin.request("PUT", "/b/k", { host: "127.0.0.1", "content-length": "1" }, new Uint8Array(1), 100);
      console.log(a.status);
    `;
    const child = new Deno.Command("deno", {
      args: ["eval", "--no-lock", code],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = await within("the program's end", child.output()).catch(async (err) => {
      child.kill();
      await child.status;
      throw err;
    });
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "200");
    assert.deepEqual(server.on, [1]);
  } finally {
    await server.close();
  }
});
