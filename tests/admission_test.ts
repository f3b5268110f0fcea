import assert from "node:assert/strict";
import { type Admission, type AdmissionRules, admit } from "../lib/admission.ts";

const RULES: AdmissionRules = { cacheVariants: "off", fallbackMaxAge: null, maxObjectBytes: 1000 };

/** imgproxy's answer for a processed image. */
const IMAGE: Record<string, string> = {
  "content-type": "image/webp",
  "content-length": "500",
  "cache-control": "max-age=31536000, public",
};

interface Row {
  name: string;
  method?: string;
  request?: Record<string, string>;
  status?: number;
  /** Response headers; `null` removes one of IMAGE's. */
  response?: Record<string, string | null>;
  rules?: Partial<AdmissionRules>;
  expected: Admission;
}

const STORE = (variant = "", contentLength: number | null = 500): Admission => ({
  store: true,
  variant,
  contentLength,
});
const BYPASS = (reason: string): Admission => ({ store: false, reason } as Admission);

const ROWS: Row[] = [
  { name: "a plain GET of an image", expected: STORE() },
  // Method: only a GET can carry an image.
  { name: "HEAD", method: "HEAD", expected: BYPASS("method") },
  { name: "OPTIONS", method: "OPTIONS", expected: BYPASS("method") },
  { name: "POST", method: "POST", expected: BYPASS("method") },
  { name: "PUT", method: "PUT", expected: BYPASS("method") },
  // Status.
  { name: "206", status: 206, expected: BYPASS("status") },
  { name: "304", status: 304, expected: BYPASS("status") },
  { name: "404", status: 404, expected: BYPASS("status") },
  { name: "500", status: 500, expected: BYPASS("status") },
  { name: "203", status: 203, expected: BYPASS("status") },
  { name: "HEAD and 404: method first", method: "HEAD", status: 404, expected: BYPASS("method") },
  // Content type.
  { name: "image/png", response: { "content-type": "image/png" }, expected: STORE() },
  { name: "Image/AVIF", response: { "content-type": "Image/AVIF" }, expected: STORE() },
  {
    name: "image/svg+xml; charset",
    response: { "content-type": "image/svg+xml; charset=utf-8" },
    expected: STORE(),
  },
  {
    name: "text/html",
    response: { "content-type": "text/html" },
    expected: BYPASS("content-type"),
  },
  {
    name: "text/plain",
    response: { "content-type": "text/plain" },
    expected: BYPASS("content-type"),
  },
  { name: "no content type", response: { "content-type": null }, expected: BYPASS("content-type") },
  {
    name: "application/octet-stream",
    response: { "content-type": "application/octet-stream" },
    expected: BYPASS("content-type"),
  },
  // Content encoding.
  { name: "gzip", response: { "content-encoding": "gzip" }, expected: BYPASS("content-encoding") },
  { name: "br", response: { "content-encoding": "br" }, expected: BYPASS("content-encoding") },
  { name: "identity", response: { "content-encoding": "identity" }, expected: STORE() },
  // Cache-Control.
  {
    name: "no-store",
    response: { "cache-control": "no-store" },
    expected: BYPASS("cache-control"),
  },
  { name: "private", response: { "cache-control": "private" }, expected: BYPASS("cache-control") },
  {
    name: "no-cache",
    response: { "cache-control": "no-cache" },
    expected: BYPASS("cache-control"),
  },
  {
    name: "max-age=0, no-cache",
    response: { "cache-control": "max-age=0, no-cache" },
    expected: BYPASS("cache-control"),
  },
  {
    name: "public, No-Store",
    response: { "cache-control": "public, No-Store" },
    expected: BYPASS("cache-control"),
  },
  {
    name: 'private="set-cookie"',
    response: { "cache-control": 'max-age=60, private="set-cookie"' },
    expected: BYPASS("cache-control"),
  },
  { name: "public", response: { "cache-control": "public" }, expected: STORE() },
  { name: "no Cache-Control", response: { "cache-control": null }, expected: STORE() },
  {
    name: "no-transform is not no-cache",
    response: { "cache-control": "max-age=60, no-transform" },
    expected: STORE(),
  },
  // Set-Cookie.
  { name: "Set-Cookie", response: { "set-cookie": "s=1" }, expected: BYPASS("set-cookie") },
  // Cookie: only matters when imgproxy passes the client's cookies to the source.
  { name: "Cookie, no passthrough", request: { cookie: "sid=1" }, expected: STORE() },
  {
    name: "Cookie with IMGPROXY_COOKIE_PASSTHROUGH",
    request: { cookie: "sid=1" },
    rules: { cookiePassthrough: true },
    expected: BYPASS("cookie"),
  },
  {
    name: "no Cookie with IMGPROXY_COOKIE_PASSTHROUGH",
    rules: { cookiePassthrough: true },
    expected: STORE(),
  },
  // Authorization (IMGPROXY_SECRET): only a `public` answer may be shared.
  {
    name: "Authorization with public",
    request: { authorization: "Bearer s3cret" },
    expected: STORE(),
  },
  {
    name: "Authorization without public",
    request: { authorization: "Bearer s3cret" },
    response: { "cache-control": "max-age=60" },
    expected: BYPASS("authorization"),
  },
  {
    name: "Authorization without Cache-Control",
    request: { authorization: "Bearer s3cret" },
    response: { "cache-control": null },
    expected: BYPASS("authorization"),
  },
  {
    name: "Authorization with s-maxage",
    request: { authorization: "Bearer s3cret" },
    response: { "cache-control": "s-maxage=60" },
    expected: STORE(),
  },
  // Vary.
  {
    name: "Vary: Accept, variants off",
    request: { accept: "image/webp" },
    response: { vary: "Accept" },
    expected: BYPASS("vary"),
  },
  {
    name: "Vary: Accept, variants on, imgproxy chose webp for a client that takes avif and webp",
    request: { accept: "image/avif,image/webp,*/*" },
    response: { vary: "Accept" },
    rules: { cacheVariants: "accept" },
    expected: STORE("-webp"),
  },
  {
    name: "Vary: Accept, variants on, avif answer",
    request: { accept: "image/avif,image/webp,*/*" },
    response: { vary: "Accept", "content-type": "image/avif" },
    rules: { cacheVariants: "accept" },
    expected: STORE("-avif"),
  },
  {
    name: "Vary: Accept, variants on, a JPEG for a client that takes webp (the URL's format)",
    request: { accept: "image/avif,image/webp,*/*" },
    response: { vary: "Accept", "content-type": "image/jpeg" },
    rules: { cacheVariants: "accept" },
    expected: STORE(""),
  },
  {
    name: "Vary: Accept, variants on, a webp the client did not ask for (the URL's format)",
    request: { accept: "image/avif,*/*" },
    response: { vary: "Accept" },
    rules: { cacheVariants: "accept" },
    expected: STORE(""),
  },
  {
    name: "Vary: accept (lowercase), variants on, no Accept",
    response: { vary: "accept" },
    rules: { cacheVariants: "accept" },
    expected: STORE(""),
  },
  {
    name: "Vary: Accept, DPR",
    request: { accept: "image/webp" },
    response: { vary: "Accept, DPR" },
    rules: { cacheVariants: "accept" },
    expected: BYPASS("vary"),
  },
  {
    name: "Vary: Accept, Sec-CH-DPR, DPR, Sec-CH-Width, Width",
    response: { vary: "Accept, Sec-CH-DPR, DPR, Sec-CH-Width, Width" },
    rules: { cacheVariants: "accept" },
    expected: BYPASS("vary"),
  },
  {
    name: "Vary: *",
    response: { vary: "*" },
    rules: { cacheVariants: "accept" },
    expected: BYPASS("vary"),
  },
  {
    name: "Vary: Accept-Encoding",
    response: { vary: "Accept-Encoding" },
    rules: { cacheVariants: "accept" },
    expected: BYPASS("vary"),
  },
  {
    name: "no Vary with variants on ignores Accept",
    request: { accept: "image/webp" },
    rules: { cacheVariants: "accept" },
    expected: STORE(""),
  },
  // imgproxy's fallback image.
  {
    name: "max-age equal to the fallback TTL",
    response: { "cache-control": "max-age=60, public" },
    rules: { fallbackMaxAge: 60 },
    expected: BYPASS("fallback-image"),
  },
  {
    name: "max-age different from the fallback TTL",
    rules: { fallbackMaxAge: 60 },
    expected: STORE(),
  },
  {
    name: "max-age below the fallback TTL (an expires: option shortened it)",
    response: { "cache-control": "max-age=42, public" },
    rules: { fallbackMaxAge: 60 },
    expected: BYPASS("fallback-image"),
  },
  {
    name: "max-age=600 is not the fallback TTL 60",
    response: { "cache-control": "max-age=600, public" },
    rules: { fallbackMaxAge: 60 },
    expected: STORE(),
  },
  // Size.
  {
    name: "Content-Length at the limit",
    response: { "content-length": "1000" },
    expected: STORE("", 1000),
  },
  {
    name: "Content-Length over the limit",
    response: { "content-length": "1001" },
    expected: BYPASS("too-large"),
  },
  { name: "no Content-Length", response: { "content-length": null }, expected: STORE("", null) },
  { name: "Content-Length 0", response: { "content-length": "0" }, expected: STORE("", 0) },
];

