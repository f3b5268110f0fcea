/**
 * The proxy's Prometheus instruments (requests, lookups, uploads, store latency, breakers, the
 * process) and the `/metrics` route. The registry itself is lib/prometheus.ts.
 */
import { readOnly, type Route } from "./ops.ts";
import type { EvictionStats } from "./store/bounded_local.ts";
import type { OpenObject, Store } from "./store/store.ts";
import type { StoreCheckStats } from "./store_check.ts";
import type { SkipReason, UploaderStats } from "./upload_types.ts";
import type { Upstream } from "./upstream.ts";
import type { BreakerState } from "./breaker.ts";
import { registerProcessMetrics } from "./process_metrics.ts";
import {
  CONTENT_TYPE,
  type Counter,
  type Gauge,
  type Histogram,
  LATENCY_BUCKETS,
  type Registry,
} from "./prometheus.ts";

/** Where the collected metrics read their values (the running app's counters). */
export interface MetricSources {
  uploader?: { readonly stats: Readonly<UploaderStats> };
  coalesceStats?: { readonly coalesced: number };
  storeChecks?: Readonly<StoreCheckStats>;
  /** The store breakers (their state is read at scrape time). */
  breakers?: Readonly<Record<"lookup" | "upload", { readonly state: BreakerState }>>;
  /** The bounded local store's counters (CACHE_DIR_MAX_BYTES). */
  cacheDir?: {
    readonly stats: Readonly<EvictionStats>;
    readonly budget: { readonly totalBytes: number };
  };
}

/** What a store lookup came to, as `X-Cache` and `X-Cache-Lookup` tell. */
export const LOOKUP_OUTCOMES = ["hit", "miss", "error", "skipped", "mismatch", "expired"] as const;

/** The breaker states as the gauge's values. */
const BREAKER_VALUES: Record<BreakerState, number> = { closed: 0, open: 1, "half-open": 2 };

/** The uploader's skip reasons, as the `skipped_<reason>` outcomes show them. */
export const SKIP_REASONS: readonly SkipReason[] = [
  "recently-stored",
  "in-progress",
  "no-room",
  "too-large",
  "incomplete",
  "closed",
  "store-down",
];

/** The `outcome` label value for a skip reason: `skipped_` + reason with `-` → `_`. */
export function skipOutcome(reason: SkipReason): string {
  return `skipped_${reason.replaceAll("-", "_")}`;
}

/** The proxy's instruments. */
export interface ProxyMetrics {
  registry: Registry;
  /** `imgproxy_cache_requests_total{status,cache}`. */
  requests: Counter;
  /** `imgproxy_cache_bypasses_total{reason}`: answers not cached, by `X-Cache` reason. */
  bypasses: Counter;
  /** `imgproxy_cache_lookups_total{outcome}`: read and redirect modes' store lookups. */
  lookups: Counter;
  /** `imgproxy_cache_upstream_duration_seconds`: time until imgproxy's response headers. */
  upstreamSeconds: Histogram;
  /** `imgproxy_cache_store_duration_seconds{operation}`: put, get, head. */
  storeSeconds: Histogram;
  /** `imgproxy_cache_uploads_total{outcome}`, mirrored from the uploader's counters. */
  uploads: Counter;
  /** `imgproxy_cache_upload_retries_total`. */
  uploadRetries: Counter;
  /** `imgproxy_cache_upload_queue_depth`. */
  queueDepth: Gauge;
  /** `imgproxy_cache_upload_bytes_in_flight`. */
  bytesInFlight: Gauge;
  /** `imgproxy_cache_coalesced_requests_total`. */
  coalesced: Counter;
  /** `imgproxy_cache_store_checks_total{result}`, mirrored from the store check's counters. */
  storeChecks: Counter;
  /** `imgproxy_cache_evictions_total`: objects removed to keep CACHE_DIR under its bound. */
  evictions: Counter;
  /** `imgproxy_cache_evicted_bytes_total`. */
  evictedBytes: Counter;
  /** `imgproxy_cache_dir_bytes`: bytes the bounded cache directory holds, as accounted. */
  dirBytes: Gauge;
  /** Points the collected metrics at a running app (`createApp`'s result fits). */
  attach(sources: MetricSources): void;
}

