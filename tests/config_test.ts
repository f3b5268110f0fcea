import assert from "node:assert/strict";
import {
  type Config,
  ConfigError,
  denoEnv,
  type EnvReader,
  isLocalOrIpHost,
  loadConfig,
  logSettings,
  maxAgeOf,
  type VariableName,
  VARIABLES,
} from "../lib/config.ts";

/** An environment made of exactly these variables. */
function envOf(vars: Record<string, string> = {}): EnvReader {
  return (name) => vars[name];
}

/** Loads a configuration that must fail, and returns its error. */
function configError(vars: Record<string, string>): ConfigError {
  try {
    loadConfig(envOf(vars));
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    return err;
  }
  assert.fail(`loadConfig(${JSON.stringify(vars)}) accepted the configuration`);
}

Deno.test("loadConfig() gives every documented default when the environment is empty", () => {
  const expected: Config = {
    bind: { hostname: "0.0.0.0", port: 8080 },
    clients: {
      headerTimeoutMs: 10_000,
      idleTimeoutMs: 75_000,
      maxConnections: 4096,
      sendTimeoutMs: 10_000,
      minSendBytesPerSec: 1024,
    },
    imgproxyUrl: "http://127.0.0.1:8081",
    healthCheckTimeoutMs: 30_000,
    upstreamTimeoutMs: 30_000,
    store: { kind: "local", dir: "./data/cache", maxBytes: null },
    folder: "",
    cacheMode: "write",
    publicBaseUrl: null,
    redirectCacheControl: "public, max-age=60",
    lookupTimeoutMs: 1000,
    storeBodyTimeoutMs: 10_000,
    breaker: { failures: 5, coolDownMs: 10_000 },
    coalesce: true,
    metricsBind: null,
    adminToken: null,
    imgproxySecret: null,
    cacheVariants: "accept",
    negotiatedFormats: null,
    fallbackMaxAge: null,
    cookiePassthrough: false,
    cacheRules: { only: null, skip: null },
    storeCheck: true,
    upload: {
      concurrency: 8,
      maxBytesInFlight: 134217728,
      maxObjectBytes: 33554432,
      retries: 4,
      retryBaseDelayMs: 200,
      retryMaxDelayMs: 5000,
      attemptTimeoutMs: 30000,
      drainTimeoutMs: 8000,
      dedupKeys: 10000,
      dedupTtlMs: 600000,
    },
    log: { format: "text", level: "INFO" },
    accessLog: true,
  };
  assert.deepEqual(loadConfig(envOf()), expected);
});

Deno.test("loadConfig() defaults agree with the VARIABLES table", () => {
  const c = loadConfig(envOf());
  const rows: [VariableName, unknown][] = [
    ["S3_FOLDER", c.folder],
    ["CACHE_DIR", c.store.kind === "local" ? c.store.dir : null],
    ["CACHE_VARIANTS", c.cacheVariants],
    ["CACHE_MODE", c.cacheMode],
    ["COALESCE_REQUESTS", String(c.coalesce)],
    ["STORE_CHECK", String(c.storeCheck)],
    ["IMGPROXY_URL", c.imgproxyUrl],
    ["STORE_LOOKUP_TIMEOUT_MS", String(c.lookupTimeoutMs)],
    ["STORE_BODY_TIMEOUT_IN_SEC", String(c.storeBodyTimeoutMs / 1000)],
    ["HEALTH_CHECK_TIMEOUT_IN_SEC", String(c.healthCheckTimeoutMs / 1000)],
    ["UPSTREAM_TIMEOUT_IN_SEC", String(c.upstreamTimeoutMs / 1000)],
    ["CLIENT_HEADER_TIMEOUT_IN_SEC", String(c.clients.headerTimeoutMs / 1000)],
    ["CLIENT_IDLE_TIMEOUT_IN_SEC", String(c.clients.idleTimeoutMs / 1000)],
    ["MAX_CLIENT_CONNECTIONS", String(c.clients.maxConnections)],
    ["CLIENT_SEND_TIMEOUT_IN_SEC", String(c.clients.sendTimeoutMs / 1000)],
    ["CLIENT_MIN_SEND_RATE_BYTES", String(c.clients.minSendBytesPerSec)],
    ["UPLOAD_CONCURRENCY", String(c.upload.concurrency)],
    ["UPLOAD_MAX_BYTES_IN_FLIGHT", String(c.upload.maxBytesInFlight)],
    ["UPLOAD_MAX_OBJECT_BYTES", String(c.upload.maxObjectBytes)],
    ["UPLOAD_RETRIES", String(c.upload.retries)],
    ["UPLOAD_RETRY_BASE_DELAY_MS", String(c.upload.retryBaseDelayMs)],
    ["UPLOAD_RETRY_MAX_DELAY_MS", String(c.upload.retryMaxDelayMs)],
    ["UPLOAD_ATTEMPT_TIMEOUT_IN_SEC", String(c.upload.attemptTimeoutMs / 1000)],
    ["UPLOAD_DRAIN_TIMEOUT_IN_SEC", String(c.upload.drainTimeoutMs / 1000)],
    ["UPLOAD_DEDUP_KEYS", String(c.upload.dedupKeys)],
    ["UPLOAD_DEDUP_TTL_IN_SEC", String(c.upload.dedupTtlMs / 1000)],
  ];
  for (const [name, actual] of rows) {
    assert.equal(actual, VARIABLES[name], name);
  }
  // The table's ":8080" is Go-style: every interface.
  assert.equal(VARIABLES.IMGPROXY_BIND, ":8080");
  assert.deepEqual(c.bind, { hostname: "0.0.0.0", port: 8080 });
  const s3 = loadConfig(envOf({ S3_BUCKET: "b" })).store;
  assert.equal(s3.kind === "s3" && String(s3.conditionalWrite), VARIABLES.S3_CONDITIONAL_WRITE);
});

