import assert from "node:assert/strict";
import { coalesce, coalescingKey, fanOut } from "../lib/coalesce.ts";
import { contextOf, type RequestContext, serveContexts } from "../lib/context.ts";
import { upstreamRequestHeaders } from "../lib/headers.ts";

/** A slow streaming upstream served over a real socket, counting the requests it gets. */
function slowUpstream(chunks: number, chunkDelayMs: number, headerDelayMs = 100) {
  const state = { requests: 0, cancelled: 0 };
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    state.requests++;
    // Like imgproxy: the headers come once the image is processed.
    await new Promise((r) => setTimeout(r, headerDelayMs));
    if (req.url.includes("fail")) return new Response("Bad Gateway", { status: 502 });
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (i >= chunks) return c.close();
        await new Promise((r) => setTimeout(r, chunkDelayMs));
        c.enqueue(new Uint8Array(100).fill(i++));
      },
      cancel() {
        state.cancelled++;
      },
    });
    return new Response(body, { headers: { "content-type": "image/png" } });
  });
  return { server, state, url: `http://127.0.0.1:${server.addr.port}` };
}

function serveCoalesced(upstreamUrl: string) {
  const stats = { coalesced: 0 };
  const inner = (ctx: RequestContext) =>
    fetch(upstreamUrl + ctx.target, { headers: ctx.req.headers });
  const handler = serveContexts(coalesce(inner, { stats }));
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, handler);
  return { server, stats, url: `http://127.0.0.1:${server.addr.port}` };
}

for (const given of [false, true]) {
  // Given the headers imgproxy gets (as the coalescer is), or reading them from the request.
  const keyOf = (req: Request) =>
    coalescingKey(
      req,
      "/a",
      given ? upstreamRequestHeaders(req.headers, { proto: "http" }) : undefined,
    );
  Deno.test(`coalescingKey() keys on what imgproxy gets, ${given ? "given" : "from the request"}`, () => {
    const key = (init: RequestInit) => keyOf(new Request("http://h/a", init));
    assert.equal(key({ headers: { range: "bytes=0-1", connection: "range" } }), key({}));
    assert.equal(key({ headers: { dpr: "2", connection: "close, dpr" } }), key({}));
    assert.notEqual(key({ headers: { dpr: "2", connection: "close" } }), key({}));
    assert.equal(
      key({ headers: [["accept", "image/webp"], ["Accept", "*/*"]] }),
      key({ headers: { accept: "image/webp, */*" } }),
    );
    assert.notEqual(key({ headers: { "sec-ch-dpr": "1" } }), key({ headers: { dpr: "1" } }));
  });
}

Deno.test("coalescingKey() shares only plain GETs with the same target and shaping headers", () => {
  const key = (init: RequestInit & { url?: string }) =>
    coalescingKey(new Request(init.url ?? "http://h/a", init), "/a");
  assert.equal(key({}), key({ headers: { "user-agent": "x" } }));
  assert.equal(key({ method: "HEAD" }), null);
  assert.equal(key({ headers: { range: "bytes=0-1" } }), null);
  assert.equal(key({ headers: { "if-none-match": '"x"' } }), null);
  assert.equal(key({ headers: { cookie: "a=b" } }), null);
  assert.notEqual(key({ headers: { authorization: "Bearer a" } }), key({}));
  assert.notEqual(
    key({ headers: { authorization: "Bearer a" } }),
    key({ headers: { authorization: "Bearer b" } }),
  );
  assert.notEqual(key({ headers: { accept: "image/webp" } }), key({}));
  assert.equal(
    key({ headers: { accept: "image/webp,*/*" } }),
    key({ headers: { accept: "image/webp" } }),
  );
  assert.notEqual(key({ headers: { dpr: "2" } }), key({}));
});

Deno.test("coalesce() makes one upstream request for concurrent identical requests", async () => {
  const up = slowUpstream(5, 20);
  const proxy = serveCoalesced(up.url);
  try {
    const responses = await Promise.all(
      Array.from({ length: 8 }, () => fetch(`${proxy.url}/x/plain/a.png`)),
    );
    const bodies = await Promise.all(responses.map((r) => r.bytes()));
    assert.equal(up.state.requests, 1);
    assert.equal(proxy.stats.coalesced, 7);
    for (const b of bodies) {
      assert.equal(b.byteLength, 500);
      assert.equal(b[499], 4);
    }
    // Once the flight is over, a new request goes upstream again.
    await (await fetch(`${proxy.url}/x/plain/a.png`)).bytes();
    assert.equal(up.state.requests, 2);
  } finally {
    await proxy.server.shutdown();
    await up.server.shutdown();
  }
});

