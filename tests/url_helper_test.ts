import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { Buffer } from "node:buffer";
import {
  buildImageUrls,
  buildPath,
  cacheKeyFor,
  encodeBase64Url,
  encodeSource,
  escapePlainSource,
  joinOptions,
  signPath,
} from "../lib/url_helper.ts";

// imgproxy's documented test vector: key "secret", salt "hello" as raw bytes.
const KEY = "736563726574";
const SALT = "68656c6c6f";
const VECTOR_SOURCE = "http://example.com/images/curiosity.jpg";
const VECTOR_PATH =
  "/rs:fill:300:400:0/g:sm/aHR0cDovL2V4YW1w/bGUuY29tL2ltYWdl/cy9jdXJpb3NpdHku/anBn.png";
const VECTOR_SIG = "oKfUtW34Dvo2BGQehJFR4Nr0_rIjOtdtzJ3QFsUcXH8";

// Standard base64 of this source is "...Pz4+Pj8/Pw==": it has both "+" and "/".
const PLUS_SLASH_SOURCE = "https://example.com/a.png?q=>>>???";

function md5(text: string): string {
  return createHash("md5").update(text, "utf8").digest("hex");
}

/** Asserts that `fn` throws `type` with a message matching `pattern` and not naming `secret`. */
function assertSecretSafeThrow(
  fn: () => unknown,
  type: ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor,
  pattern: RegExp,
  secret: string,
): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes(secret), `message leaks the secret: ${err.message}`);
    return true;
  });
}

Deno.test("signPath() reproduces imgproxy's test vector at every size", () => {
  const cases: { size?: number; want: string }[] = [
    { want: VECTOR_SIG },
    { size: 32, want: VECTOR_SIG },
    { size: 8, want: "oKfUtW34Dvo" },
    { size: 1, want: "oA" },
  ];
  for (const { size, want } of cases) {
    assert.equal(signPath(VECTOR_PATH, { key: KEY, salt: SALT, signatureSize: size }), want);
  }
});

Deno.test("signPath() signs with the first of several key/salt pairs, however given", () => {
  const signers = [
    { key: `${KEY},abcdef`, salt: `${SALT},0123` },
    { key: ` ${KEY} , abcdef `, salt: `${SALT}, 0123` },
    { key: [KEY, "abcdef"], salt: [SALT, "0123"] },
    { key: KEY.toUpperCase(), salt: SALT.toUpperCase() },
  ];
  for (const signer of signers) assert.equal(signPath(VECTOR_PATH, signer), VECTOR_SIG);
  // The second pair alone gives another signature, so the order really matters.
  assert.notEqual(signPath(VECTOR_PATH, { key: "abcdef", salt: "0123" }), VECTOR_SIG);
});

Deno.test("signPath() returns the insecure signature without key and salt", () => {
  const cases: { signer: Parameters<typeof signPath>[1]; want: string }[] = [
    { signer: undefined, want: "insecure" },
    { signer: {}, want: "insecure" },
    { signer: { key: "", salt: "  " }, want: "insecure" },
    { signer: { key: [], salt: [] }, want: "insecure" },
    { signer: { insecureSignature: "_" }, want: "_" },
  ];
  for (const { signer, want } of cases) assert.equal(signPath(VECTOR_PATH, signer), want);
  assert.throws(() => signPath(VECTOR_PATH, { insecureSignature: "a:b" }), TypeError);
});