Deno.test("loadConfig() treats a blank or whitespace-only value as unset", () => {
  for (const blank of ["", "   ", "\t"]) {
    const c = loadConfig(envOf({
      S3_BUCKET: blank,
      S3_FOLDER: blank,
      CACHE_DIR: blank,
      IMGPROXY_BIND: blank,
      IMGPROXY_URL: blank,
      HEALTH_CHECK_TIMEOUT_IN_SEC: blank,
      UPLOAD_CONCURRENCY: blank,
      COALESCE_REQUESTS: blank,
      CACHE_MODE: blank,
      CACHE_VARIANTS: blank,
      PUBLIC_BASE_URL: blank,
      IMGPROXY_FALLBACK_IMAGE_URL: blank,
    }));
    assert.deepEqual(c, loadConfig(envOf()), JSON.stringify(blank));
  }
});

Deno.test("loadConfig() trims whitespace around values", () => {
  const c = loadConfig(
    envOf({ UPLOAD_CONCURRENCY: " 3 ", S3_BUCKET: " b ", IMGPROXY_BIND: " :9 " }),
  );
  assert.equal(c.upload.concurrency, 3);
  assert.equal(c.store.kind === "s3" && c.store.bucket, "b");
  assert.deepEqual(c.bind, { hostname: "0.0.0.0", port: 9 });
});

Deno.test("loadConfig() parses IMGPROXY_BIND as host:port, :port or [ipv6]:port", () => {
  const rows: [string, string, number][] = [
    [":9000", "0.0.0.0", 9000],
    ["127.0.0.1:9000", "127.0.0.1", 9000],
    ["localhost:80", "localhost", 80],
    ["0.0.0.0:0", "0.0.0.0", 0],
    ["[::1]:9000", "::1", 9000],
    ["[::]:8080", "::", 8080],
    [":65535", "0.0.0.0", 65535],
  ];
  for (const [value, hostname, port] of rows) {
    assert.deepEqual(loadConfig(envOf({ IMGPROXY_BIND: value })).bind, { hostname, port }, value);
  }
});

Deno.test("loadConfig() rejects malformed IMGPROXY_BIND values, naming the value", () => {
  for (
    const value of ["9000", "127.0.0.1", ":", ":65536", ":99999", "::1:9000", "host:port", ":-1"]
  ) {
    const err = configError({ IMGPROXY_BIND: value });
    assert.equal(err.problems.length, 1, value);
    assert.match(err.problems[0]!, /^IMGPROXY_BIND: expected host:port/, value);
    assert.ok(err.message.includes(JSON.stringify(value)), `${value} not in ${err.message}`);
  }
});

