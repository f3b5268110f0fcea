/**
 * How an answer's body ended, told by its connection: the rules of `ConnectionAnswers`, then the
 * access log over real sockets on the proxy's listener, for bodies the runtime streams natively
 * (a file, a fetched body), whose `completed` resolves even when the client reset the connection.
 */
import { listenerOptions } from "./support/listener.ts";
import assert from "node:assert/strict";
import { ConnectionAnswers, endOf, type SettleTimer } from "../lib/answer_sent.ts";
import { withAccessLog } from "../lib/access_log.ts";
import { type BodyEnd, type ContextHandler, serveContexts } from "../lib/context.ts";
import { listen } from "../lib/server.ts";
import { AccessLines } from "./support/access_lines.ts";

/** A settle timer the test fires by hand. */
class ManualTimer implements SettleTimer {
  readonly due = new Set<() => void>();
  add(fn: () => void): () => void {
    this.due.add(fn);
    return () => void this.due.delete(fn);
  }
  fire(): void {
    const calls = [...this.due];
    this.due.clear();
    for (const fn of calls) fn();
  }
}

Deno.test("ConnectionAnswers: a later request on the connection proves the answer before it was sent", () => {
  const timer = new ManualTimer();
  const answers = new ConnectionAnswers(timer);
  const first = answers.next();
  const ends: BodyEnd[] = [];
  first.known((end) => ends.push(end));
  assert.deepEqual(ends, [], "nothing known yet");
  answers.next();
  assert.deepEqual(ends, ["complete"]);
  assert.equal(timer.due.size, 0, "its wait is cancelled");
  answers.ended(new Error("BrokenPipe: Broken pipe (os error 32)"));
  assert.deepEqual(ends, ["complete"], "told once");
});

Deno.test("ConnectionAnswers: a connection that ends with an error cuts the answer it was writing", () => {
  for (
    const [error, expected] of [
      [new Error("BrokenPipe: Broken pipe (os error 32)"), "aborted"],
      [new Error("ConnectionReset: Connection reset by peer (os error 104)"), "aborted"],
      [new TypeError("error reading a body from connection"), "error"],
      [null, "complete"],
    ] as const
  ) {
    const timer = new ManualTimer();
    const answers = new ConnectionAnswers(timer);
    const ends: BodyEnd[] = [];
    answers.next().known((end) => ends.push(end));
    answers.ended(error);
    assert.deepEqual(ends, [expected], String(error));
    assert.equal(timer.due.size, 0);
    // Asked after the end: told at once, the same.
    answers.next().known((end) => ends.push(end));
    assert.deepEqual(ends, [expected, expected]);
    timer.fire();
    assert.equal(ends.length, 2);
  }
});

Deno.test("ConnectionAnswers: an answer on a connection left open counts as sent once the wait passes", () => {
  const timer = new ManualTimer();
  const answers = new ConnectionAnswers(timer);
  const ends: BodyEnd[] = [];
  answers.next().known((end) => ends.push(end));
  timer.fire();
  assert.deepEqual(ends, ["complete"]);
  answers.ended(new Error("BrokenPipe"));
  assert.deepEqual(ends, ["complete"], "told once");
});

Deno.test("ConnectionAnswers: each answer waiting is told by the first request after it, in any order asked", () => {
  const timer = new ManualTimer();
  const answers = new ConnectionAnswers(timer);
  const ends: string[] = [];
  // Multiplexed (HTTP/2): several answers under way, asked about out of order.
  const a = answers.next();
  const b = answers.next();
  const c = answers.next();
  c.known((end) => ends.push(`c ${end}`));
  b.known((end) => ends.push(`b ${end}`));
  assert.deepEqual(ends, ["b complete"], "an answer with a request after it is known at once");
  a.known((end) => ends.push(`a ${end}`));
  assert.deepEqual(ends, ["b complete", "a complete"]);
  assert.equal(timer.due.size, 1, "only the last one waits");
  // One waiting, a request after it: told; the new one waits for its own proof.
  const d = answers.next();
  assert.deepEqual(ends, ["b complete", "a complete", "c complete"]);
  assert.equal(timer.due.size, 0);
  d.known((end) => ends.push(`d ${end}`));
  assert.equal(timer.due.size, 1);
  answers.ended(new Error("ConnectionReset: Connection reset by peer (os error 104)"));
  assert.deepEqual(ends, ["b complete", "a complete", "c complete", "d aborted"]);
  assert.equal(timer.due.size, 0, "no wait left behind");
});

Deno.test("ConnectionAnswers: one answer at a time, each told once, by the request after it", () => {
  const timer = new ManualTimer();
  const answers = new ConnectionAnswers(timer);
  const ends: string[] = [];
  for (let i = 0; i < 5; i++) {
    const sent = answers.next();
    assert.deepEqual(ends.length, i, "the answer before was told when this request arrived");
    sent.known((end) => ends.push(`${i} ${end}`));
    assert.equal(timer.due.size, 1, "the answer waits alone");
  }
  // The last waits for the wait, then is told, once.
  timer.fire();
  answers.next();
  answers.ended(null);
  assert.deepEqual(ends, ["0 complete", "1 complete", "2 complete", "3 complete", "4 complete"]);
});

