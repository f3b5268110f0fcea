import assert from "node:assert/strict";
import {
  clientResponseHeaders,
  declaredLength,
  HOP_BY_HOP,
  removeHopByHop,
  upstreamRequestHeaders,
} from "../lib/headers.ts";

/** Header names present, sorted. */
const names = (h: Headers) => [...h.keys()].toSorted();

Deno.test("removeHopByHop() drops every hop-by-hop header and keeps the others", () => {
  const rows: [string, string, boolean][] = [
    ["connection", "keep-alive", false],
    ["proxy-connection", "keep-alive", false],
    ["keep-alive", "timeout=5", false],
    ["proxy-authenticate", "Basic", false],
    ["proxy-authorization", "Basic abc", false],
    ["te", "trailers", false],
    ["trailer", "x-checksum", false],
    ["transfer-encoding", "chunked", false],
    ["upgrade", "websocket", false],
    ["authorization", "Bearer s", true],
    ["accept", "image/webp", true],
    ["content-type", "image/png", true],
    ["content-length", "12", true],
    ["cache-control", "max-age=1", true],
    ["vary", "Accept", true],
    ["if-none-match", '"x"', true],
    ["x-request-id", "abc", true],
  ];
  for (const [name, value, kept] of rows) {
    const h = removeHopByHop(new Headers({ [name]: value }));
    assert.equal(h.has(name), kept, name);
    if (kept) assert.equal(h.get(name), value, name);
  }
  assert.deepEqual(
    [...HOP_BY_HOP].toSorted(),
    rows.filter(([, , kept]) => !kept).map(([n]) => n).toSorted(),
  );
});

Deno.test("removeHopByHop() drops the headers that Connection names", () => {
  const rows: [string, string[]][] = [
    ["close", ["accept", "x-a", "x-b", "x-c"]],
    ["x-a", ["accept", "x-b", "x-c"]],
    ["X-A, x-b", ["accept", "x-c"]],
    [" x-a ,, x-c ", ["accept", "x-b"]],
    ["keep-alive, X-B", ["accept", "x-a", "x-c"]],
  ];
  for (const [connection, left] of rows) {
    const h = new Headers({ connection, accept: "*/*", "x-a": "1", "x-b": "2", "x-c": "3" });
    assert.equal(removeHopByHop(h), h, "works in place");
    assert.deepEqual(names(h), left, connection);
  }
});

Deno.test("removeHopByHop() survives a Connection header with tokens that are not header names", () => {
  // A client can send any bytes there; the proxy must not throw (which would answer 500).
  for (const connection of ["close, x-a, foo bar", "x-a, (x)", 'x-a, "quoted"', "x-a, a/b"]) {
    const h = new Headers({ connection, accept: "*/*", "x-a": "1" });
    removeHopByHop(h);
    assert.deepEqual(names(h), ["accept"], connection);
  }
});

Deno.test("upstreamRequestHeaders() sets X-Forwarded-* from the connection, never from the client", () => {
  const incoming = new Headers({
    "x-forwarded-for": "6.6.6.6",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "evil.example",
    forwarded: "for=6.6.6.6;proto=https",
    host: "img.example:8080",
    accept: "image/avif,image/webp",
    authorization: "Bearer s3cret",
    "user-agent": "test/1",
    "if-none-match": '"abc"',
    connection: "keep-alive, x-hop",
    "x-hop": "1",
    "keep-alive": "timeout=5",
    te: "trailers",
  });
  const h = upstreamRequestHeaders(incoming, {
    ip: "10.0.0.7",
    host: "img.example:8080",
    proto: "http",
  });
  assert.deepEqual(Object.fromEntries(h), {
    accept: "image/avif,image/webp",
    "accept-encoding": "identity",
    authorization: "Bearer s3cret",
    "if-none-match": '"abc"',
    "user-agent": "test/1",
    "x-forwarded-for": "10.0.0.7",
    "x-forwarded-host": "img.example:8080",
    "x-forwarded-proto": "http",
  });
  // The caller's headers are left alone.
  assert.equal(incoming.get("x-forwarded-for"), "6.6.6.6");
  assert.equal(incoming.get("host"), "img.example:8080");
});

Deno.test("upstreamRequestHeaders() drops client forwarding headers it cannot replace", () => {
  const identity = { "accept-encoding": "identity" };
  const rows: [{ ip?: string; host?: string | null; proto: string }, Record<string, string>][] = [
    [{ proto: "https" }, { ...identity, "x-forwarded-proto": "https" }],
    [{ ip: "::1", host: null, proto: "http" }, {
      ...identity,
      "x-forwarded-for": "::1",
      "x-forwarded-proto": "http",
    }],
    [{ host: "", proto: "http" }, { ...identity, "x-forwarded-proto": "http" }],
    [{ host: "h", proto: "http" }, {
      ...identity,
      "x-forwarded-host": "h",
      "x-forwarded-proto": "http",
    }],
  ];
  for (const [client, expected] of rows) {
    const incoming = new Headers({
      "X-Forwarded-For": "6.6.6.6, 7.7.7.7",
      "X-Forwarded-Host": "evil.example",
      "X-Forwarded-Proto": "gopher",
      Forwarded: "for=6.6.6.6",
      Host: "evil.example",
    });
    assert.deepEqual(
      Object.fromEntries(upstreamRequestHeaders(incoming, client)),
      expected,
      JSON.stringify(client),
    );
  }
});