Deno.test("signPath() rejects bad secrets without echoing them", () => {
  const secret = "73656372657g"; // one non-hex character
  const odd = "7365637265747"; // 13 digits
  const cases: {
    name: string;
    signer: Parameters<typeof signPath>[1];
    type: typeof TypeError | typeof RangeError;
    pattern: RegExp;
    secret: string;
  }[] = [
    {
      name: "non-hex key",
      signer: { key: secret, salt: SALT },
      type: TypeError,
      pattern: /key #1 is not hex: it has a non-hex character/,
      secret,
    },
    {
      name: "odd-length salt",
      signer: { key: KEY, salt: odd },
      type: TypeError,
      pattern: /salt #1 is not hex: it has an odd length/,
      secret: odd,
    },
    {
      name: "bad second key",
      signer: { key: `${KEY},${secret}`, salt: `${SALT},${SALT}` },
      type: TypeError,
      pattern: /key #2 is not hex/,
      secret,
    },
    {
      name: "empty entry",
      signer: { key: `${KEY},`, salt: `${SALT},${SALT}` },
      type: TypeError,
      pattern: /key #2 is empty/,
      secret: KEY,
    },
    {
      name: "more keys than salts",
      signer: { key: `${KEY},${KEY}`, salt: SALT },
      type: RangeError,
      pattern: /got 2 key\(s\) and 1 salt\(s\)/,
      secret: KEY,
    },
    {
      name: "key without salt",
      signer: { key: KEY },
      type: RangeError,
      pattern: /got 1 key\(s\) and 0 salt\(s\)/,
      secret: KEY,
    },
    ...[0, 33, 1.5, NaN].map((size) => ({
      name: `signature size ${size}`,
      signer: { key: KEY, salt: SALT, signatureSize: size },
      type: RangeError,
      pattern: /signatureSize must be an integer from 1 to 32/,
      secret: KEY,
    })),
  ];
  for (const c of cases) {
    assertSecretSafeThrow(() => signPath(VECTOR_PATH, c.signer), c.type, c.pattern, c.secret);
    // The same check through the top-level builder, which also sees the salt.
    assertSecretSafeThrow(
      () => buildPath({ source: VECTOR_SOURCE, ...c.signer }),
      c.type,
      c.pattern,
      c.secret,
    );
  }
});

Deno.test("buildPath() reproduces the test vector's whole path", () => {
  const path = buildPath({
    options: ["rs:fill:300:400:0", "g:sm"],
    source: VECTOR_SOURCE,
    extension: "png",
    segmentLength: 16,
    key: KEY,
    salt: SALT,
  });
  assert.equal(path, `/${VECTOR_SIG}${VECTOR_PATH}`);
});

Deno.test("encodeSource() uses URL-safe base64 where standard base64 has + and /", () => {
  const standard = Buffer.from(PLUS_SLASH_SOURCE, "utf8").toString("base64");
  // Guard the fixture: it must exercise both characters.
  assert.ok(standard.includes("+") && standard.includes("/"), standard);

  const encoded = encodeSource(PLUS_SLASH_SOURCE);
  assert.match(encoded, /^[A-Za-z0-9_-]+$/);
  assert.ok(encoded.includes("-") && encoded.includes("_"), encoded);
  assert.equal(encoded, standard.replace(/=+$/, "").replaceAll("+", "-").replaceAll("/", "_"));
  assert.equal(Buffer.from(encoded, "base64url").toString("utf8"), PLUS_SLASH_SOURCE);

  // Split form: imgproxy joins the "/"-separated parts before decoding.
  const split = encodeSource(PLUS_SLASH_SOURCE, { segmentLength: 5, extension: ".webp" });
  assert.ok(split.endsWith(".webp"), split);
  const parts = split.slice(0, -".webp".length).split("/");
  assert.ok(parts.every((p) => p.length <= 5) && parts.length > 1, split);
  assert.equal(parts.join(""), encoded);
  assert.equal(encodeBase64Url(PLUS_SLASH_SOURCE), encoded);
});

Deno.test("encodeSource() escapes plain sources so the path survives intact", () => {
  const cases: { source: string; extension?: string; want: string }[] = [
    {
      source: "https://example.com/images/cat.jpg",
      want: "plain/https://example.com/images/cat.jpg",
    },
    {
      source: "https://example.com/images/cat.jpg",
      extension: "png",
      want: "plain/https://example.com/images/cat.jpg@png",
    },
    {
      source: "https://example.com/a b.jpg?size=1&v=2#frag",
      want: "plain/https://example.com/a%20b.jpg%3Fsize=1&v=2%23frag",
    },
    { source: "https://example.com/100%.jpg", want: "plain/https://example.com/100%25.jpg" },
    {
      source: "https://example.com/é/日本.jpg",
      extension: "webp",
      want: "plain/https://example.com/%C3%A9/%E6%97%A5%E6%9C%AC.jpg@webp",
    },
    // "@" would be taken as the start of the format by imgproxy.
    { source: "https://example.com/me@2x.jpg", want: "plain/https://example.com/me%402x.jpg" },
    // "'" would end the quoted string of an onerror="this.src='…'" fallback.
    {
      source: "https://ex.com/a');alert(1);('.jpg",
      want: "plain/https://ex.com/a%27);alert(1);(%27.jpg",
    },
  ];
  for (const { source, extension, want } of cases) {
    const got = encodeSource(source, { encoding: "plain", extension });
    assert.equal(got, want);
    // imgproxy PathUnescapes the source: the round trip must give the original back.
    const body = got.slice("plain/".length).replace(/@[A-Za-z0-9]+$/, "");
    assert.equal(decodeURIComponent(body), source);
  }
  assert.equal(escapePlainSource("a\u0000b\u007f"), "a%00b%7F");
  assert.throws(() => escapePlainSource("x\uD800y"), TypeError);
  assert.throws(
    () => encodeSource("https://example.com/a/../b.jpg", { encoding: "plain" }),
    /cannot contain "\." or "\.\." segments/,
  );
  assert.throws(() => encodeSource(""), TypeError);
  assert.throws(() => encodeSource("https://x/y", { extension: "p.ng" }), TypeError);
  assert.throws(() => encodeSource("https://x/y", { segmentLength: 0 }), RangeError);
});

