import assert from "node:assert/strict";
import {
  cacheOutcome,
  createProxyMetrics,
  instrumentHandler,
  instrumentStore,
  instrumentUpstream,
  SKIP_REASONS,
  skipOutcome,
} from "../lib/metrics.ts";
import {
  CONTENT_TYPE,
  escapeHelp,
  escapeLabelValue,
  formatNumber,
  Registry,
} from "../lib/prometheus.ts";
import { serveMetrics } from "./support/ops_server.ts";
import type { UploaderStats } from "../lib/upload_types.ts";
import type { Store } from "../lib/store/store.ts";

Deno.test("counter, gauge and histogram render the 0.0.4 text format exactly", () => {
  const r = new Registry();
  const c = r.counter("app_requests_total", "Requests.", { labelNames: ["status", "cache"] });
  c.inc({ status: "200", cache: "miss" });
  c.inc({ status: "200", cache: "miss" }, 2);
  c.inc({ status: "404", cache: "bypass" });
  r.counter("app_plain_total", "Never incremented.");
  const g = r.gauge("app_depth", "Depth.");
  g.set(7);
  g.dec();
  const h = r.histogram("app_seconds", "Latency.", { buckets: [0.1, 1, 2.5] });
  h.observe(0.05);
  h.observe(0.1); // le is inclusive
  h.observe(0.7);
  h.observe(100);
  assert.equal(
    r.render(),
    [
      "# HELP app_requests_total Requests.",
      "# TYPE app_requests_total counter",
      'app_requests_total{status="200",cache="miss"} 3',
      'app_requests_total{status="404",cache="bypass"} 1',
      "# HELP app_plain_total Never incremented.",
      "# TYPE app_plain_total counter",
      "app_plain_total 0",
      "# HELP app_depth Depth.",
      "# TYPE app_depth gauge",
      "app_depth 6",
      "# HELP app_seconds Latency.",
      "# TYPE app_seconds histogram",
      'app_seconds_bucket{le="0.1"} 2',
      'app_seconds_bucket{le="1"} 3',
      'app_seconds_bucket{le="2.5"} 3',
      'app_seconds_bucket{le="+Inf"} 4',
      "app_seconds_sum 100.85",
      "app_seconds_count 4",
      "",
    ].join("\n"),
  );
});

Deno.test("labelled histograms put le last and keep one cumulative series per label set", () => {
  const r = new Registry();
  const h = r.histogram("op_seconds", "Ops.", { labelNames: ["operation"], buckets: [1, 2] });
  h.observe(1.5, { operation: "put" });
  h.observe(0.5, { operation: "get" });
  h.observe(3, { operation: "put" });
  h.observe(0.25, { operation: "put" });
  assert.equal(
    r.render(),
    [
      "# HELP op_seconds Ops.",
      "# TYPE op_seconds histogram",
      'op_seconds_bucket{operation="put",le="1"} 1',
      'op_seconds_bucket{operation="put",le="2"} 2',
      'op_seconds_bucket{operation="put",le="+Inf"} 3',
      'op_seconds_sum{operation="put"} 4.75',
      'op_seconds_count{operation="put"} 3',
      'op_seconds_bucket{operation="get",le="1"} 1',
      'op_seconds_bucket{operation="get",le="2"} 1',
      'op_seconds_bucket{operation="get",le="+Inf"} 1',
      'op_seconds_sum{operation="get"} 0.5',
      'op_seconds_count{operation="get"} 1',
      "",
    ].join("\n"),
  );
});

Deno.test("an unobserved label-less histogram exports zero buckets; a labelled one no series", () => {
  const r = new Registry();
  r.histogram("a_seconds", "A.", { buckets: [1] });
  r.histogram("b_seconds", "B.", { labelNames: ["x"], buckets: [1] });
  assert.equal(
    r.render(),
    [
      "# HELP a_seconds A.",
      "# TYPE a_seconds histogram",
      'a_seconds_bucket{le="1"} 0',
      'a_seconds_bucket{le="+Inf"} 0',
      "a_seconds_sum 0",
      "a_seconds_count 0",
      "# HELP b_seconds B.",
      "# TYPE b_seconds histogram",
      "",
    ].join("\n"),
  );
});