Deno.test("loadConfig() picks S3_ENDPOINT, then AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL", () => {
  const rows: [Record<string, string>, string][] = [
    [{}, "https://fly.storage.tigris.dev"],
    [{ AWS_ENDPOINT_URL: "https://generic.example" }, "https://generic.example"],
    [
      { AWS_ENDPOINT_URL: "https://generic.example", AWS_ENDPOINT_URL_S3: "https://s3.example" },
      "https://s3.example",
    ],
    [
      {
        AWS_ENDPOINT_URL: "https://generic.example",
        AWS_ENDPOINT_URL_S3: "https://s3.example",
        S3_ENDPOINT: "https://own.example",
      },
      "https://own.example",
    ],
    [{ S3_ENDPOINT: "", AWS_ENDPOINT_URL_S3: "https://s3.example" }, "https://s3.example"],
    [{ S3_ENDPOINT: "http://127.0.0.1:9000/" }, "http://127.0.0.1:9000"],
  ];
  for (const [vars, endpoint] of rows) {
    const store = loadConfig(envOf({ S3_BUCKET: "bucket", ...vars })).store;
    assert.equal(store.kind, "s3");
    assert.equal(store.kind === "s3" && store.endpoint, endpoint, JSON.stringify(vars));
  }
});

Deno.test("loadConfig() takes S3_REGION, else AWS_REGION, else auto for Tigris, R2 and GCS only, else us-east-1", () => {
  const rows: [Record<string, string>, string][] = [
    [{}, "auto"], // the default endpoint is Tigris
    [{ AWS_REGION: "eu-west-1" }, "eu-west-1"],
    [{ AWS_REGION: "eu-west-1", S3_REGION: "us-east-2" }, "us-east-2"],
    [{ AWS_REGION: " ", S3_REGION: "" }, "auto"],
    [{ S3_ENDPOINT: "https://t3.storage.dev" }, "auto"],
    [{ S3_ENDPOINT: "https://fly.storage.tigris.dev" }, "auto"],
    [{ S3_ENDPOINT: "https://0123abcd.r2.cloudflarestorage.com" }, "auto"],
    [{ S3_ENDPOINT: "https://storage.googleapis.com" }, "auto"],
    [{ S3_ENDPOINT: "https://s3.amazonaws.com" }, "us-east-1"],
    [{ S3_ENDPOINT: "https://s3.eu-west-1.amazonaws.com" }, "eu-west-1"],
    [{ S3_ENDPOINT: "https://s3.dualstack.ap-southeast-2.amazonaws.com" }, "ap-southeast-2"],
    [{ S3_ENDPOINT: "http://127.0.0.1:9000" }, "us-east-1"],
    [{ S3_ENDPOINT: "https://minio.example.com" }, "us-east-1"],
    // A look-alike host is not Tigris.
    [{ S3_ENDPOINT: "https://storage.dev.example.com" }, "us-east-1"],
    [{ S3_ENDPOINT: "http://127.0.0.1:9000", AWS_REGION: "auto" }, "auto"],
  ];
  for (const [vars, region] of rows) {
    const store = loadConfig(envOf({ S3_BUCKET: "bucket", ...vars })).store;
    assert.equal(store.kind === "s3" && store.region, region, JSON.stringify(vars));
  }
});

Deno.test("loadConfig() forces path-style addressing for IP and localhost endpoints only", () => {
  const rows: [Record<string, string>, boolean][] = [
    [{}, false],
    [{ S3_ENDPOINT: "https://t3.storage.dev" }, false],
    [{ S3_ENDPOINT: "http://127.0.0.1:9000" }, true],
    [{ S3_ENDPOINT: "http://10.1.2.3" }, true],
    [{ S3_ENDPOINT: "http://localhost:7070" }, true],
    [{ S3_ENDPOINT: "http://s3.localhost:7070" }, true],
    [{ S3_ENDPOINT: "http://[::1]:7070" }, true],
    [{ S3_ENDPOINT: "http://127.0.0.1:9000", S3_FORCE_PATH_STYLE: "false" }, false],
    [{ S3_ENDPOINT: "https://t3.storage.dev", S3_FORCE_PATH_STYLE: "true" }, true],
    [{ AWS_ENDPOINT_URL_S3: "http://localhost:1" }, true],
  ];
  for (const [vars, pathStyle] of rows) {
    const store = loadConfig(envOf({ S3_BUCKET: "bucket", ...vars })).store;
    assert.equal(store.kind === "s3" && store.forcePathStyle, pathStyle, JSON.stringify(vars));
  }
});

Deno.test("loadConfig() stores in CACHE_DIR when S3_BUCKET is unset, in the bucket otherwise", () => {
  assert.deepEqual(loadConfig(envOf()).store, {
    kind: "local",
    dir: "./data/cache",
    maxBytes: null,
  });
  assert.deepEqual(loadConfig(envOf({ CACHE_DIR: "/var/cache/img" })).store, {
    kind: "local",
    dir: "/var/cache/img",
    maxBytes: null,
  });
  assert.deepEqual(loadConfig(envOf({ S3_BUCKET: "imgs", CACHE_DIR: "/ignored" })).store, {
    kind: "s3",
    bucket: "imgs",
    endpoint: "https://fly.storage.tigris.dev",
    region: "auto",
    forcePathStyle: false,
    conditionalWrite: true,
  });
  const off = loadConfig(envOf({ S3_BUCKET: "imgs", S3_CONDITIONAL_WRITE: "false" })).store;
  assert.equal(off.kind === "s3" && off.conditionalWrite, false);
});