/** Registers the proxy's instruments in `registry`. */
export function createProxyMetrics(
  registry: Registry,
  initial: MetricSources = {},
): ProxyMetrics {
  const sources: MetricSources = { ...initial };
  registerProcessMetrics(registry);
  const requests = registry.counter(
    "imgproxy_cache_requests_total",
    "Requests answered, by HTTP status and cache outcome (hit, miss, bypass, none).",
    { labelNames: ["status", "cache"] },
  );
  const bypasses = registry.counter(
    "imgproxy_cache_bypasses_total",
    "Answers neither looked up nor stored, by the reason X-Cache gives (rule, status, vary...).",
    { labelNames: ["reason"] },
  );
  const lookups = registry.counter(
    "imgproxy_cache_lookups_total",
    "Store lookups (read and redirect modes), by outcome: hit, miss, error (failed or timed " +
      "out), skipped (the breaker is open), mismatch, expired.",
    { labelNames: ["outcome"] },
  );
  for (const outcome of LOOKUP_OUTCOMES) lookups.init({ outcome });
  registry.gauge(
    "imgproxy_cache_store_breaker_state",
    "State of the store breakers: 0 closed (calls go through), 1 open (calls skipped), " +
      "2 half-open (one probe allowed).",
    {
      labelNames: ["calls"],
      collect: (g) => {
        const b = sources.breakers;
        g.set(BREAKER_VALUES[b?.lookup.state ?? "closed"], { calls: "lookups" });
        g.set(BREAKER_VALUES[b?.upload.state ?? "closed"], { calls: "uploads" });
      },
    },
  );
  const upstreamSeconds = registry.histogram(
    "imgproxy_cache_upstream_duration_seconds",
    "Time from sending a request to imgproxy until its response headers arrive.",
    { buckets: LATENCY_BUCKETS },
  );
  const storeSeconds = registry.histogram(
    "imgproxy_cache_store_duration_seconds",
    "Duration of store operations (put, get, head, list, delete), successful or not.",
    {
      labelNames: ["operation"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    },
  );
  const uploads = registry.counter(
    "imgproxy_cache_uploads_total",
    "Bodies handed to the uploader, by outcome: stored, already_present, failed, skipped_<reason>.",
    {
      labelNames: ["outcome"],
      collect: (c) => {
        const s = sources.uploader?.stats;
        if (s === undefined) return;
        c.setTotal({ outcome: "stored" }, s.stored);
        c.setTotal({ outcome: "already_present" }, s.alreadyPresent);
        c.setTotal({ outcome: "failed" }, s.failed);
        for (const r of SKIP_REASONS) c.setTotal({ outcome: skipOutcome(r) }, s.skipped[r]);
      },
    },
  );
  for (const o of ["stored", "already_present", "failed", ...SKIP_REASONS.map(skipOutcome)]) {
    uploads.init({ outcome: o });
  }
  const uploadRetries = registry.counter(
    "imgproxy_cache_upload_retries_total",
    "Store writes tried again after a transient failure.",
    { collect: (c) => c.setTotal({}, sources.uploader?.stats.retries ?? 0) },
  );
  const queueDepth = registry.gauge(
    "imgproxy_cache_upload_queue_depth",
    "Bodies waiting for a writer plus writes under way.",
    { collect: (g) => g.set(sources.uploader?.stats.queueDepth ?? 0) },
  );
  const bytesInFlight = registry.gauge(
    "imgproxy_cache_upload_bytes_in_flight",
    "Bytes reserved by bodies being collected, queued or written.",
    { collect: (g) => g.set(sources.uploader?.stats.bytesInFlight ?? 0) },
  );
  const coalesced = registry.counter(
    "imgproxy_cache_coalesced_requests_total",
    "Requests answered from another request's answer from imgproxy.",
    { collect: (c) => c.setTotal({}, sources.coalesceStats?.coalesced ?? 0) },
  );
  const storeChecks = registry.counter(
    "imgproxy_cache_store_checks_total",
    "Store checks (at start-up, then while the store does not answer), by result: ok, unreachable, misconfigured.",
    {
      labelNames: ["result"],
      collect: (c) => {
        const s = sources.storeChecks;
        for (const result of ["ok", "unreachable", "misconfigured"] as const) {
          c.setTotal({ result }, s?.[result] ?? 0);
        }
      },
    },
  );
  const evictions = registry.counter(
    "imgproxy_cache_evictions_total",
    "Objects removed from the cache directory, least recently used first, to stay under CACHE_DIR_MAX_BYTES.",
    { collect: (c) => c.setTotal({}, sources.cacheDir?.stats.evictions ?? 0) },
  );
  const evictedBytes = registry.counter(
    "imgproxy_cache_evicted_bytes_total",
    "Bytes those evicted objects took (with their metadata files).",
    { collect: (c) => c.setTotal({}, sources.cacheDir?.stats.evictedBytes ?? 0) },
  );
  const dirBytes = registry.gauge(
    "imgproxy_cache_dir_bytes",
    "Bytes the cache directory holds as accounted against CACHE_DIR_MAX_BYTES (0 when unbounded).",
    { collect: (g) => g.set(sources.cacheDir?.budget.totalBytes ?? 0) },
  );
  return {
    registry,
    storeChecks,
    requests,
    bypasses,
    lookups,
    upstreamSeconds,
    storeSeconds,
    uploads,
    uploadRetries,
    queueDepth,
    bytesInFlight,
    coalesced,
    evictions,
    evictedBytes,
    dirBytes,
    attach(s) {
      if (s.uploader !== undefined) sources.uploader = s.uploader;
      if (s.coalesceStats !== undefined) sources.coalesceStats = s.coalesceStats;
      if (s.storeChecks !== undefined) sources.storeChecks = s.storeChecks;
      if (s.breakers !== undefined) sources.breakers = s.breakers;
      if (s.cacheDir !== undefined) sources.cacheDir = s.cacheDir;
    },
  };
}

/** The `cache` label of an answer: its `X-Cache` outcome in lower case, or `none`. */
export function cacheOutcome(res: Response): string {
  const x = res.headers.get("x-cache");
  if (x === null) return "none";
  const word = x.split(";")[0]!.trim().toLowerCase();
  return ["hit", "miss", "bypass"].includes(word) ? word : "other";
}

/** The `reason=` of a `BYPASS` answer's `X-Cache` (`unknown` when it names none). */
export function bypassReason(res: Response): string {
  return /;\s*reason=([a-z-]+)/.exec(res.headers.get("x-cache") ?? "")?.[1] ?? "unknown";
}

/** Wraps a handler so every answer is counted by status and cache outcome. */
export function instrumentHandler<T = Request>(
  handler: (input: T) => Promise<Response>,
  metrics: ProxyMetrics,
): (input: T) => Promise<Response> {
  return async (input) => {
    let res: Response;
    try {
      res = await handler(input);
    } catch (err) {
      metrics.requests.inc({ status: "500", cache: "none" });
      throw err;
    }
    const cache = cacheOutcome(res);
    metrics.requests.inc({ status: String(res.status), cache });
    if (cache === "bypass") metrics.bypasses.inc({ reason: bypassReason(res) });
    const lookup = cache === "hit" ? "hit" : res.headers.get("x-cache-lookup");
    if (lookup !== null) {
      const known = (LOOKUP_OUTCOMES as readonly string[]).includes(lookup);
      metrics.lookups.inc({ outcome: known ? lookup : "other" });
    }
    return res;
  };
}

/** Wraps the upstream client so the time to imgproxy's response headers is observed. */
export function instrumentUpstream(upstream: Upstream, metrics: ProxyMetrics): Upstream {
  return async (req) => {
    const done = metrics.upstreamSeconds.startTimer();
    try {
      return await upstream(req);
    } finally {
      done();
    }
  };
}

/** Wraps a store so each operation is timed (`has` as `head`, `variants` as `list`). */
export function instrumentStore(store: Store, metrics: ProxyMetrics): Store {
  const timed = async <T>(operation: string, run: () => Promise<T>): Promise<T> => {
    const done = metrics.storeSeconds.startTimer({ operation });
    try {
      return await run();
    } finally {
      done();
    }
  };
  return {
    get description() {
      return store.description;
    },
    get storedMessage() {
      return store.storedMessage;
    },
    get logFields() {
      return store.logFields;
    },
    put: (key, body, options) => timed("put", () => store.put(key, body, options)),
    get: (key, signal) => timed("get", () => store.get(key, signal)),
    has: (key, signal) => timed("head", () => store.has(key, signal)),
    open: store.open
      ? ((key: string, signal?: AbortSignal, wholeUpTo?: number) =>
        timed(
          "get",
          () =>
            wholeUpTo === undefined
              ? store.open!(key, signal)
              : store.open!(key, signal, wholeUpTo),
        )) as OpenObject
      : undefined,
    variants: (baseKey, signal) => timed("list", () => store.variants(baseKey, signal)),
    delete: (key, signal) => timed("delete", () => store.delete(key, signal)),
    close: store.close ? () => store.close!() : undefined,
  };
}

/** `GET`/`HEAD /metrics`: the registry in the text exposition format. */
export function metricsRoute(registry: Registry): Route {
  return readOnly(() =>
    new Response(registry.render(), {
      headers: { "content-type": CONTENT_TYPE, "cache-control": "no-store" },
    })
  );
}
