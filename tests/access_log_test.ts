/**
 * The access log over real sockets: the proxy built by `createApp` in front of the stand-in
 * imgproxy, one line per request once its body has ended.
 */
import { listenerOptions } from "./support/listener.ts";
import assert from "node:assert/strict";
import { cacheStatus, countBytes } from "../lib/access_log.ts";
import { createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { listen } from "../lib/server.ts";
import { type ContextHandler, serveContexts } from "../lib/context.ts";
import { withAccessLog } from "../lib/access_log.ts";
import { imageBytes, startFakeImgproxy } from "./support/fake_imgproxy.ts";
import { AccessLines } from "./support/access_lines.ts";
import { createHandler } from "../lib/proxy.ts";
import { createUpstream } from "../lib/upstream.ts";
import { Uploader } from "../lib/uploader.ts";
import { LocalStore } from "../lib/store/local.ts";

/**
 * Serves `inner` behind the access log on a real socket, keeping each answer as `inner` built it
 * and as it reached the runtime, so a test can tell whether the log wrapped its body.
 */
function serveRecorded(inner: ContextHandler, lines: AccessLines) {
  const built: Response[] = [];
  const returned: Response[] = [];
  const handler = serveContexts(withAccessLog(async (ctx) => {
    const res = await inner(ctx);
    built.push(res);
    return res;
  }, lines));
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async (req, info) => {
      const res = await handler(req, info);
      returned.push(res);
      return res;
    },
  );
  return { server, built, returned, base: `http://127.0.0.1:${server.addr.port}` };
}