Deno.test("coalesce() keeps streaming to the others when one client goes away", async () => {
  const up = slowUpstream(6, 30);
  const proxy = serveCoalesced(up.url);
  try {
    const [first, second] = await Promise.all([
      fetch(`${proxy.url}/x/plain/b.png`),
      fetch(`${proxy.url}/x/plain/b.png`),
    ]);
    const reader = first!.body!.getReader();
    await reader.read();
    await reader.cancel();
    const rest = await second!.bytes();
    assert.equal(rest.byteLength, 600);
    assert.equal(up.state.requests, 1);
    assert.equal(up.state.cancelled, 0);
  } finally {
    await proxy.server.shutdown();
    await up.server.shutdown();
  }
});

Deno.test("coalesce() gives every waiting client the upstream failure", async () => {
  const up = slowUpstream(1, 1);
  const proxy = serveCoalesced(up.url);
  try {
    const responses = await Promise.all(
      Array.from({ length: 4 }, () => fetch(`${proxy.url}/fail`)),
    );
    for (const r of responses) {
      assert.equal(r.status, 502);
      await r.body?.cancel();
    }
    assert.ok(up.state.requests <= 4);
  } finally {
    await proxy.server.shutdown();
    await up.server.shutdown();
  }
});

Deno.test("coalesce() does not share across different Authorization headers", async () => {
  const up = slowUpstream(3, 20);
  const proxy = serveCoalesced(up.url);
  try {
    const responses = await Promise.all([
      fetch(`${proxy.url}/x/plain/c.png`, { headers: { authorization: "Bearer one" } }),
      fetch(`${proxy.url}/x/plain/c.png`, { headers: { authorization: "Bearer two" } }),
    ]);
    await Promise.all(responses.map((r) => r.bytes()));
    assert.equal(up.state.requests, 2);
  } finally {
    await proxy.server.shutdown();
    await up.server.shutdown();
  }
});

Deno.test("coalesce() does not join a request that arrives once the body is streaming", async () => {
  const up = slowUpstream(6, 40, 50);
  const proxy = serveCoalesced(up.url);
  try {
    const first = await fetch(`${proxy.url}/x/plain/d.png`);
    const late = await fetch(`${proxy.url}/x/plain/d.png`);
    assert.equal((await first.bytes()).byteLength, 600);
    assert.equal((await late.bytes()).byteLength, 600);
    assert.equal(up.state.requests, 2);
    assert.equal(proxy.stats.coalesced, 0);
  } finally {
    await proxy.server.shutdown();
    await up.server.shutdown();
  }
});

function source(chunks: number) {
  const state = { cancelled: false, read: 0 };
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      await new Promise((r) => setTimeout(r, 5));
      if (i >= chunks) return c.close();
      state.read++;
      c.enqueue(new Uint8Array([i++]));
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { body, state };
}

Deno.test("fanOut() gives every stream every chunk, and a cancelled one leaves alone", async () => {
  const { body, state } = source(5);
  const [a, b, c] = fanOut(body, 3);
  await c!.cancel();
  const [ba, bb] = await Promise.all([new Response(a).bytes(), new Response(b).bytes()]);
  assert.deepEqual([...ba], [0, 1, 2, 3, 4]);
  assert.deepEqual([...bb], [0, 1, 2, 3, 4]);
  assert.equal(state.cancelled, false);
});

Deno.test("fanOut() cancels the source when every stream is cancelled", async () => {
  const { body, state } = source(1000);
  const streams = fanOut(body, 2);
  const reader = streams[0]!.getReader();
  await reader.read();
  await reader.cancel();
  assert.equal(state.cancelled, false);
  await streams[1]!.cancel();
  assert.equal(state.cancelled, true);
  assert.ok(state.read < 1000);
});

Deno.test("fanOut() passes a source error to every stream", async () => {
  let n = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (n++ === 1) c.error(new Error("upstream reset"));
      else c.enqueue(new Uint8Array([1]));
    },
  });
  const streams = fanOut(body, 2);
  for (const s of streams) {
    await assert.rejects(new Response(s).bytes(), /upstream reset/);
  }
});

