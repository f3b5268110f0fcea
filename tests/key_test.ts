import assert from "node:assert/strict";
import {
  md5Hex,
  NEGOTIATED_FORMATS,
  normalizeFolder,
  objectKey,
  pathOf,
  variantSuffix,
} from "../lib/key.ts";

const EXAMPLE = "/resize:fill:300:300/plain/https://example.com/image.jpg";
const EXAMPLE_KEY = "c9009a400f110797b2710ce2a5bd60a4";

Deno.test("objectKey() gives the example key of docs/keys-and-variants.md", () => {
  assert.equal(objectKey(EXAMPLE), EXAMPLE_KEY);
  assert.equal(md5Hex(EXAMPLE), EXAMPLE_KEY);
});

Deno.test("md5Hex() hashes the UTF-8 bytes of its input (known digests)", () => {
  // Digests from `printf '%s' ... | md5sum`.
  const rows: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["/insecure/plain/a.jpg", "a3614c92f5798047cef6b79b9261921b"],
    ["/insecure/plain/http://ex.com/café.jpg", "1b55e9c6752ac13154940494d45de946"],
    ["/insecure/plain/http://ex.com/caf%C3%A9.jpg", "b72f2d08f64432c5d1447460d08eeab6"],
  ];
  for (const [text, digest] of rows) {
    assert.equal(md5Hex(text), digest, text);
    assert.match(md5Hex(text), /^[0-9a-f]{32}$/);
  }
});

Deno.test("objectKey() puts the key under a normalised folder", () => {
  const rows: [string, string][] = [
    ["", EXAMPLE_KEY],
    ["/", EXAMPLE_KEY],
    ["processed", `processed/${EXAMPLE_KEY}`],
    ["/processed/", `processed/${EXAMPLE_KEY}`],
    ["processed/", `processed/${EXAMPLE_KEY}`],
    ["//processed//", `processed/${EXAMPLE_KEY}`],
    ["a/b/", `a/b/${EXAMPLE_KEY}`],
    ["/a/b", `a/b/${EXAMPLE_KEY}`],
  ];
  for (const [folder, key] of rows) {
    assert.equal(objectKey(EXAMPLE, normalizeFolder(folder)), key, JSON.stringify(folder));
  }
});

Deno.test("objectKey() appends the variant suffix to the hash, inside the folder", () => {
  assert.equal(objectKey(EXAMPLE, "", "-avif-webp"), `${EXAMPLE_KEY}-avif-webp`);
  assert.equal(objectKey(EXAMPLE, "f", "-webp"), `f/${EXAMPLE_KEY}-webp`);
  assert.equal(objectKey(EXAMPLE, "f", ""), `f/${EXAMPLE_KEY}`);
});

Deno.test("normalizeFolder() trims only leading and trailing slashes", () => {
  const rows: [string, string][] = [
    ["", ""],
    ["/", ""],
    ["///", ""],
    ["a", "a"],
    ["/a/", "a"],
    ["a/b", "a/b"],
    ["/a//b/", "a//b"],
    [" a ", " a "],
  ];
  for (const [folder, normalised] of rows) {
    assert.equal(normalizeFolder(folder), normalised, JSON.stringify(folder));
  }
});

Deno.test("pathOf() strips the query string and nothing else", () => {
  const rows: [string, string][] = [
    ["/a/b.jpg", "/a/b.jpg"],
    ["/a/b.jpg?", "/a/b.jpg"],
    ["/a/b.jpg?x=1", "/a/b.jpg"],
    ["/a/b.jpg?x=1?y=2", "/a/b.jpg"],
    ["/a/%3Fb.jpg?x", "/a/%3Fb.jpg"],
    ["/a/../b//c/%2e%2e/d", "/a/../b//c/%2e%2e/d"],
    ["/plain/http://ex.com/x.jpg#frag", "/plain/http://ex.com/x.jpg#frag"],
    ["", ""],
    ["?only=query", ""],
  ];
  for (const [target, path] of rows) {
    assert.equal(pathOf(target), path, target);
  }
});

Deno.test("objectKey() hashes the raw path as sent, never a normalised form", () => {
  // Each raw path and what a URL parser would turn it into: different keys.
  const rows: [string, string][] = [
    ["/insecure/plain/http://ex.com/%2e%2e/x.jpg", "/insecure/plain/http://x.jpg"],
    ["/insecure/plain/http://ex.com/a/../x.jpg", "/insecure/plain/http://ex.com/x.jpg"],
    ["/insecure//plain/a.jpg", "/insecure/plain/a.jpg"],
    ["/insecure/plain/http:/ex.com/a.jpg", "/insecure/plain/http://ex.com/a.jpg"],
    ["/insecure/plain/http://ex.com/café.jpg", "/insecure/plain/http://ex.com/caf%C3%A9.jpg"],
    ["/insecure/plain/http://ex.com/a%20b.jpg", "/insecure/plain/http://ex.com/a b.jpg"],
    ["/insecure/plain/http://ex.com/A.jpg", "/insecure/plain/http://ex.com/a.jpg"],
  ];
  for (const [raw, normalised] of rows) {
    assert.notEqual(objectKey(raw), objectKey(normalised), raw);
    assert.equal(objectKey(raw), md5Hex(raw), raw);
  }
  assert.equal(
    objectKey("/insecure/plain/http://ex.com/%2e%2e/x.jpg"),
    "08d5321c989306ceea4fdb156e6b2f07",
  );
  assert.equal(objectKey("/insecure//plain/a.jpg"), "6d022a11a4001e70d110f8e0ff066412");
});

Deno.test("objectKey() of pathOf() ignores the query string", () => {
  assert.equal(objectKey(pathOf(`${EXAMPLE}?v=2`)), EXAMPLE_KEY);
  assert.equal(objectKey(pathOf(EXAMPLE)), EXAMPLE_KEY);
});

Deno.test("variantSuffix() names the negotiated formats the Accept header contains", () => {
  assert.deepEqual([...NEGOTIATED_FORMATS], ["avif", "webp", "jxl"]);
  const rows: [string | null, string][] = [
    [null, ""],
    ["", ""],
    ["*/*", ""],
    ["image/*", ""],
    ["image/png,image/jpeg", ""],
    ["image/webp", "-webp"],
    ["image/avif", "-avif"],
    ["image/jxl", "-jxl"],
    ["image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "-avif-webp"],
    ["image/webp,image/avif", "-avif-webp"],
    ["image/jxl,image/webp,image/avif", "-avif-webp-jxl"],
    ["image/jxl, image/avif", "-avif-jxl"],
    // imgproxy's test is a case-sensitive substring search: so is ours.
    ["IMAGE/WEBP", ""],
    ["image/WebP", ""],
    ["image/webp;q=0", "-webp"],
    ["text/html,image/webpx", "-webp"],
  ];
  for (const [accept, suffix] of rows) {
    assert.equal(variantSuffix(accept), suffix, String(accept));
  }
});