Deno.test("label values escape backslash, double quote and line feed; help escapes \\ and \\n", () => {
  const table: [string, string][] = [
    ["plain", "plain"],
    ['say "hi"', 'say \\"hi\\"'],
    ["C:\\dir", "C:\\\\dir"],
    ["two\nlines", "two\\nlines"],
    ['\\"\n', '\\\\\\"\\n'],
    ["tab\tand ünï", "tab\tand ünï"],
  ];
  for (const [input, want] of table) assert.equal(escapeLabelValue(input), want, input);
  assert.equal(escapeHelp('a\\b\nc "q"'), 'a\\\\b\\nc "q"');

  const r = new Registry();
  r.counter("esc_total", "Line one\nback\\slash", { labelNames: ["v"] }).inc({
    v: 'a"b\\c\nd',
  });
  assert.equal(
    r.render(),
    '# HELP esc_total Line one\\nback\\\\slash\n# TYPE esc_total counter\nesc_total{v="a\\"b\\\\c\\nd"} 1\n',
  );
});

Deno.test("numbers: +Inf, -Inf, NaN and plain decimals", () => {
  assert.equal(formatNumber(Infinity), "+Inf");
  assert.equal(formatNumber(-Infinity), "-Inf");
  assert.equal(formatNumber(NaN), "NaN");
  assert.equal(formatNumber(0.005), "0.005");
  assert.equal(formatNumber(42), "42");
  const r = new Registry();
  r.gauge("g", "G.").set(-Infinity);
  assert.match(r.render(), /^g -Inf$/m);
});

Deno.test("invalid names, labels, buckets and values are refused", () => {
  const r = new Registry();
  assert.throws(() => r.counter("1bad", "x"), TypeError);
  assert.throws(() => r.counter("ok_total", "x", { labelNames: ["__reserved"] }), TypeError);
  assert.throws(() => r.counter("ok2_total", "x", { labelNames: ["a-b"] }), TypeError);
  assert.throws(() => r.histogram("h", "x", { labelNames: ["le"] }), TypeError);
  assert.throws(() => r.histogram("h2", "x", { buckets: [1, 1] }), TypeError);
  assert.throws(() => r.histogram("h3", "x", { buckets: [2, 1] }), TypeError);
  const c = r.counter("c_total", "x", { labelNames: ["a"] });
  assert.throws(() => c.inc({}), /Missing label "a"/);
  assert.throws(() => c.inc({ a: "1", b: "2" }), /Unknown label "b"/);
  assert.throws(() => c.inc({ a: "1" }, -1), RangeError);
  assert.throws(() => r.counter("c_total", "again"), /already registered/);
});

Deno.test("gauges and counters with collect callbacks read their source at render time", () => {
  const r = new Registry();
  let depth = 1;
  r.gauge("depth", "D.", { collect: (g) => g.set(depth) });
  assert.match(r.render(), /^depth 1$/m);
  depth = 5;
  assert.match(r.render(), /^depth 5$/m);
});

function stats(): UploaderStats {
  return {
    stored: 3,
    alreadyPresent: 1,
    failed: 2,
    retries: 4,
    skipped: {
      "recently-stored": 5,
      "in-progress": 6,
      "no-room": 7,
      "too-large": 8,
      incomplete: 9,
      closed: 10,
      "store-down": 13,
    },
    queueDepth: 11,
    bytesInFlight: 12345,
  };
}