Deno.test("loadConfig() ignores S3-only variables in local mode", () => {
  // The endpoint is only read (and checked) when there is a bucket.
  const c = loadConfig(envOf({ S3_ENDPOINT: "not a url", S3_FORCE_PATH_STYLE: "maybe" }));
  assert.equal(c.store.kind, "local");
});

Deno.test("loadConfig() normalises S3_FOLDER and rejects dot segments", () => {
  const good: [string, string][] = [
    ["processed", "processed"],
    ["/processed/", "processed"],
    ["a/b/", "a/b"],
    ["///a/b///", "a/b"],
    ["/", ""],
    ["..hidden/x", "..hidden/x"],
    ["a.b/c..d", "a.b/c..d"],
  ];
  for (const [value, folder] of good) {
    assert.equal(loadConfig(envOf({ S3_FOLDER: value })).folder, folder, value);
  }
  for (const value of ["..", "../x", "a/../b", "a/..", ".", "./a", "a/./b", "a//b"]) {
    const err = configError({ S3_FOLDER: value });
    assert.equal(err.problems.length, 1, value);
    assert.match(err.problems[0]!, /^S3_FOLDER: /, value);
  }
});

Deno.test("loadConfig() refuses a bucket name that would change the host or the path", () => {
  for (const good of ["imgs", "my-bucket.prod", "Legacy_Bucket", "a1"]) {
    const store = loadConfig(envOf({ S3_BUCKET: good })).store;
    assert.equal(store.kind === "s3" && store.bucket, good);
  }
  for (const bad of ["My_Bucket/x", "a b", "b:8080", "-lead", "b?q", "b@h", "é"]) {
    const err = configError({ S3_BUCKET: bad });
    assert.equal(err.problems.length, 1, bad);
    assert.match(err.problems[0]!, /^S3_BUCKET: expected a bucket name/, bad);
  }
});

Deno.test("loadConfig() parses whole numbers strictly and within range", () => {
  const bad: [VariableName, string][] = [
    ["UPLOAD_CONCURRENCY", "0"],
    ["UPLOAD_CONCURRENCY", "1025"],
    ["UPLOAD_CONCURRENCY", "1.5"],
    ["UPLOAD_CONCURRENCY", "-1"],
    ["UPLOAD_CONCURRENCY", "1e3"],
    ["UPLOAD_CONCURRENCY", "eight"],
    ["UPLOAD_CONCURRENCY", "0x10"],
    ["HEALTH_CHECK_TIMEOUT_IN_SEC", "30s"],
    ["UPSTREAM_TIMEOUT_IN_SEC", "0"],
    ["UPLOAD_MAX_BYTES_IN_FLIGHT", "99999999999999999999"],
    ["UPLOAD_RETRIES", "101"],
    ["STORE_LOOKUP_TIMEOUT_MS", "0"],
    ["CLIENT_HEADER_TIMEOUT_IN_SEC", "0"],
    ["CLIENT_IDLE_TIMEOUT_IN_SEC", "10s"],
    ["MAX_CLIENT_CONNECTIONS", "0"],
    ["CLIENT_SEND_TIMEOUT_IN_SEC", "0"],
    ["CLIENT_MIN_SEND_RATE_BYTES", "-1"],
    ["CLIENT_MIN_SEND_RATE_BYTES", "1k"],
  ];
  for (const [name, value] of bad) {
    const err = configError({ [name]: value });
    assert.equal(err.problems.length, 1, `${name}=${value}: ${err.message}`);
    assert.ok(err.problems[0]!.startsWith(`${name}: expected a whole number`), err.problems[0]);
    assert.ok(err.problems[0]!.includes(JSON.stringify(value)), err.problems[0]);
  }
  const c = loadConfig(envOf({
    UPLOAD_RETRIES: "0",
    HEALTH_CHECK_TIMEOUT_IN_SEC: "0",
    UPLOAD_DRAIN_TIMEOUT_IN_SEC: "2",
    UPLOAD_ATTEMPT_TIMEOUT_IN_SEC: "1",
    UPLOAD_DEDUP_KEYS: "0",
    UPSTREAM_TIMEOUT_IN_SEC: "5",
  }));
  assert.equal(c.upload.retries, 0);
  assert.equal(c.healthCheckTimeoutMs, 0);
  assert.equal(c.upload.drainTimeoutMs, 2000);
  assert.equal(c.upload.attemptTimeoutMs, 1000);
  assert.equal(c.upload.dedupKeys, 0);
  assert.equal(c.upstreamTimeoutMs, 5000);
});

