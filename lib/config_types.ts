/**
 * The shape of the configuration: the typed {@linkcode Config} the environment becomes, the
 * error that lists what is wrong with it, and how a variable is read.
 */
import type { CacheRules } from "./cache_rules.ts";
import type { NegotiatedFormat } from "./negotiation.ts";
import type { LogSettings } from "./log.ts";

/** Where the proxy listens. */
export interface BindAddress {
  hostname: string;
  port: number;
}

/** Returns `host:port` for a bind or listening address (IPv6 in brackets). */
export function bindHostPort(bind: Readonly<BindAddress>): string {
  return `${bind.hostname.includes(":") ? `[${bind.hostname}]` : bind.hostname}:${bind.port}`;
}

/** An S3-compatible bucket. */
export interface S3StoreConfig {
  kind: "s3";
  bucket: string;
  endpoint: string;
  region: string;
  forcePathStyle: boolean;
  /** Send `If-None-Match: *` so an existing object is never overwritten. */
  conditionalWrite: boolean;
}

/** A local directory (the default when no bucket is configured). */
export interface LocalStoreConfig {
  kind: "local";
  dir: string;
  /** CACHE_DIR_MAX_BYTES: past it the least recently used objects are removed (null: unbounded). */
  maxBytes: number | null;
}

/** Limits and timings of the background uploader. */
export interface UploadConfig {
  concurrency: number;
  maxBytesInFlight: number;
  maxObjectBytes: number;
  retries: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  /** How long one write may take before it is abandoned (and retried). */
  attemptTimeoutMs: number;
  drainTimeoutMs: number;
  dedupKeys: number;
  dedupTtlMs: number;
}

/** Limits on client connections (both listeners). */
export interface ServerLimits {
  /** A connection must deliver a complete request head this soon after it opens. */
  headerTimeoutMs: number;
  /** A connection with no request in flight for this long is closed. */
  idleTimeoutMs: number;
  /** Connections open at once per listener. */
  maxConnections: number;
  /** Time every answer gets to be sent, whatever its length. */
  sendTimeoutMs: number;
  /** The slowest reading a declared length is given time for (0: every answer within the grace). */
  minSendBytesPerSec: number;
}

/** The whole configuration. */
export interface Config {
  bind: BindAddress;
  clients: ServerLimits;
  /** imgproxy's base URL without a trailing slash (may carry a path prefix). */
  imgproxyUrl: string;
  healthCheckTimeoutMs: number;
  upstreamTimeoutMs: number;
  store: S3StoreConfig | LocalStoreConfig;
  /** Key prefix without leading or trailing slashes ("" for none). */
  folder: string;
  /** `write`: always ask imgproxy; `read`: answer hits from the store; `redirect`: 302 to it. */
  cacheMode: "write" | "read" | "redirect";
  /** Where stored objects are public (redirect mode), without trailing slash. */
  publicBaseUrl: string | null;
  /** `Cache-Control` of redirect mode's 302 to a stored object. */
  redirectCacheControl: string;
  /** How long a store lookup may take before the request goes to imgproxy instead. */
  lookupTimeoutMs: number;
  /** The longest silence of the store while it streams a large hit's body. */
  storeBodyTimeoutMs: number;
  /** Store failures in a row that pause lookups (or uploads), and for how long (ms). */
  breaker: { failures: number; coolDownMs: number };
  /** Concurrent identical requests share one request to imgproxy. */
  coalesce: boolean;
  /** imgproxy's IMGPROXY_SECRET (read-mode hits demand the same Authorization); never logged. */
  imgproxySecret: string | null;
  /** Where Prometheus metrics are served (null: not served). */
  metricsBind: BindAddress | null;
  /** ADMIN_TOKEN: enables `POST /purge` on the metrics listener (null: no endpoint); never logged. */
  adminToken: string | null;
  /** `off`: answers that carry `Vary` are not stored; `accept`: stored per Accept variant. */
  cacheVariants: "off" | "accept";
  /**
   * The formats imgproxy negotiates from `Accept` (IMGPROXY_AUTO_* / IMGPROXY_ENFORCE_*), when
   * those settings are in the proxy's environment; null when none is (learnt from its answers).
   */
  negotiatedFormats: readonly NegotiatedFormat[] | null;
  /**
   * imgproxy's fallback image answers with this `max-age` (or less, with `expires:`); answers
   * with a `max-age` up to it are never stored.
   */
  fallbackMaxAge: number | null;
  /**
   * imgproxy's IMGPROXY_COOKIE_PASSTHROUGH: it sends the client's cookies to the source, so an
   * answer to a request with cookies may be one user's image and is not stored.
   */
  cookiePassthrough: boolean;
  /** CACHE_ONLY / CACHE_SKIP: which raw paths are looked up and stored at all. */
  cacheRules: CacheRules;
  /** Check the store before listening (exit 2 when it cannot work as configured). */
  storeCheck: boolean;
  upload: UploadConfig;
  /** `LOG_FORMAT` and `LOG_LEVEL`. */
  log: LogSettings;
  /** One line per request (`ACCESS_LOG`). */
  accessLog: boolean;
}

/** Thrown when the environment holds bad configuration; lists every problem. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Reads one variable; blank counts as unset. */
export type EnvReader = (name: string) => string | undefined;