Deno.test("createProxyMetrics: uploads by outcome, queue and bytes gauges, coalesced", () => {
  const r = new Registry();
  const m = createProxyMetrics(r);
  // Before an app is attached every outcome is already exported at 0.
  const before = r.render();
  for (const o of ["stored", "already_present", "failed", ...SKIP_REASONS.map(skipOutcome)]) {
    assert.match(before, new RegExp(`^imgproxy_cache_uploads_total\\{outcome="${o}"\\} 0$`, "m"));
  }
  m.attach({ uploader: { stats: stats() }, coalesceStats: { coalesced: 13 } });
  const text = r.render();
  const want = [
    'imgproxy_cache_uploads_total{outcome="stored"} 3',
    'imgproxy_cache_uploads_total{outcome="already_present"} 1',
    'imgproxy_cache_uploads_total{outcome="failed"} 2',
    'imgproxy_cache_uploads_total{outcome="skipped_recently_stored"} 5',
    'imgproxy_cache_uploads_total{outcome="skipped_in_progress"} 6',
    'imgproxy_cache_uploads_total{outcome="skipped_no_room"} 7',
    'imgproxy_cache_uploads_total{outcome="skipped_too_large"} 8',
    'imgproxy_cache_uploads_total{outcome="skipped_incomplete"} 9',
    'imgproxy_cache_uploads_total{outcome="skipped_closed"} 10',
    'imgproxy_cache_uploads_total{outcome="skipped_store_down"} 13',
    "imgproxy_cache_upload_retries_total 4",
    "# TYPE imgproxy_cache_upload_queue_depth gauge",
    "imgproxy_cache_upload_queue_depth 11",
    "imgproxy_cache_upload_bytes_in_flight 12345",
    "# TYPE imgproxy_cache_coalesced_requests_total counter",
    "imgproxy_cache_coalesced_requests_total 13",
    "# TYPE imgproxy_cache_requests_total counter",
    "# TYPE imgproxy_cache_upstream_duration_seconds histogram",
    "# TYPE imgproxy_cache_store_duration_seconds histogram",
  ];
  for (const line of want) assert.ok(text.split("\n").includes(line), line);
});

Deno.test("instrumented handler, upstream and store feed requests and latency metrics", async () => {
  const m = createProxyMetrics(new Registry());
  const handler = instrumentHandler((req) => {
    const p = new URL(req.url).pathname;
    if (p === "/hit") return Promise.resolve(new Response("x", { headers: { "x-cache": "HIT" } }));
    if (p === "/bypass") {
      return Promise.resolve(
        new Response("x", { status: 404, headers: { "x-cache": "BYPASS; reason=status" } }),
      );
    }
    if (p === "/throw") return Promise.reject(new Error("boom"));
    return Promise.resolve(new Response("x", { status: 502 }));
  }, m);
  for (const p of ["/hit", "/hit", "/bypass", "/other"]) {
    await (await handler(new Request(`http://x${p}`))).body?.cancel();
  }
  await assert.rejects(handler(new Request("http://x/throw")), /boom/);
  assert.equal(m.requests.get({ status: "200", cache: "hit" }), 2);
  assert.equal(m.requests.get({ status: "404", cache: "bypass" }), 1);
  assert.equal(m.requests.get({ status: "502", cache: "none" }), 1);
  assert.equal(m.requests.get({ status: "500", cache: "none" }), 1);
  assert.equal(cacheOutcome(new Response(null, { headers: { "x-cache": "weird" } })), "other");

  const upstream = instrumentUpstream(() => Promise.resolve(new Response(null)), m);
  await upstream({
    method: "GET",
    target: "/",
    headers: new Headers(),
    body: null,
    signal: new AbortController().signal,
  });
  assert.match(m.registry.render(), /^imgproxy_cache_upstream_duration_seconds_count 1$/m);

  const inner: Store = {
    description: "test",
    storedMessage: "Stored",
    logFields: {},
    put: () => Promise.resolve("stored"),
    has: () => Promise.resolve(false),
    get: () => Promise.reject(new Error("down")),
    variants: () => Promise.resolve([]),
    delete: () => Promise.resolve(),
  };
  const store = instrumentStore(inner, m);
  assert.equal(store.description, "test");
  await store.put("k", new Uint8Array(1), {
    contentType: "image/png",
    cacheControl: null,
    ifAbsent: true,
  });
  await store.has("k");
  await store.has("k");
  await assert.rejects(store.get("k"), /down/);
  await store.variants("k");
  await store.delete("k");
  const text = m.registry.render();
  assert.match(text, /^imgproxy_cache_store_duration_seconds_count\{operation="list"\} 1$/m);
  assert.match(text, /^imgproxy_cache_store_duration_seconds_count\{operation="delete"\} 1$/m);
  assert.match(text, /^imgproxy_cache_store_duration_seconds_count\{operation="put"\} 1$/m);
  assert.match(text, /^imgproxy_cache_store_duration_seconds_count\{operation="head"\} 2$/m);
  assert.match(text, /^imgproxy_cache_store_duration_seconds_count\{operation="get"\} 1$/m);
});