async function withProxy(
  vars: Record<string, string>,
  fn: (
    base: string,
    lines: AccessLines,
    app: Awaited<ReturnType<typeof createApp>>,
  ) => Promise<void>,
  fakeOptions: Parameters<typeof startFakeImgproxy>[0] = {},
  serverKind: "Deno.serve" | "listen" = "Deno.serve",
) {
  const fake = startFakeImgproxy(fakeOptions);
  const dir = await Deno.makeTempDir({ prefix: "access-log-" });
  const env: Record<string, string> = { IMGPROXY_URL: fake.url, CACHE_DIR: dir, ...vars };
  const lines = new AccessLines();
  const app = await createApp(loadConfig((n) => env[n]), lines);
  // The proxy's own listener, or Deno.serve (what an embedder of the handler would use).
  const server = serverKind === "listen"
    ? listen(listenerOptions(), app.handler)
    : Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, lines, app);
  } finally {
    await server.shutdown();
    await app.uploader.drain(2000);
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const IMAGE = "/insecure/rs:fit:10:10/plain/http://example.com/cat.jpg?x=%7E";

for (const serverKind of ["Deno.serve", "listen"] as const) {
  Deno.test(`access log (${serverKind}): one line per request with raw path, status, bytes, cache outcome, request id, client`, async () => {
    await withProxy(
      { CACHE_MODE: "read" },
      async (base, lines, app) => {
        const miss = await fetch(base + IMAGE);
        const body = await miss.bytes();
        await lines.until(1);
        await app.uploader.drain(2000);
        await (await fetch(base + IMAGE)).bytes();
        await lines.until(2);
        await (await fetch(base + "/health")).bytes();
        await lines.until(3);
        await (await fetch(base + IMAGE, { method: "HEAD" })).bytes();
        await lines.until(4);
        const [first, hit, health, head] = lines.lines;
        assert.deepEqual({ ...first, durationMs: 0 }, {
          method: "GET",
          path: IMAGE,
          status: 200,
          bytes: body.byteLength,
          durationMs: 0,
          cache: "MISS",
          reason: undefined,
          lookup: "miss",
          requestId: miss.headers.get("x-request-id")!,
          client: "127.0.0.1",
          end: undefined,
        });
        assert.ok(typeof first!.durationMs === "number" && first!.durationMs >= 0);
        assert.equal(hit!.cache, "HIT");
        assert.equal(hit!.bytes, body.byteLength);
        assert.equal(hit!.requestId, undefined, "a hit never reached imgproxy");
        assert.equal(health!.cache, "BYPASS");
        assert.equal(health!.reason, "content-type");
        assert.equal(health!.bytes, "imgproxy is running".length);
        assert.equal(head!.method, "HEAD");
        assert.equal(head!.bytes, 0);
        assert.equal(head!.cache, "BYPASS");
        assert.equal(lines.lines.length, 4);
      },
      {},
      serverKind,
    );
  });

  // The body's length is declared (Content-Length): it goes to the runtime untouched, and the
  // line says the transfer was cut without claiming bytes (how many the client got is not known).
  Deno.test(`access log (${serverKind}): a client that leaves mid-body is logged once, aborted, claiming no bytes`, async () => {
    await withProxy(
      {},
      async (base, lines) => {
        const path = "/insecure/plain/http://example.com/slowbody.jpg";
        const res = await fetch(base + path);
        const reader = res.body!.getReader();
        const first = await reader.read();
        assert.ok(!first.done);
        await reader.cancel();
        await lines.until(1);
        const [line] = lines.lines;
        assert.equal(line!.end, "aborted");
        assert.equal(line!.status, 200);
        assert.equal(line!.bytes, undefined);
        assert.equal(lines.lines.length, 1);
      },
      { slowChunks: 10, slowChunkMs: 100 },
      serverKind,
    );
  });

  Deno.test(`access log (${serverKind}): an answer imgproxy cuts mid-body is not logged as sent in full`, async () => {
    await withProxy(
      {},
      async (base, lines) => {
        const path = "/insecure/plain/http://example.com/cut.jpg";
        const full = imageBytes(`${path}|jpeg`).byteLength;
        const res = await fetch(base + path);
        assert.equal(res.headers.get("content-length"), String(full));
        await assert.rejects(res.bytes());
        await lines.until(1);
        const [line] = lines.lines;
        assert.equal(line!.end, "error");
        assert.equal(line!.bytes, undefined);
      },
      {},
      serverKind,
    );
  });
  // No Content-Length: the tee that copies the answer to the uploader counts it for the line.
  Deno.test(`access log (${serverKind}): a miss of unknown length is logged with the bytes the tee passed and how it ended`, async () => {
    await withProxy(
      {},
      async (base, lines) => {
        const path = "/insecure/plain/http://example.com/chunked.jpg";
        const res = await fetch(base + path);
        assert.equal(res.headers.get("content-length"), null);
        assert.equal(res.headers.get("x-cache"), "MISS");
        const body = await res.bytes();
        assert.equal(body.byteLength, imageBytes(`${path}|jpeg`).byteLength);
        await lines.until(1);
        assert.equal(lines.lines[0]!.bytes, body.byteLength);
        assert.equal(lines.lines[0]!.end, undefined);
        assert.equal(lines.lines[0]!.cache, "MISS");

        // imgproxy cuts it: an error, never the full length.
        const cutPath = "/insecure/plain/http://example.com/cut-chunked.jpg";
        const full = imageBytes(`${cutPath}|jpeg`).byteLength;
        const cut = await fetch(base + cutPath);
        assert.equal(cut.headers.get("content-length"), null);
        assert.equal(cut.headers.get("x-cache"), "MISS");
        await assert.rejects(cut.bytes());
        await lines.until(2);
        assert.equal(lines.lines[1]!.end, "error");
        assert.ok((lines.lines[1]!.bytes as number) < full, `${lines.lines[1]!.bytes} < ${full}`);

        // The client leaves after the first chunk: aborted, never the full length.
        const leftPath = "/insecure/plain/http://example.com/chunked-left.jpg";
        const left = await fetch(base + leftPath);
        const reader = left.body!.getReader();
        assert.ok(!(await reader.read()).done);
        await reader.cancel();
        await lines.until(3);
        assert.equal(lines.lines[2]!.end, "aborted");
        assert.ok(
          (lines.lines[2]!.bytes as number) < imageBytes(`${leftPath}|jpeg`).byteLength,
          `${lines.lines[2]!.bytes} bytes`,
        );
        assert.equal(lines.lines.length, 3);
      },
      {},
      serverKind,
    );
  });
}

// The body of a miss already passes through the tee to the uploader: the access log takes its
// count from there instead of wrapping the body a second time. A bypass is not teed, so it is
// still counted by the log's own wrap.
Deno.test("access log: a miss of unknown length reaches the runtime as the tee built it", async () => {
  const fake = startFakeImgproxy();
  const dir = await Deno.makeTempDir({ prefix: "access-log-" });
  const env: Record<string, string> = { IMGPROXY_URL: fake.url, CACHE_DIR: dir };
  const config = loadConfig((n) => env[n]);
  const logger = new MemoryLogger();
  const uploader = new Uploader(
    new LocalStore(dir),
    { ...config.upload, conditionalWrite: true },
    logger,
  );
  const proxy = createHandler({
    upstream: createUpstream(fake.url),
    uploader,
    logger,
    rules: {
      cacheVariants: config.cacheVariants,
      fallbackMaxAge: config.fallbackMaxAge,
      cookiePassthrough: config.cookiePassthrough,
      maxObjectBytes: config.upload.maxObjectBytes,
    },
    folder: config.folder,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
  });
  const lines = new AccessLines();
  const { server, built, returned, base } = serveRecorded(proxy, lines);
  try {
    const paths = [
      "/insecure/plain/http://example.com/chunked.jpg",
      "/insecure/plain/http://example.com/chunked-nostore.jpg",
    ];
    const sizes: number[] = [];
    for (const [i, path] of paths.entries()) {
      sizes.push((await (await fetch(base + path)).bytes()).byteLength);
      await lines.until(i + 1);
    }
    assert.deepEqual(
      sizes,
      paths.map((p) => imageBytes(`${p}|jpeg`).byteLength),
    );
    assert.deepEqual(lines.lines.map((l) => [l.cache, l.bytes, l.end]), [
      ["MISS", sizes[0], undefined],
      ["BYPASS", sizes[1], undefined],
    ]);
    assert.equal(returned[0], built[0], "a miss's body is wrapped once, by the tee");
    assert.notEqual(returned[1], built[1], "a bypass of unknown length is counted by the log");
    await uploader.drain(2000);
    assert.equal(
      (await Array.fromAsync(Deno.readDir(dir))).length > 0,
      true,
      "the miss was stored",
    );
  } finally {
    await server.shutdown();
    await uploader.drain(2000);
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});

// A body held whole (a hit read from the store, the proxy's own answers) is handed to the
// runtime as it is, which writes it in one go; a streamed one is counted as it passes.
Deno.test("access log: a body held whole reaches the runtime untouched, a stream is counted", async () => {
  const lines = new AccessLines();
  const answers: Record<string, () => Response> = {
    "/whole": () => new Response(new Uint8Array(30_000), { headers: { "x-cache": "HIT" } }),
    "/text": () => new Response("nope\n", { status: 404 }),
    "/empty": () => new Response(null, { status: 302, headers: { location: "/x" } }),
    "/stream": () => new Response(new Blob([new Uint8Array(5000)]).stream()),
    "/declared": () =>
      new Response(new Blob([new Uint8Array(7000)]).stream(), {
        headers: { "content-length": "7000" },
      }),
  };
  const { server, built, returned, base } = serveRecorded(
    (ctx) => Promise.resolve(answers[ctx.target!]!()),
    lines,
  );
  try {
    const sizes: number[] = [];
    for (const [i, path] of Object.keys(answers).entries()) {
      sizes.push((await (await fetch(base + path, { redirect: "manual" })).bytes()).byteLength);
      await lines.until(i + 1);
    }
    assert.deepEqual(sizes, [30_000, 5, 0, 5000, 7000]);
    assert.deepEqual(lines.lines.map((l) => [l.path, l.bytes, l.end]), [
      ["/whole", 30_000, undefined],
      ["/text", 5, undefined],
      ["/empty", 0, undefined],
      ["/stream", 5000, undefined],
      ["/declared", 7000, undefined],
    ]);
    assert.equal(returned[0], built[0], "a whole body is not wrapped");
    assert.equal(returned[1], built[1]);
    assert.equal(returned[2], built[2]);
    assert.notEqual(returned[3], built[3], "a stream of unknown length is counted");
    assert.equal(returned[4], built[4], "a stream of declared length is not wrapped");
  } finally {
    await server.shutdown();
  }
});

Deno.test("access log: a redirect-mode hit says REDIRECT; ACCESS_LOG=false writes nothing", async () => {
  await withProxy(
    { CACHE_MODE: "redirect", PUBLIC_BASE_URL: "https://cdn.example.com" },
    async (base, lines, app) => {
      await (await fetch(base + IMAGE)).bytes();
      await app.uploader.drain(2000);
      const res = await fetch(base + IMAGE, { redirect: "manual" });
      await res.body?.cancel();
      assert.equal(res.status, 302);
      await lines.until(2);
      assert.equal(lines.lines[1]!.cache, "REDIRECT");
      assert.equal(lines.lines[1]!.status, 302);
    },
  );
  await withProxy({ ACCESS_LOG: "false" }, async (base, lines) => {
    await (await fetch(base + IMAGE)).bytes();
    await (await fetch(base + "/health")).bytes();
    assert.deepEqual(lines.lines, []);
  });
});

Deno.test("cacheStatus() reads the outcome and reason from X-Cache", () => {
  const rows: [number, Record<string, string>, { cache: string; reason?: string }][] = [
    [200, { "x-cache": "HIT" }, { cache: "HIT", reason: undefined }],
    [302, { "x-cache": "HIT" }, { cache: "REDIRECT" }],
    [200, { "x-cache": "MISS" }, { cache: "MISS", reason: undefined }],
    [404, { "x-cache": "BYPASS; reason=status" }, { cache: "BYPASS", reason: "status" }],
    [502, {}, { cache: "NONE" }],
  ];
  for (const [status, headers, expected] of rows) {
    assert.deepEqual(cacheStatus(new Response(null, { status, headers })), expected);
  }
});

Deno.test("cacheStatus() reads X-Cache as splitting it on ';' and trimming each part would", () => {
  // The reading the access log had when it split the value into arrays, kept here as the rule.
  const bySplitting = (status: number, x: string | null) => {
    if (x === null) return { cache: "NONE" };
    const [word, ...params] = x.split(";");
    const cache = word!.trim().toUpperCase();
    if (cache === "HIT" && status === 302) return { cache: "REDIRECT" };
    const reason = params.map((p) => p.trim()).find((p) => p.startsWith("reason="));
    return { cache, reason: reason?.slice("reason=".length) };
  };
  const words = ["HIT", "miss", " Bypass ", "", "HIT ", "STALE"];
  const params = [
    "",
    ";",
    "; reason=status",
    ";reason=cache-control",
    "; x=1; reason=rule",
    "; reason=; reason=second",
    "; reasons=no; reason=yes ",
    "; reason=a=b",
    "; REASON=upper",
    ";;reason=after-empty",
    "; x=1",
  ];
  let checked = 0;
  for (const status of [200, 302, 404]) {
    for (const word of words) {
      for (const param of params) {
        const x = word + param;
        // A header value is stored trimmed: compare with what the answer really carries.
        const headers = new Headers(x.trim() === "" ? {} : { "x-cache": x });
        const res = new Response(null, { status, headers });
        assert.deepEqual(cacheStatus(res), bySplitting(status, res.headers.get("x-cache")), x);
        checked++;
      }
    }
  }
  assert.equal(checked, 3 * words.length * params.length);
});

Deno.test("countBytes() reports the bytes once, when the body errors", async () => {
  const ends: [number, string][] = [];
  let pulls = 0;
  const body = countBytes(
    new ReadableStream<Uint8Array>({
      pull(c) {
        if (pulls++ === 0) c.enqueue(new Uint8Array(3));
        else c.error(new Error("boom"));
      },
    }, { highWaterMark: 0 }),
    (bytes, end) => ends.push([bytes, end]),
  );
  await assert.rejects(new Response(body).bytes());
  assert.deepEqual(ends, [[3, "error"]]);
});