for (const row of ROWS) {
  const what = row.expected.store
    ? `stores ${row.name} (variant ${JSON.stringify(row.expected.variant)})`
    : `bypasses ${row.name} (reason ${row.expected.reason})`;
  Deno.test(`admit() ${what}`, () => {
    const response = new Headers();
    for (const [k, v] of Object.entries({ ...IMAGE, ...row.response })) {
      if (v !== null) response.set(k, v);
    }
    const verdict = admit(
      row.method ?? "GET",
      new Headers(row.request),
      row.status ?? 200,
      response,
      { ...RULES, ...row.rules },
    );
    assert.deepEqual(verdict, row.expected);
  });
}

Deno.test("admit() checks in a fixed order, reporting the first reason that applies", () => {
  // A HEAD 304 with no type, private, a cookie and Vary: the method is the reason.
  const all = new Headers({
    "cache-control": "private",
    "set-cookie": "a=b",
    vary: "*",
    "content-length": "99999",
  });
  assert.deepEqual(admit("HEAD", new Headers(), 304, all, RULES), BYPASS("method"));
  assert.deepEqual(admit("GET", new Headers(), 304, all, RULES), BYPASS("status"));
  assert.deepEqual(admit("GET", new Headers(), 200, all, RULES), BYPASS("content-type"));
  all.set("content-type", "image/png");
  assert.deepEqual(admit("GET", new Headers(), 200, all, RULES), BYPASS("cache-control"));
  all.delete("cache-control");
  assert.deepEqual(admit("GET", new Headers(), 200, all, RULES), BYPASS("set-cookie"));
  all.delete("set-cookie");
  assert.deepEqual(admit("GET", new Headers(), 200, all, RULES), BYPASS("vary"));
  all.delete("vary");
  assert.deepEqual(admit("GET", new Headers(), 200, all, RULES), BYPASS("too-large"));
});