Deno.test("serveMetrics: a real scrape over a socket; 404 elsewhere, 405 for other methods", async () => {
  const registry = new Registry();
  const m = createProxyMetrics(registry, { uploader: { stats: stats() } });
  m.requests.inc({ status: "200", cache: "miss" });
  const stop = new AbortController();
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = serveMetrics({
    hostname: "127.0.0.1",
    port: 0,
    signal: stop.signal,
    onListen: listening.resolve,
  }, registry);
  try {
    const { port } = await listening.promise;
    const base = `http://127.0.0.1:${port}`;
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), CONTENT_TYPE);
    assert.equal(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    const body = await res.text();
    // The same exposition, but for the process's memory and CPU, which move between scrapes.
    const steady = (text: string) =>
      text.split("\n").filter((l) => !/^process_(resident|cpu)/.test(l));
    assert.deepEqual(steady(body), steady(registry.render()));
    assert.match(body, /^imgproxy_cache_requests_total\{status="200",cache="miss"\} 1$/m);
    assert.match(body, /^imgproxy_cache_upload_queue_depth 11$/m);
    // Every non-comment line is `name{labels} value`.
    for (const line of body.split("\n").filter((l) => l !== "" && !l.startsWith("#"))) {
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$/, line);
    }

    const missing = await fetch(`${base}/other`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const post = await fetch(`${base}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
  } finally {
    stop.abort();
    await server.finished;
  }
});

Deno.test("createProxyMetrics: lookups by outcome, breaker states, process and build metrics", async () => {
  const r = new Registry();
  const breakers = {
    lookup: { state: "open" as const },
    upload: { state: "half-open" as const },
  };
  const m = createProxyMetrics(r);
  m.attach({ breakers });
  const answers = [
    new Response("x", { headers: { "x-cache": "HIT" } }),
    new Response(null, { status: 302, headers: { "x-cache": "HIT" } }),
    new Response("x", { headers: { "x-cache": "MISS", "x-cache-lookup": "miss" } }),
    new Response("x", { headers: { "x-cache": "MISS", "x-cache-lookup": "skipped" } }),
    new Response("x", { headers: { "x-cache": "MISS", "x-cache-lookup": "error" } }),
    new Response("x", { headers: { "x-cache": "MISS" } }), // write mode: no lookup
  ];
  let i = 0;
  const handler = instrumentHandler(() => Promise.resolve(answers[i++]!), m);
  for (const _ of answers) await handler(new Request("http://x/"));
  const text = r.render();
  for (
    const line of [
      'imgproxy_cache_lookups_total{outcome="hit"} 2',
      'imgproxy_cache_lookups_total{outcome="miss"} 1',
      'imgproxy_cache_lookups_total{outcome="error"} 1',
      'imgproxy_cache_lookups_total{outcome="skipped"} 1',
      'imgproxy_cache_store_breaker_state{calls="lookups"} 1',
      'imgproxy_cache_store_breaker_state{calls="uploads"} 2',
      "# TYPE process_cpu_seconds_total counter",
      "# TYPE process_resident_memory_bytes gauge",
    ]
  ) assert.ok(text.split("\n").includes(line), `${line} missing in:\n${text}`);
  const value = (name: string) =>
    Number(text.split("\n").find((l) => l.startsWith(name + " "))!.slice(name.length + 1));
  assert.ok(value("process_resident_memory_bytes") > 1_000_000);
  assert.ok(value("process_cpu_seconds_total") > 0);
  const start = value("process_start_time_seconds");
  assert.ok(start <= Date.now() / 1000 && start > Date.now() / 1000 - 3600, String(start));
  assert.match(
    text,
    new RegExp(
      `^imgproxy_cache_build_info\\{version="\\d+\\.\\d+\\.\\d+",deno="${Deno.version.deno}",v8="[^"]+",typescript="[^"]+"\\} 1$`,
      "m",
    ),
  );
});
