/**
 * Helper servers for the benchmark, each run as its own process so its CPU does not mix with
 * the orchestrator's:
 *
 * - `upstream`: a fast fixed-bytes stand-in for imgproxy. `/health` → 200; a path starting with
 *   `/1m/` → a 1 MiB body, anything else → a 30 KiB body; always `image/webp` with
 *   Content-Length and `Cache-Control: max-age=31536000, public` (`no-store` for a path
 *   starting with `/nostore/`, which the proxy passes through without storing); a path starting
 *   with `/close/` ends its connection (`Connection: close`, as versitygw does); a path starting
 *   with `/slow/MS/` answers the 30 KiB body after MS milliseconds (an upstream that takes its
 *   time, as imgproxy does, so the proxy serves a low request rate). Counts requests.
 * - `nullstore`: an S3 stand-in that keeps its connections open (versitygw closes each one).
 *   Accepts any PUT (200 with an ETag, what S3 answers); keeps the last objects written (up to
 *   32 MiB, the oldest dropped first) with their type, `Cache-Control` and `x-amz-meta-*`, and
 *   answers GET and HEAD for them as S3 does (`Content-Length`, a strong `ETag`,
 *   `Last-Modified`), 404 `NoSuchKey` for others; DELETE drops one. Any other request (the
 *   bucket's HEAD at start-up) → 200. `GET /__count` → the number of PUTs seen.
 * - `stall`: accepts TCP connections, reads and discards whatever arrives, never answers.
 * - `bare`: the floor the runtime sets: a `Deno.serve` + `fetch` proxy to the upstream on
 *   UPSTREAM_PORT with no logic at all (no header rules, no timeout, no cache). What the proxy
 *   costs beyond it is ours to remove; what it costs itself is Deno's. A path starting with
 *   `/whole/` is asked of the upstream without that prefix, its body read whole before the
 *   answer is made of it (what the proxy does with a small S3 hit, so that a store stalling
 *   mid-body cannot hang the client).
 * - `barejs`: `bare`, with each answer's body read through JavaScript (a pull stream passing the
 *   chunks on, as the proxy does for an answer it copies to the store or counts): the floor for
 *   an answer read in JavaScript, which the runtime cannot pipe natively from socket to socket.
 *
 * - `files`: the floor for a hit from the local store: a `Deno.serve` streaming FILE (its
 *   size and type known up front, as a static file server with an index would) for every path.
 *
 * Usage: deno run --allow-net=127.0.0.1 [--allow-read] bench/servers.ts KIND [PORT]
 * [UPSTREAM_PORT | FILE]; prints `ready PORT`.
 */
const kind = Deno.args[0];
const port = Number(Deno.args[1] ?? 0);

function body(size: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(size);
  // A RIFF/WEBP header, then a fixed pattern: bytes only matter for their length.
  b.set(new TextEncoder().encode("RIFF\0\0\0\0WEBPVP8 "));
  for (let i = 16; i < size; i++) b[i] = (i * 31) & 0xff;
  return b;
}

function ready(p: number): void {
  console.log(`ready ${p}`);
}