Deno.test("loadConfig() reads booleans in their usual spellings and rejects others", () => {
  const rows: [string, boolean][] = [
    ["true", true],
    ["TRUE", true],
    ["1", true],
    ["yes", true],
    ["on", true],
    ["t", true],
    ["false", false],
    ["False", false],
    ["0", false],
    ["no", false],
    ["off", false],
    ["f", false],
  ];
  for (const [value, expected] of rows) {
    assert.equal(loadConfig(envOf({ COALESCE_REQUESTS: value })).coalesce, expected, value);
  }
  const err = configError({ COALESCE_REQUESTS: "maybe" });
  assert.deepEqual(err.problems, ['COALESCE_REQUESTS: expected true or false, got "maybe"']);
  assert.equal(loadConfig(envOf({ STORE_CHECK: "off" })).storeCheck, false);
  assert.deepEqual(configError({ STORE_CHECK: "skip" }).problems, [
    'STORE_CHECK: expected true or false, got "skip"',
  ]);
});

Deno.test("loadConfig() reads the formats imgproxy negotiates from its settings, null when none is set", () => {
  const rows: [Record<string, string>, string[] | null][] = [
    [{}, null],
    [{ IMGPROXY_AUTO_WEBP: "true" }, ["webp"]],
    [{ IMGPROXY_AUTO_WEBP: "false" }, []],
    [{ IMGPROXY_AUTO_AVIF: "1", IMGPROXY_ENFORCE_WEBP: "true" }, ["avif", "webp"]],
    [{ IMGPROXY_ENFORCE_JXL: "true", IMGPROXY_AUTO_AVIF: "true" }, ["jxl", "avif"]],
    [{ IMGPROXY_ENABLE_WEBP_DETECTION: "true" }, ["webp"]],
    [{ IMGPROXY_AUTO_WEBP: " " }, null],
  ];
  for (const [vars, formats] of rows) {
    assert.deepEqual(loadConfig(envOf(vars)).negotiatedFormats, formats, JSON.stringify(vars));
  }
  assert.deepEqual(configError({ IMGPROXY_AUTO_AVIF: "avif" }).problems, [
    'IMGPROXY_AUTO_AVIF: expected true or false, got "avif"',
  ]);
});

Deno.test("loadConfig() accepts only the listed CACHE_MODE and CACHE_VARIANTS values", () => {
  assert.equal(loadConfig(envOf({ CACHE_VARIANTS: "accept" })).cacheVariants, "accept");
  assert.equal(loadConfig(envOf({ CACHE_VARIANTS: "off" })).cacheVariants, "off");
  assert.equal(loadConfig(envOf({ CACHE_MODE: "read" })).cacheMode, "read");
  const c = loadConfig(envOf({ CACHE_MODE: "redirect", PUBLIC_BASE_URL: "https://cdn.example/" }));
  assert.equal(c.cacheMode, "redirect");
  assert.equal(c.publicBaseUrl, "https://cdn.example");
  assert.deepEqual(configError({ CACHE_VARIANTS: "Accept" }).problems, [
    'CACHE_VARIANTS: expected one of off, accept, got "Accept"',
  ]);
  assert.deepEqual(configError({ CACHE_MODE: "readonly" }).problems, [
    'CACHE_MODE: expected one of write, read, redirect, got "readonly"',
  ]);
  const redirect = configError({ CACHE_MODE: "redirect" });
  assert.equal(redirect.problems.length, 1);
  assert.match(redirect.problems[0]!, /^PUBLIC_BASE_URL: CACHE_MODE=redirect needs/);
});