Deno.test("coalesce() keeps the shared request going when the first client leaves early", async () => {
  const up = slowUpstream(3, 10, 300);
  const proxy = serveCoalesced(up.url);
  try {
    const leaderGone = new AbortController();
    const leader = fetch(`${proxy.url}/x/plain/e.png`, { signal: leaderGone.signal });
    await new Promise((r) => setTimeout(r, 50));
    const follower = fetch(`${proxy.url}/x/plain/e.png`);
    await new Promise((r) => setTimeout(r, 50));
    leaderGone.abort();
    await assert.rejects(leader);
    const res = await follower;
    assert.equal(res.status, 200);
    assert.equal((await res.bytes()).byteLength, 300);
    assert.equal(up.state.requests, 1);
  } finally {
    await proxy.server.shutdown();
    await up.server.shutdown();
  }
});

Deno.test("fanOut() keeps the fast stream going and fails one that falls too far behind", async () => {
  const { body, state } = source(200);
  const [fast, silent] = fanOut(body, 2, { highWaterMark: 4, maxLagBytes: 16 });
  const got = await new Response(fast).bytes();
  // The fast stream got everything at its own pace; the silent one was dropped once it held
  // 16 unread bytes, so nothing more was kept for it.
  assert.equal(got.byteLength, 200);
  assert.equal(state.cancelled, false);
  await assert.rejects(new Response(silent).bytes(), /fell more than 16 bytes behind/);
});

Deno.test("fanOut() lets a slow stream that stays within the lag limit finish", async () => {
  const { body } = source(20);
  const [fast, slow] = fanOut(body, 2, { highWaterMark: 4, maxLagBytes: 64 });
  const slowRead = (async () => {
    const reader = slow!.getReader();
    const out: number[] = [];
    for (;;) {
      await new Promise((r) => setTimeout(r, 15));
      const { done, value } = await reader.read();
      if (done) return out;
      out.push(...value);
    }
  })();
  const [f, sl] = await Promise.all([new Response(fast).bytes(), slowRead]);
  assert.equal(f.byteLength, 20);
  assert.deepEqual(sl, [...f]);
});

Deno.test("coalesce() never hands a live client the answer of a flight everyone left", async () => {
  const up = slowUpstream(2, 10, 300);
  const proxy = serveCoalesced(up.url);
  try {
    const gone = new AbortController();
    const first = fetch(`${proxy.url}/x/plain/f.png`, { signal: gone.signal });
    await new Promise((r) => setTimeout(r, 50));
    gone.abort();
    await assert.rejects(first);
    await new Promise((r) => setTimeout(r, 10));
    const res = await fetch(`${proxy.url}/x/plain/f.png`);
    assert.equal(res.status, 200);
    assert.equal((await res.bytes()).byteLength, 200);
  } finally {
    await proxy.server.shutdown();
    await up.server.shutdown();
  }
});

Deno.test("coalesce() never removes a newer flight when an abandoned one fails late", async () => {
  // Flight A is abandoned by its only client, flight B starts for the same target, then A's
  // upstream call fails: C must still join B, not start a third upstream request.
  const calls: PromiseWithResolvers<Response>[] = [];
  const inner = () => {
    const d = Promise.withResolvers<Response>();
    calls.push(d);
    return d.promise;
  };
  const coalesced = coalesce(inner, { stats: { coalesced: 0 } });
  const handler = (req: Request) => coalesced(contextOf(req));
  const url = "http://h/x/plain/f.png";
  const gone = new AbortController();
  const a = handler(new Request(url, { signal: gone.signal }));
  await Promise.resolve();
  gone.abort();
  const b = handler(new Request(url));
  await Promise.resolve();
  assert.equal(calls.length, 2);
  calls[0]!.reject(new Error("imgproxy went away"));
  await assert.rejects(a);
  const c = handler(new Request(url));
  await Promise.resolve();
  assert.equal(calls.length, 2, "C started its own upstream request instead of joining B");
  calls[1]!.resolve(new Response("img", { headers: { "content-type": "image/png" } }));
  assert.equal(await (await b).text(), "img");
  assert.equal(await (await c).text(), "img");
});