if (kind === "upstream") {
  const small = body(30 * 1024);
  const large = body(1024 * 1024);
  const headers = (n: number) => ({
    "content-type": "image/webp",
    "content-length": String(n),
    "cache-control": "max-age=31536000, public",
  });
  const smallHeaders = headers(small.byteLength);
  const noStoreHeaders = { ...smallHeaders, "cache-control": "no-store" };
  // As versitygw answers every request: the client must open a new connection for the next.
  const closeHeaders = { ...smallHeaders, connection: "close" };
  const largeHeaders = headers(large.byteLength);
  let count = 0;
  Deno.serve({ hostname: "127.0.0.1", port, onListen: ({ port }) => ready(port) }, (req) => {
    const url = req.url;
    const i = url.indexOf("/", 8);
    const path = url.slice(i);
    if (path === "/health") return new Response("imgproxy is running");
    if (path === "/__count") return new Response(String(count));
    count++;
    if (path.startsWith("/1m/")) return new Response(large, { headers: largeHeaders });
    if (path.startsWith("/nostore/")) return new Response(small, { headers: noStoreHeaders });
    if (path.startsWith("/close/")) return new Response(small, { headers: closeHeaders });
    if (path.startsWith("/slow/")) {
      const ms = parseInt(path.slice(6), 10);
      return new Promise<Response>((resolve) =>
        setTimeout(() => resolve(new Response(small, { headers: smallHeaders })), ms)
      );
    }
    return new Response(small, { headers: smallHeaders });
  });
} else if (kind === "nullstore") {
  let puts = 0;
  let bytes = 0;
  /** Objects kept, by path (bucket and key), oldest first. */
  const kept = new Map<string, { body: Uint8Array<ArrayBuffer>; headers: [string, string][] }>();
  let keptBytes = 0;
  const KEPT_MAX = 32 * 1024 * 1024;
  const noSuchKey = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>' +
    "<Message>The specified key does not exist.</Message></Error>";
  Deno.serve({ hostname: "127.0.0.1", port, onListen: ({ port }) => ready(port) }, async (req) => {
    const url = req.url;
    const query = url.indexOf("?");
    const path = url.slice(url.indexOf("/", 8), query === -1 ? undefined : query);
    // An object's path is /bucket/key; the bucket's own is /bucket.
    const isObject = path.indexOf("/", 1) !== -1;
    if (req.method === "PUT") {
      const body = new Uint8Array(await req.arrayBuffer());
      bytes += body.byteLength;
      puts++;
      const etag = `"${puts.toString(16).padStart(32, "0")}"`;
      if (isObject && body.byteLength <= KEPT_MAX) {
        const headers: [string, string][] = [
          ["content-type", req.headers.get("content-type") ?? "binary/octet-stream"],
          ["etag", etag],
          ["last-modified", new Date().toUTCString()],
        ];
        for (const [name, value] of req.headers) {
          if (name === "cache-control" || name.startsWith("x-amz-meta-")) {
            headers.push([name, value]);
          }
        }
        const old = kept.get(path);
        if (old !== undefined) keptBytes -= old.body.byteLength;
        kept.delete(path);
        kept.set(path, { body, headers });
        keptBytes += body.byteLength;
        for (const [k, o] of kept) {
          if (keptBytes <= KEPT_MAX) break;
          kept.delete(k);
          keptBytes -= o.body.byteLength;
        }
      }
      return new Response(null, { status: 200, headers: { etag } });
    }
    if (path === "/__count") return new Response(JSON.stringify({ puts, bytes }));
    await req.body?.cancel();
    if (!isObject) return new Response(null, { status: 200 });
    const o = kept.get(path);
    if (req.method === "DELETE") {
      if (o !== undefined) keptBytes -= o.body.byteLength;
      kept.delete(path);
      return new Response(null, { status: 204 });
    }
    if (o === undefined) {
      return new Response(req.method === "HEAD" ? null : noSuchKey, {
        status: 404,
        headers: { "content-type": "application/xml" },
      });
    }
    // Deno.serve answers HEAD with the headers (Content-Length included) and no body.
    return new Response(o.body, { headers: o.headers });
  });
} else if (kind === "stall") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  ready((listener.addr as Deno.NetAddr).port);
  const buf = new Uint8Array(64 * 1024);
  for await (const conn of listener) {
    (async () => {
      try {
        while ((await conn.read(buf)) !== null) { /* discard, never answer */ }
      } catch { /* reset */ }
    })();
  }
} else if (kind === "bare") {
  const upstream = `http://127.0.0.1:${Deno.args[2]}`;
  Deno.serve({ hostname: "127.0.0.1", port, onListen: ({ port }) => ready(port) }, async (req) => {
    const url = req.url;
    const path = url.slice(url.indexOf("/", 8));
    if (path.startsWith("/whole/")) {
      const res = await fetch(upstream + path.slice(6), { headers: req.headers });
      const h = res.headers;
      return new Response(await res.bytes(), {
        status: res.status,
        headers: [["content-type", h.get("content-type")!], [
          "cache-control",
          h.get("cache-control")!,
        ]],
      });
    }
    const res = await fetch(upstream + path, { headers: req.headers });
    if (!path.startsWith("/close/")) return res;
    // The upstream's Connection: close is about its own connection, not the client's.
    const headers = new Headers(res.headers);
    headers.delete("connection");
    return new Response(res.body, { status: res.status, headers });
  });
} else if (kind === "barejs") {
  const upstream = `http://127.0.0.1:${Deno.args[2]}`;
  Deno.serve({ hostname: "127.0.0.1", port, onListen: ({ port }) => ready(port) }, async (req) => {
    const url = req.url;
    const res = await fetch(upstream + url.slice(url.indexOf("/", 8)), { headers: req.headers });
    if (res.body === null) return res;
    const reader = res.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
    return new Response(body, { status: res.status, headers: res.headers });
  });
} else if (kind === "files") {
  const file = Deno.args[2]!;
  const headers = {
    "content-type": "image/webp",
    "content-length": String(Deno.statSync(file).size),
  };
  Deno.serve({ hostname: "127.0.0.1", port, onListen: ({ port }) => ready(port) }, async () => {
    const f = await Deno.open(file);
    return new Response(f.readable, { headers });
  });
} else {
  console.error(
    "usage: servers.ts upstream|nullstore|stall|bare|barejs|files [PORT] [UPSTREAM_PORT|FILE]",
  );
  Deno.exit(2);
}