Deno.test("loadConfig() keeps IMGPROXY_URL's path prefix and drops its trailing slash", () => {
  const rows: [string, string][] = [
    ["http://127.0.0.1:8081/", "http://127.0.0.1:8081"],
    ["http://imgproxy:8080/prefix/", "http://imgproxy:8080/prefix"],
    ["https://img.example", "https://img.example"],
  ];
  for (const [value, url] of rows) {
    assert.equal(loadConfig(envOf({ IMGPROXY_URL: value })).imgproxyUrl, url, value);
  }
  const bad: [string, RegExp][] = [
    ["127.0.0.1:8081", /^IMGPROXY_URL: expected an http\(s\) URL/],
    ["localhost:8081", /^IMGPROXY_URL: expected an http or https URL, got localhost: scheme/],
    ["not a url", /^IMGPROXY_URL: expected an http\(s\) URL/],
    ["ftp://host/", /^IMGPROXY_URL: expected an http or https URL, got ftp: scheme/],
    ["http://host/?x=1", /^IMGPROXY_URL: expected a URL without query or fragment/],
    ["http://host/#frag", /^IMGPROXY_URL: expected a URL without query or fragment/],
  ];
  for (const [value, problem] of bad) {
    const err = configError({ IMGPROXY_URL: value });
    assert.equal(err.problems.length, 1, value);
    assert.match(err.problems[0]!, problem, value);
  }
});

Deno.test("loadConfig() refuses a largest object above the bytes-in-flight budget", () => {
  const err = configError({ UPLOAD_MAX_OBJECT_BYTES: "2000", UPLOAD_MAX_BYTES_IN_FLIGHT: "1000" });
  assert.equal(err.problems.length, 1);
  assert.match(err.problems[0]!, /^UPLOAD_MAX_OBJECT_BYTES: must not exceed .*\(1000\), got 2000/);
  const ok = loadConfig(
    envOf({ UPLOAD_MAX_OBJECT_BYTES: "1000", UPLOAD_MAX_BYTES_IN_FLIGHT: "1000" }),
  );
  assert.equal(ok.upload.maxObjectBytes, 1000);
});

Deno.test("loadConfig() reports every problem at once", () => {
  const bad: Record<string, string> = {
    S3_BUCKET: "b",
    S3_ENDPOINT: "nope",
    S3_FORCE_PATH_STYLE: "sometimes",
    IMGPROXY_BIND: "8080",
    IMGPROXY_URL: "gopher://x",
    HEALTH_CHECK_TIMEOUT_IN_SEC: "soon",
    UPLOAD_CONCURRENCY: "-3",
    CACHE_VARIANTS: "all",
    S3_FOLDER: "../up",
  };
  const err = configError(bad);
  const named = err.problems.map((p) => p.slice(0, p.indexOf(":")));
  assert.deepEqual(
    named.toSorted(),
    Object.keys(bad).filter((n) => n !== "S3_BUCKET").toSorted(),
    err.message,
  );
  // The values are quoted back so the operator sees what was wrong.
  for (const value of ["nope", "sometimes", "8080", "soon", "-3", "all", "../up"]) {
    assert.ok(err.message.includes(JSON.stringify(value)), `${value} not in ${err.message}`);
  }
  assert.ok(err.message.includes("gopher:"), err.message);
  assert.ok(err.message.startsWith("Invalid configuration:\n  - "), err.message);
  assert.equal(err.message.split("\n").length, err.problems.length + 1);
  assert.equal(err.name, "ConfigError");
});

Deno.test("loadConfig() never echoes credentials from a URL", () => {
  const rows: [VariableName, string][] = [
    ["S3_ENDPOINT", "https://AKIAKEY:s3cr3tpass@s3.example.com"],
    ["S3_ENDPOINT", "https://AKIAKEY:s3cr3tpass@s3.example.com:99999"],
    ["S3_ENDPOINT", "https://AKIAKEY:s3cr3tpass@s3 example.com"],
    ["S3_ENDPOINT", "https://AKIAKEY:s3cr3tpass@s3.example.com/?q=1"],
    ["S3_ENDPOINT", "ftp://AKIAKEY:s3cr3tpass@s3.example.com"],
    ["IMGPROXY_URL", "http://user:s3cr3tpass@127.0.0.1:8081"],
    ["IMGPROXY_URL", "http://user:s3cr3tpass@127.0.0.1:808x"],
    ["PUBLIC_BASE_URL", "https://user:s3cr3tpass@cdn.example"],
  ];
  for (const [name, value] of rows) {
    const err = configError({ S3_BUCKET: "b", [name]: value });
    assert.equal(err.problems.length, 1, `${name}=${value}: ${err.message}`);
    assert.ok(err.problems[0]!.startsWith(`${name}: `), err.message);
    assert.ok(!err.message.includes("s3cr3tpass"), `password leaked: ${err.message}`);
  }
});

Deno.test("loadConfig() never echoes a password that contains '@'", () => {
  // Users do paste unencoded passwords; WHATWG URL takes the last '@' as the separator.
  const rows = [
    "https://key:s3cr@tpass@s3.example.com:99999",
    "https://key:s3cr@tpass@s3 example.com",
  ];
  for (const value of rows) {
    const err = configError({ S3_BUCKET: "b", S3_ENDPOINT: value });
    assert.ok(!err.message.includes("tpass"), `part of the password leaked: ${err.message}`);
  }
});