Deno.test("endOf() tells the client's side failing from the body failing", () => {
  assert.equal(endOf(null), "complete");
  assert.equal(endOf(new Deno.errors.Http("BrokenPipe: Broken pipe (os error 32)")), "aborted");
  assert.equal(endOf(new Deno.errors.Http("error reading a body from connection")), "error");
});

/** Larger than the socket buffers on both sides: a client that stops reading cuts it. */
const BIG = 16 << 20;

/**
 * The proxy's listener with the access log in front of `inner`, keeping each answer as `inner`
 * built it and as it reached the runtime; a file of `BIG` bytes and an upstream serving it.
 */
async function withListener(
  fn: (env: {
    base: URL;
    lines: AccessLines;
    built: Response[];
    returned: Response[];
  }) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "answer-sent-" });
  const file = `${dir}/big.bin`;
  await Deno.writeFile(file, new Uint8Array(BIG).fill(7));
  const upstream = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async () => {
    const f = await Deno.open(file);
    return new Response(f.readable, { headers: { "content-length": String(BIG) } });
  });
  const inner: ContextHandler = async (ctx) => {
    if (ctx.target === "/whole") return new Response(new Uint8Array(BIG).fill(3));
    if (ctx.target === "/fetched") return await fetch(`http://127.0.0.1:${upstream.addr.port}/`);
    const f = await Deno.open(file);
    return new Response(f.readable, { headers: { "content-length": String(BIG) } });
  };
  const lines = new AccessLines();
  const built: Response[] = [];
  const returned: Response[] = [];
  const handler = serveContexts(withAccessLog(async (ctx) => {
    const res = await inner(ctx);
    built.push(res);
    return res;
  }, lines));
  const server = listen(listenerOptions(), async (req, info, sent) => {
    const res = await handler(req, info, sent);
    returned.push(res);
    return res;
  });
  try {
    await fn({ base: new URL(`http://127.0.0.1:${server.addr.port}`), lines, built, returned });
  } finally {
    await server.shutdown();
    await upstream.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asks for `path` on a raw connection and reads `bytes` of the answer; returns the socket. */
async function readSome(base: URL, path: string, bytes: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: base.hostname, port: Number(base.port) });
  await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
  const buf = new Uint8Array(64 * 1024);
  let got = 0;
  while (got < bytes) {
    const n = await conn.read(buf);
    assert.ok(n !== null, "the answer ended early");
    got += n;
  }
  return conn;
}

for (const path of ["/file", "/fetched"]) {
  Deno.test(`access log on the listener (${path}): a natively streamed body goes untouched and is logged sent in full`, async () => {
    await withListener(async ({ base, lines, built, returned }) => {
      // Read in full on a connection the client keeps open and sends nothing more on: the line
      // comes all the same.
      const res = await fetch(new URL(path, base));
      assert.equal((await res.bytes()).byteLength, BIG);
      await lines.until(1);
      assert.equal(lines.lines[0]!.bytes, BIG);
      assert.equal(lines.lines[0]!.end, undefined);
      assert.equal(returned[0], built[0], "not wrapped to be counted");
      // A second request on the same connection.
      assert.equal((await (await fetch(new URL(path, base))).bytes()).byteLength, BIG);
      await lines.until(2);
      assert.equal(lines.lines[1]!.bytes, BIG);
      assert.equal(lines.lines.length, 2);
    });
  });

  // Deno 2.9 resolves `completed` here, and the request's signal aborts only if the runtime
  // sees the close between two writes: the connection ending with the write's error tells.
  Deno.test(`access log on the listener (${path}): a client that resets the connection mid-body is logged aborted, claiming no bytes`, async () => {
    await withListener(async ({ base, lines, built, returned }) => {
      const conn = await readSome(base, path, 100);
      conn.close(); // unread bytes: the kernel resets the connection
      await lines.until(1);
      assert.equal(lines.lines[0]!.end, "aborted");
      assert.equal(lines.lines[0]!.bytes, undefined);
      assert.equal(lines.lines[0]!.status, 200);
      assert.equal(returned[0], built[0]);
    });
  });
}

// A body held whole larger than the socket buffers: the runtime writes it in one go, and
// `completed` resolves even when the client reset the connection part-way.
Deno.test("access log on the listener: a body held whole that the client resets mid-way is logged aborted, claiming no bytes", async () => {
  await withListener(async ({ base, lines }) => {
    const conn = await readSome(base, "/whole", 100);
    conn.close(); // unread bytes: the kernel resets the connection
    await lines.until(1);
    assert.equal(lines.lines[0]!.end, "aborted");
    assert.equal(lines.lines[0]!.bytes, undefined);
    // Read in full: sent in full.
    assert.equal((await (await fetch(new URL("/whole", base))).bytes()).byteLength, BIG);
    await lines.until(2);
    assert.equal(lines.lines[1]!.bytes, BIG);
    assert.equal(lines.lines[1]!.end, undefined);
  });
});