Deno.test("admit() keys each answer by the format imgproxy decided on, not by the Accept header", () => {
  const rules: AdmissionRules = { ...RULES, cacheVariants: "accept" };
  const variant = (accept: string | null, type: string) => {
    const res = new Headers({ ...IMAGE, vary: "Accept", "content-type": type });
    const v = admit("GET", new Headers(accept === null ? {} : { accept }), 200, res, rules);
    assert.ok(v.store);
    return v.variant;
  };
  // imgproxy with AUTO_WEBP only: Chrome's and an older browser's Accept share one object.
  assert.equal(variant("image/avif,image/webp,*/*", "image/webp"), "-webp");
  assert.equal(variant("image/webp,*/*;q=0.8", "image/webp"), "-webp");
  assert.equal(variant("image/jxl,image/avif,image/webp", "image/jxl"), "-jxl");
  assert.equal(variant("image/avif", "image/avif; charset=binary"), "-avif");
  // What a client gets without negotiation is one object for all.
  assert.equal(variant("*/*", "image/jpeg"), "");
  assert.equal(variant(null, "image/png"), "");
  assert.equal(variant("image/webp", "image/png"), "");
  // imgproxy's test is case-sensitive: IMAGE/WEBP names nothing.
  assert.equal(variant("IMAGE/WEBP", "image/webp"), "");
});

Deno.test("admit: a Cache-Control value parsed once is not reused for a different value", () => {
  // The parsed directives of the last value are kept; each new value must be parsed again.
  const answer = (cacheControl: string) =>
    new Headers({ "content-type": "image/webp", "cache-control": cacheControl });
  const order = ["max-age=60, public", "no-store", "no-store", "max-age=60, public", "private"];
  const verdicts = order.map((cc) => admit("GET", new Headers(), 200, answer(cc), RULES).store);
  assert.deepEqual(verdicts, [true, false, false, true, false]);
});