Deno.test("joinOptions() accepts arrays and pre-joined strings alike", () => {
  const want = "rs:fill:300:300:1/g:sm";
  const cases: (string | string[])[] = [
    ["rs:fill:300:300:1", "g:sm"],
    "rs:fill:300:300:1/g:sm",
    "/rs:fill:300:300:1/g:sm/",
    ["rs:fill:300:300:1/g:sm"],
  ];
  for (const options of cases) assert.equal(joinOptions(options), want);
  assert.equal(joinOptions([]), "");
  assert.throws(() => joinOptions(["rs:fill:300:300", "plain"]), /"plain" has no ":"/);
  assert.throws(() => joinOptions(["wm:0.5?x"]), /unsafe in a path/);
  // No options: the path is /signature/source, with no empty segment.
  assert.equal(
    buildPath({ source: VECTOR_SOURCE, encoding: "plain" }),
    `/insecure/plain/${VECTOR_SOURCE}`,
  );
});

Deno.test("buildImageUrls() keys the object by md5 of the exact path, folder and variant", () => {
  type Case = {
    folder?: string;
    accept?: string | null;
    formats?: ("webp" | "avif" | "jxl")[];
    prefix: string;
    suffix: string;
  };
  const cases: Case[] = [
    { prefix: "", suffix: "" },
    { folder: "", prefix: "", suffix: "" },
    { folder: "/a/b/", prefix: "a/b/", suffix: "" },
    { folder: "images", prefix: "images/", suffix: "" },
    { accept: null, prefix: "", suffix: "" },
    // The format imgproxy decides on: avif before webp, and only formats it negotiates.
    { accept: "image/avif,image/webp", prefix: "", suffix: "-avif" },
    { accept: "image/avif,image/webp", formats: ["webp"], prefix: "", suffix: "-webp" },
    { accept: "image/avif,image/webp", formats: [], prefix: "", suffix: "" },
    { accept: "image/webp,*/*", folder: "/a/b/", prefix: "a/b/", suffix: "-webp" },
    { accept: "text/html,*/*", prefix: "", suffix: "" },
  ];
  for (const { folder, accept, formats, prefix, suffix } of cases) {
    const urls = buildImageUrls({
      imgproxyBaseUrl: "https://img.example.com/",
      cacheBaseUrl: "https://bucket.example.com//",
      folder,
      accept,
      formats,
      options: "rs:fill:300:300:1",
      source: "https://example.com/cat.jpg",
      extension: "png",
      key: KEY,
      salt: SALT,
    });
    const unsigned = `/rs:fill:300:300:1/${encodeBase64Url("https://example.com/cat.jpg")}.png`;
    const sig = createHmac("sha256", Buffer.from(KEY, "hex")).update(Buffer.from(SALT, "hex"))
      .update(unsigned).digest("base64url");
    assert.equal(urls.path, `/${sig}${unsigned}`);
    assert.equal(urls.proxyUrl, `https://img.example.com${urls.path}`);
    assert.equal(urls.cacheKey, `${prefix}${md5(urls.path)}${suffix}`);
    assert.equal(urls.cacheUrl, `https://bucket.example.com/${urls.cacheKey}`);
    assert.equal(cacheKeyFor(urls.path, folder, accept, formats), urls.cacheKey);
  }
});