Deno.test("upstreamRequestHeaders() asks imgproxy for identity, whatever the client accepts", () => {
  const rows: [Record<string, string>, string][] = [
    [{}, "no Accept-Encoding"],
    [{ "accept-encoding": "gzip, deflate, br" }, "codings"],
    [{ "accept-encoding": "identity;q=0, *" }, "identity refused"],
    [{ "accept-encoding": "br", connection: "accept-encoding" }, "named by Connection"],
  ];
  for (const [sent, what] of rows) {
    const incoming = new Headers(sent);
    const h = upstreamRequestHeaders(incoming, { proto: "http" });
    assert.deepEqual(h.get("accept-encoding"), "identity", what);
    assert.equal(incoming.get("accept-encoding"), sent["accept-encoding"] ?? null, what);
  }
});

Deno.test("clientResponseHeaders() passes imgproxy's headers less hop-by-hop ones", () => {
  const upstream = new Headers({
    "content-type": "image/webp",
    "content-length": "12",
    "cache-control": "max-age=31536000, public",
    "content-disposition": 'inline; filename="image.webp"',
    vary: "Accept",
    server: "imgproxy",
    "x-request-id": "abc",
    connection: "keep-alive, x-internal",
    "x-internal": "1",
    "keep-alive": "timeout=10",
    "transfer-encoding": "chunked",
  });
  const h = clientResponseHeaders(upstream);
  assert.deepEqual(names(h), [
    "cache-control",
    "content-disposition",
    "content-length",
    "content-type",
    "server",
    "vary",
    "x-request-id",
  ]);
  assert.equal(h.get("cache-control"), "max-age=31536000, public");
  assert.ok(upstream.has("connection"), "the upstream headers are left alone");
});

Deno.test("declaredLength: digits only are a length; none, a list, a sign or a number format are not", () => {
  const of = (value?: string) =>
    declaredLength(new Headers(value === undefined ? {} : { "content-length": value }));
  assert.equal(of("30000"), 30000);
  assert.equal(of("0"), 0);
  assert.equal(of(undefined), null);
  for (const bad of ["", "12, 12", "-1", "+5", "1e3", "0x10", "1.5", "abc"]) {
    assert.equal(of(bad), null, bad);
  }
});

/**
 * What the headers sent upstream were when they were built as a `Headers` (copied, hop-by-hop
 * and forwarding ones deleted, the proxy's own set) and handed to `fetch`, which iterates them.
 */
function asHeadersWould(
  incoming: Headers,
  client: { ip?: string; host?: string | null; proto: string },
) {
  const h = removeHopByHop(new Headers(incoming));
  for (
    const n of ["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "host"]
  ) {
    h.delete(n);
  }
  h.set("accept-encoding", "identity");
  if (client.ip !== undefined) h.set("x-forwarded-for", client.ip);
  h.set("x-forwarded-proto", client.proto);
  if (client.host) h.set("x-forwarded-host", client.host);
  return [...h];
}

Deno.test("upstreamRequestHeaders() yields the pairs, in the order, a Headers of them iterates", () => {
  const sets: [string, string][][] = [
    [["host", "127.0.0.1:8080"]],
    [],
    [
      ["Host", "img.example"],
      ["User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"],
      ["Accept", "image/avif,image/webp,*/*;q=0.8"],
      ["Accept-Language", "en-US,en;q=0.9"],
      ["Accept-Encoding", "gzip, deflate, br"],
      ["Referer", "https://www.example.com/page"],
      ["Sec-Fetch-Dest", "image"],
      ["Connection", "keep-alive, X-Named"],
      ["X-Named", "dropped"],
      ["Cookie", "a=b; c=d"],
      ["Zz-Last", "1"],
      ["A-First", "1"],
    ],
    // Repeated names: joined, as a Headers joins them; each Set-Cookie kept apart.
    [["x-dup", "1"], ["accept", "a"], ["X-Dup", "2"], ["set-cookie", "s=1"], ["Set-Cookie", "t=2"]],
    // Names around the proxy's own, so each is merged in between.
    [
      ["b", "1"],
      ["x-forwarded-a", "1"],
      ["x-forwarded-g", "1"],
      ["x-forwarded-i", "1"],
      [
        "x-forwarded-z",
        "1",
      ],
      ["y", "1"],
      ["accept-encodinga", "1"],
      ["accept-encod", "1"],
    ],
  ];
  const clients = [
    { ip: "10.0.0.7", host: "img.example:8080", proto: "http" },
    { proto: "https" },
    { ip: "::1", host: null, proto: "http" },
    { host: "", proto: "http" },
  ];
  for (const set of sets) {
    for (const client of clients) {
      const incoming = new Headers(set);
      assert.deepEqual(
        [...upstreamRequestHeaders(incoming, client)],
        asHeadersWould(incoming, client),
        JSON.stringify({ set, client }),
      );
    }
  }
});

Deno.test("ForwardHeaders looks names up as a Headers of the same pairs does", () => {
  const incoming = new Headers([
    ["Accept", "image/webp"],
    ["accept", "*/*"],
    ["Cookie", "a=b"],
    ["Range", "bytes=0-1"],
    ["Connection", "range"],
  ]);
  const h = upstreamRequestHeaders(incoming, { proto: "http" });
  const reference = new Headers([...h]);
  for (
    const name of ["accept", "cookie", "range", "connection", "authorization", "accept-encoding"]
  ) {
    assert.equal(h.get(name), reference.get(name), name);
    assert.equal(h.has(name), reference.has(name), name);
  }
  assert.equal(h.get("accept"), "image/webp, */*");
  assert.equal(h.has("range"), false, "named by Connection: not forwarded");
});