Deno.test("loadConfig() refuses a 200 fallback image it could not tell from a real one", () => {
  for (const source of ["DATA", "PATH", "URL"]) {
    const name = `IMGPROXY_FALLBACK_IMAGE_${source}`;
    const err = configError({ [name]: "x" });
    assert.equal(err.problems.length, 1, name);
    assert.match(err.problems[0]!, /^IMGPROXY_FALLBACK_IMAGE_HTTP_CODE: /, name);
    assert.match(err.problems[0]!, /IMGPROXY_FALLBACK_IMAGE_TTL/, name);
  }
});

Deno.test("loadConfig() derives the fallback-image rule from imgproxy's settings", () => {
  const rows: [Record<string, string>, number | null | "error"][] = [
    [{}, null],
    [{ IMGPROXY_FALLBACK_IMAGE_TTL: "60" }, null], // no fallback image configured
    [{ IMGPROXY_FALLBACK_IMAGE_URL: "https://x/y.png", IMGPROXY_FALLBACK_IMAGE_TTL: "60" }, 60],
    // imgproxy ignores a fallback TTL of 0: the placeholder then looks like a real image.
    [{ IMGPROXY_FALLBACK_IMAGE_PATH: "/f.png", IMGPROXY_FALLBACK_IMAGE_TTL: "0" }, "error"],
    [{
      IMGPROXY_FALLBACK_IMAGE_DATA: "iVBOR",
      IMGPROXY_FALLBACK_IMAGE_HTTP_CODE: "200",
      IMGPROXY_FALLBACK_IMAGE_TTL: "3600",
      IMGPROXY_TTL: "86400",
    }, 3600],
    [{ IMGPROXY_FALLBACK_IMAGE_DATA: "iVBOR", IMGPROXY_FALLBACK_IMAGE_HTTP_CODE: "404" }, null],
    [{ IMGPROXY_FALLBACK_IMAGE_DATA: "iVBOR", IMGPROXY_FALLBACK_IMAGE_HTTP_CODE: "500" }, null],
    [{ IMGPROXY_FALLBACK_IMAGE_URL: "https://x/y.png" }, "error"],
    [{ IMGPROXY_FALLBACK_IMAGE_URL: "u", IMGPROXY_FALLBACK_IMAGE_TTL: "31536000" }, "error"],
    [{
      IMGPROXY_FALLBACK_IMAGE_URL: "u",
      IMGPROXY_FALLBACK_IMAGE_TTL: "600",
      IMGPROXY_TTL: "600",
    }, "error"],
    [{ IMGPROXY_FALLBACK_IMAGE_URL: "u", IMGPROXY_FALLBACK_IMAGE_TTL: "soon" }, "error"],
    // Above IMGPROXY_TTL every real image would look like a placeholder.
    [{
      IMGPROXY_FALLBACK_IMAGE_URL: "u",
      IMGPROXY_FALLBACK_IMAGE_TTL: "86400",
      IMGPROXY_TTL: "3600",
    }, "error"],
    [{ IMGPROXY_FALLBACK_IMAGE_URL: "u", IMGPROXY_FALLBACK_IMAGE_HTTP_CODE: "abc" }, "error"],
  ];
  for (const [vars, expected] of rows) {
    const label = JSON.stringify(vars);
    if (expected === "error") {
      const err = configError(vars);
      assert.match(err.message, /IMGPROXY_FALLBACK_IMAGE_(TTL|HTTP_CODE)/, label);
    } else {
      assert.equal(loadConfig(envOf(vars)).fallbackMaxAge, expected, label);
    }
  }
});

Deno.test("loadConfig() returns a frozen configuration", () => {
  const c = loadConfig(envOf());
  assert.ok(Object.isFrozen(c));
  assert.throws(() => {
    (c as { folder: string }).folder = "x";
  }, TypeError);
});

Deno.test("maxAgeOf() reads max-age out of Cache-Control", () => {
  const rows: [string | null, number | null][] = [
    [null, null],
    ["", null],
    ["public", null],
    ["max-age=31536000, public", 31536000],
    ["public, max-age=60", 60],
    ["public,max-age=60", 60],
    ["MAX-AGE=5", 5],
    ['max-age="7"', 7],
    ["max-age = 8", 8],
    ["s-maxage=9", null],
    ["s-maxage=9, max-age=10", 10],
    ["max-age=abc", null],
  ];
  for (const [value, expected] of rows) {
    assert.equal(maxAgeOf(value), expected, String(value));
  }
});

