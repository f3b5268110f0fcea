/**
 * A PUT whose own connection cannot be opened (nothing sent) goes over `fetch`, which connects its
 * own way (every address of the store's name, where a connection of the store's own tries the
 * first): when `fetch` reaches the store, PUTs stay on `fetch` and the store says so once; when it
 * does not either, the store was down and the next PUT tries its own connection again.
 */
import assert from "node:assert/strict";
import type { S3Store } from "../lib/store/s3.ts";
import { pathStyleStore } from "./support/s3_store.ts";
import { StoreError } from "../lib/store/store.ts";

const PUT_OPTIONS = { contentType: "image/png", cacheControl: null, ifAbsent: false } as const;

/** A store that takes every PUT (over `fetch`, since the test's own connections never open). */
function startStore() {
  const puts: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.arrayBuffer();
    puts.push(`${req.method} ${new URL(req.url).pathname}`);
    return new Response(null, { headers: { etag: '"1"' } });
  });
  return { port: server.addr.port, puts, close: () => server.shutdown() };
}

function storeAt(port: number, connect: () => Promise<Deno.Conn>, notes: string[]): S3Store {
  return pathStyleStore(`http://127.0.0.1:${port}`, "bkt", {
    connect,
    onPutFallback: (reason) => notes.push(reason),
  });
}

/** A connection that cannot be opened, as to a name's unreachable first address. */
function unreachable(calls: { n: number }) {
  return () => {
    calls.n++;
    return Promise.reject(new Deno.errors.ConnectionRefused("Connection refused (os error 111)"));
  };
}

Deno.test("S3 PUT: own connection not opened, fetch reaches the store: stored, and PUTs stay on fetch", async () => {
  const server = startStore();
  const calls = { n: 0 };
  const notes: string[] = [];
  const store = storeAt(server.port, unreachable(calls), notes);
  try {
    const body = new Uint8Array(1024).fill(7);
    assert.equal(await store.put("a", body, PUT_OPTIONS), "stored");
    assert.equal(await store.put("b", body, PUT_OPTIONS), "stored");
    assert.deepEqual(server.puts, ["PUT /bkt/a", "PUT /bkt/b"], "both stored, over fetch");
    assert.equal(calls.n, 1, "no own connection tried once fetch got through");
    assert.equal(notes.length, 1, "said once");
    assert.match(notes[0]!, /cannot connect: Connection refused/);
  } finally {
    await store.close();
    await server.close();
  }
});

Deno.test("S3 PUT: own connection not opened and fetch fails too: a retryable error, own connections tried again", async () => {
  // A port nothing listens on: the store is down for both.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const calls = { n: 0 };
  const notes: string[] = [];
  const store = storeAt(port, unreachable(calls), notes);
  try {
    const body = new Uint8Array(1024).fill(7);
    for (let i = 0; i < 2; i++) {
      const err = await store.put("a", body, PUT_OPTIONS).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof StoreError, `a StoreError, got ${err}`);
      assert.equal(err.retryable, true);
      // Our connection's error, which names what failed, not fetch's.
      assert.match(err.message, /os error 111/);
    }
    assert.equal(calls.n, 2, "each PUT tries its own connection first");
    assert.deepEqual(notes, [], "nothing to say: fetch did no better");
  } finally {
    await store.close();
  }
});

Deno.test("S3 PUT: an aborted PUT whose connection could not be opened is not sent over fetch", async () => {
  const server = startStore();
  const notes: string[] = [];
  const abort = new AbortController();
  const store = storeAt(server.port, () => {
    abort.abort(new DOMException("shutdown", "AbortError"));
    return Promise.reject(new Deno.errors.ConnectionRefused("refused"));
  }, notes);
  try {
    const err = await store.put("a", new Uint8Array(10), { ...PUT_OPTIONS, signal: abort.signal })
      .then(() => null, (e: unknown) => e);
    assert.ok(err instanceof StoreError, `a StoreError, got ${err}`);
    assert.deepEqual(server.puts, [], "nothing sent");
    assert.deepEqual(notes, []);
  } finally {
    await store.close();
    await server.close();
  }
});