Deno.test("buildImageUrls() with a base URL that has a path: the key covers the whole path the proxy receives", () => {
  // The proxy hashes the raw target it receives, prefix included; the signature covers only
  // what follows the prefix (imgproxy strips IMGPROXY_PATH_PREFIX before verifying).
  for (const base of ["https://img.example.com/imgproxy", "https://img.example.com/imgproxy/"]) {
    const urls = buildImageUrls({
      imgproxyBaseUrl: base,
      cacheBaseUrl: "https://bucket.example.com",
      options: "rs:fit:10:10",
      source: "https://example.com/cat.jpg",
      key: KEY,
      salt: SALT,
    });
    assert.equal(urls.proxyUrl, `https://img.example.com/imgproxy${urls.path}`);
    const received = new URL(urls.proxyUrl).pathname; // what a browser sends
    assert.equal(urls.cacheKey, md5(received));
    assert.notEqual(urls.cacheKey, md5(urls.path));
  }
});

/** The Go program's Phoenix `image/1` component, transcribed: standard base64 and no folder. */
function elixirImage(src: string, dimensions: string, cacheUrl: string) {
  const imgPath = `/rs:fit:${dimensions}:1/dpr:2/g:ce/` +
    Buffer.from(src, "utf8").toString("base64") + ".webp";
  const signature = createHmac("sha256", Buffer.from(KEY, "hex"))
    .update(Buffer.concat([Buffer.from(SALT, "hex"), Buffer.from(imgPath, "utf8")]))
    .digest("base64url");
  const fullPath = "/" + signature + imgPath;
  return { fullPath, imgPath, cachedSrc: `${cacheUrl}/${md5(fullPath)}` };
}

function helperImage(src: string, dimensions: string, cacheUrl: string) {
  return buildImageUrls({
    imgproxyBaseUrl: "https://img.example.com",
    cacheBaseUrl: cacheUrl,
    options: [`rs:fit:${dimensions}:1`, "dpr:2", "g:ce"],
    source: src,
    extension: "webp",
    key: KEY,
    salt: SALT,
  });
}

Deno.test("buildImageUrls() matches the Go program's Phoenix component when standard base64 is URL-safe", () => {
  const src = "https://example.com/cat.jpg"; // 27 bytes: no "=", and no "+" or "/" either
  const standard = Buffer.from(src, "utf8").toString("base64");
  assert.match(standard, /^[A-Za-z0-9]+$/);

  const cache = "https://cache.example.com";
  const elixir = elixirImage(src, "300x200", cache);
  const ours = helperImage(src, "300x200", cache);
  assert.equal(ours.path, elixir.fullPath);
  assert.equal(ours.cacheKey, md5(elixir.fullPath));
  assert.equal(ours.cacheUrl, elixir.cachedSrc);
});

Deno.test("buildImageUrls() departs from the Elixir helper where that one is wrong", () => {
  const cache = "https://cache.example.com";

  // "+" and "/": imgproxy joins "/"-split parts and decodes URL-safe base64, so the Elixir path
  // names another source (or none). The paths, signatures and keys must differ.
  const elixir = elixirImage(PLUS_SLASH_SOURCE, "300x200", cache);
  const ours = helperImage(PLUS_SLASH_SOURCE, "300x200", cache);
  assert.notEqual(ours.path, elixir.fullPath);
  assert.notEqual(ours.cacheUrl, elixir.cachedSrc);
  const elixirSource = elixir.imgPath.split("/").slice(4).join("").replace(/\.webp$/, "");
  assert.match(elixirSource, /\+/); // not in imgproxy's alphabet: 403
  const oursSource = ours.path.split("/").slice(5).join("").replace(/\.webp$/, "");
  assert.match(oursSource, /^[A-Za-z0-9_-]+$/);
  assert.equal(Buffer.from(oursSource, "base64url").toString("utf8"), PLUS_SLASH_SOURCE);

  // Padding: imgproxy trims "=", so both paths work, but they hash to different keys; objects
  // cached through Elixir-built URLs are not found under the helper's keys.
  const padded = "https://example.com/images/curiosity.jpg"; // 40 bytes → "=="
  assert.notEqual(
    helperImage(padded, "300x200", cache).cacheUrl,
    elixirImage(padded, "300x200", cache).cachedSrc,
  );
});