Deno.test("isLocalOrIpHost() recognises IP addresses and localhost", () => {
  const rows: [string, boolean][] = [
    ["http://127.0.0.1:9000", true],
    ["http://192.168.1.10", true],
    ["http://[::1]:9000", true],
    ["http://localhost:9000", true],
    ["http://LOCALHOST", true],
    ["http://minio.localhost", true],
    ["https://fly.storage.tigris.dev", false],
    ["https://s3.us-east-1.amazonaws.com", false],
    ["https://127.0.0.1.nip.io", false],
    ["not a url", false],
  ];
  for (const [url, expected] of rows) {
    assert.equal(isLocalOrIpHost(url), expected, url);
  }
});

Deno.test("denoEnv() reads a variable from the process environment", () => {
  const name = "IMGPROXY_CACHE_CONFIG_TEST_VARIABLE";
  Deno.env.set(name, "value");
  try {
    assert.equal(denoEnv(name), "value");
  } finally {
    Deno.env.delete(name);
  }
  assert.equal(denoEnv(name), undefined);
});

Deno.test("loadConfig() takes LOG_FORMAT and LOG_LEVEL, else imgproxy's log settings", () => {
  const rows: [Record<string, string>, { format: string; level: string }][] = [
    [{}, { format: "text", level: "INFO" }],
    [{ LOG_FORMAT: "json" }, { format: "json", level: "INFO" }],
    [{ LOG_FORMAT: "JSON", LOG_LEVEL: "Warn" }, { format: "json", level: "WARN" }],
    [{ IMGPROXY_LOG_FORMAT: "json" }, { format: "json", level: "INFO" }],
    [{ IMGPROXY_LOG_FORMAT: "gcp" }, { format: "json", level: "INFO" }],
    [{ IMGPROXY_LOG_FORMAT: "structured" }, { format: "text", level: "INFO" }],
    [{ IMGPROXY_LOG_FORMAT: "pretty" }, { format: "text", level: "INFO" }],
    [{ IMGPROXY_LOG_FORMAT: "json", LOG_FORMAT: "text" }, { format: "text", level: "INFO" }],
    [{ IMGPROXY_LOG_LEVEL: "debug" }, { format: "text", level: "DEBUG" }],
    [{ IMGPROXY_LOG_LEVEL: "debug", LOG_LEVEL: "error" }, { format: "text", level: "ERROR" }],
  ];
  for (const [vars, log] of rows) {
    assert.deepEqual(loadConfig(envOf(vars)).log, log, JSON.stringify(vars));
    assert.deepEqual(logSettings(envOf(vars)), log, JSON.stringify(vars));
  }
});

Deno.test("loadConfig() refuses unknown log formats and levels, naming the variable", () => {
  const err = configError({
    LOG_FORMAT: "xml",
    LOG_LEVEL: "loud",
    IMGPROXY_LOG_FORMAT: "fancy",
    IMGPROXY_LOG_LEVEL: "trace",
    ACCESS_LOG: "maybe",
  });
  for (const name of ["LOG_FORMAT", "LOG_LEVEL", "IMGPROXY_LOG_FORMAT", "IMGPROXY_LOG_LEVEL"]) {
    assert.ok(err.problems.some((p) => p.startsWith(`${name}: expected one of`)), name);
  }
  assert.ok(err.problems.some((p) => p.startsWith("ACCESS_LOG: expected true or false")));
  // The lenient reader behind the first log line falls back instead.
  assert.deepEqual(logSettings(envOf({ LOG_FORMAT: "xml", IMGPROXY_LOG_FORMAT: "json" })), {
    format: "json",
    level: "INFO",
  });
});

Deno.test("loadConfig() gives redirects a short Cache-Control, private with IMGPROXY_SECRET", () => {
  assert.equal(loadConfig(envOf()).redirectCacheControl, "public, max-age=60");
  assert.equal(
    loadConfig(envOf({ IMGPROXY_SECRET: "s3cr3t" })).redirectCacheControl,
    "private, max-age=60",
  );
  assert.equal(
    loadConfig(envOf({ REDIRECT_CACHE_CONTROL: "public, max-age=3600, immutable" }))
      .redirectCacheControl,
    "public, max-age=3600, immutable",
  );
  const err = configError({ REDIRECT_CACHE_CONTROL: "max-age=1\u0007" });
  assert.ok(err.problems.some((p) => p.startsWith("REDIRECT_CACHE_CONTROL: expected")));
});
