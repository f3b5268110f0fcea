/**
 * Configuration: the environment, read once, turned into a frozen, typed {@linkcode Config}.
 *
 * Every variable is declared once below with its default. Parsing collects every problem and
 * reports them together, each naming the variable, what it expects and what it got; a blank
 * value counts as unset. Values that may hold secrets are never echoed.
 */
import type { CacheRules } from "./cache_rules.ts";
import { normalizeFolder } from "./key.ts";
import { type NegotiatedFormat, PREFERENCE } from "./negotiation.ts";
import type { Level, LogFormat, LogSettings } from "./log.ts";

/** Where the proxy listens. */
export interface BindAddress {
  hostname: string;
  port: number;
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

/** Every variable the program itself reads, with its default (for docs and permissions). */
export const VARIABLES = {
  S3_BUCKET: "",
  S3_FOLDER: "",
  S3_ENDPOINT: "$AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL, else https://fly.storage.tigris.dev",
  S3_REGION: "$AWS_REGION, else auto for a Tigris, R2 or GCS endpoint, else us-east-1",
  S3_FORCE_PATH_STYLE: "true for an IP or localhost endpoint, else false",
  S3_CONDITIONAL_WRITE: "true",
  STORE_CHECK: "true",
  CACHE_DIR: "./data/cache",
  CACHE_DIR_MAX_BYTES: "",
  CACHE_VARIANTS: "accept",
  CACHE_MODE: "write",
  CACHE_ONLY: "",
  CACHE_SKIP: "",
  PUBLIC_BASE_URL: "",
  REDIRECT_CACHE_CONTROL: "public, max-age=60 (private, max-age=60 with IMGPROXY_SECRET)",
  STORE_LOOKUP_TIMEOUT_MS: "1000",
  STORE_BODY_TIMEOUT_IN_SEC: "10",
  STORE_BREAKER_FAILURES: "5",
  STORE_BREAKER_COOL_DOWN_IN_SEC: "10",
  COALESCE_REQUESTS: "true",
  METRICS_BIND: "",
  LOG_FORMAT: "$IMGPROXY_LOG_FORMAT, else text",
  LOG_LEVEL: "$IMGPROXY_LOG_LEVEL, else info",
  ACCESS_LOG: "true",
  ADMIN_TOKEN: "",
  IMGPROXY_BIND: ":8080",
  CLIENT_HEADER_TIMEOUT_IN_SEC: "10",
  CLIENT_IDLE_TIMEOUT_IN_SEC: "75",
  MAX_CLIENT_CONNECTIONS: "4096",
  IMGPROXY_URL: "http://127.0.0.1:8081",
  HEALTH_CHECK_TIMEOUT_IN_SEC: "30",
  UPSTREAM_TIMEOUT_IN_SEC: "30",
  UPLOAD_CONCURRENCY: "8",
  UPLOAD_MAX_BYTES_IN_FLIGHT: "134217728",
  UPLOAD_MAX_OBJECT_BYTES: "33554432",
  UPLOAD_RETRIES: "4",
  UPLOAD_RETRY_BASE_DELAY_MS: "200",
  UPLOAD_RETRY_MAX_DELAY_MS: "5000",
  UPLOAD_ATTEMPT_TIMEOUT_IN_SEC: "30",
  UPLOAD_DRAIN_TIMEOUT_IN_SEC: "8",
  UPLOAD_DEDUP_KEYS: "10000",
  UPLOAD_DEDUP_TTL_IN_SEC: "600",
  // Read from imgproxy's own settings (the fallback-image rule), never changed.
  IMGPROXY_TTL: "31536000",
  IMGPROXY_SECRET: "",
  IMGPROXY_COOKIE_PASSTHROUGH: "false",
  IMGPROXY_AUTO_WEBP: "false",
  IMGPROXY_AUTO_AVIF: "false",
  IMGPROXY_AUTO_JXL: "false",
  IMGPROXY_ENFORCE_WEBP: "false",
  IMGPROXY_ENFORCE_AVIF: "false",
  IMGPROXY_ENFORCE_JXL: "false",
  IMGPROXY_ENABLE_WEBP_DETECTION: "false",
  IMGPROXY_FALLBACK_IMAGE_DATA: "",
  IMGPROXY_FALLBACK_IMAGE_PATH: "",
  IMGPROXY_FALLBACK_IMAGE_URL: "",
  IMGPROXY_FALLBACK_IMAGE_HTTP_CODE: "200",
  IMGPROXY_FALLBACK_IMAGE_TTL: "",
  IMGPROXY_LOG_FORMAT: "",
  IMGPROXY_LOG_LEVEL: "",
  // Read only as defaults for the S3 settings above.
  AWS_ENDPOINT_URL_S3: "",
  AWS_ENDPOINT_URL: "",
  AWS_REGION: "",
} as const;

/** The names of the variables the program reads. */
export type VariableName = keyof typeof VARIABLES;

const DEFAULT_ENDPOINT = "https://fly.storage.tigris.dev";

/** Shows a URL for an error message without any user:password part. */
export function redactUrl(value: string): string {
  const start = value.indexOf("//");
  if (start === -1) return value;
  const slash = value.indexOf("/", start + 2);
  const authority = value.slice(start + 2, slash === -1 ? undefined : slash);
  const at = authority.lastIndexOf("@");
  if (at === -1) return value;
  return value.slice(0, start + 2) + "***" + value.slice(start + 2 + at);
}

class Parser {
  readonly problems: string[] = [];
  constructor(private readonly read: EnvReader) {}

  raw(name: VariableName): string | undefined {
    const v = this.read(name);
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  }

  string(name: VariableName, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  int(name: VariableName, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      this.problems.push(
        `${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`,
      );
      return fallback;
    }
    return Number(v);
  }

  bool(name: VariableName, fallback: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const lower = v.toLowerCase();
    if (["1", "t", "true", "yes", "on"].includes(lower)) return true;
    if (["0", "f", "false", "no", "off"].includes(lower)) return false;
    this.problems.push(`${name}: expected true or false, got ${JSON.stringify(v)}`);
    return fallback;
  }

  oneOf<T extends string>(name: VariableName, values: readonly T[], fallback: T): T {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if ((values as readonly string[]).includes(v)) return v as T;
    this.problems.push(`${name}: expected one of ${values.join(", ")}, got ${JSON.stringify(v)}`);
    return fallback;
  }

  /** An http(s) URL without credentials, query or fragment; returned without trailing "/". */
  url(name: VariableName, value: string): string {
    let u: URL;
    try {
      u = new URL(value);
    } catch {
      this.problems.push(
        `${name}: expected an http(s) URL such as http://127.0.0.1:8081, got ${
          JSON.stringify(redactUrl(value))
        }`,
      );
      return value;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      this.problems.push(`${name}: expected an http or https URL, got ${u.protocol} scheme`);
    } else if (u.username !== "" || u.password !== "") {
      this.problems.push(
        `${name}: credentials in the URL are not allowed` +
          (name.startsWith("S3_") ? "; use the AWS_* variables" : ""),
      );
    } else if (u.search !== "" || u.hash !== "") {
      // The query may hold a presigned signature: show only where the URL points.
      this.problems.push(
        `${name}: expected a URL without query or fragment, got ${u.origin}${u.pathname}?...`,
      );
    }
    return u.href.replace(/\/+$/, "");
  }

  /** A regular expression (JavaScript syntax, no flags); null when unset. */
  regex(name: VariableName): RegExp | null {
    const v = this.raw(name);
    if (v === undefined) return null;
    try {
      return new RegExp(v);
    } catch (err) {
      this.problems.push(
        `${name}: expected a regular expression, got ${JSON.stringify(v)} (${
          (err as Error).message
        })`,
      );
      return null;
    }
  }

  bind(name: VariableName, fallback: string): BindAddress {
    const v = this.raw(name) ?? fallback;
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(v);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port > 65535) {
      this.problems.push(
        `${name}: expected host:port, :port or [ipv6]:port with a port up to 65535, got ${
          JSON.stringify(v)
        }`,
      );
      return { hostname: "0.0.0.0", port: 8080 };
    }
    const hostname = m[1] ?? (m[2] === "" ? "0.0.0.0" : m[2]!);
    return { hostname, port };
  }
}

/**
 * The signing region when neither S3_REGION nor AWS_REGION is set: `auto` where the store
 * wants it (Tigris, Cloudflare R2, Google Cloud Storage's XML API), the region an AWS regional endpoint names
 * (`s3.eu-west-1.amazonaws.com`), elsewhere the AWS default `us-east-1` (AWS itself, MinIO,
 * versitygw and Ceph reject `auto`; the start-up check follows the region a store says it
 * expects).
 */
export function defaultRegion(endpoint: string): string {
  let host: string;
  try {
    host = new URL(endpoint).hostname.toLowerCase();
  } catch {
    return "us-east-1";
  }
  const under = (domain: string) => host === domain || host.endsWith(`.${domain}`);
  const aws = /(?:^|\.)s3[.-](?:dualstack\.)?([a-z]{2}(?:-gov)?-[a-z]+-\d+)\.amazonaws\.com$/
    .exec(host);
  if (aws) return aws[1]!;
  return under("tigris.dev") || under("storage.dev") || under("r2.cloudflarestorage.com") ||
      under("storage.googleapis.com")
    ? "auto"
    : "us-east-1";
}

/** True when a URL's host is an IP address or localhost (path-style addressing needed). */
export function isLocalOrIpHost(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return false;
  }
  return host === "localhost" || host.endsWith(".localhost") || /^\d+\.\d+\.\d+\.\d+$/.test(host) ||
    host.startsWith("[");
}

/** Parses `max-age=N` out of a Cache-Control value; null when absent. */
export function maxAgeOf(cacheControl: string | null): number | null {
  if (cacheControl === null) return null;
  const m = /(?:^|[,\s])max-age\s*=\s*"?(\d+)"?/i.exec(cacheControl);
  return m ? Number(m[1]) : null;
}

/**
 * Works out how to recognise imgproxy's fallback image (a placeholder that imgproxy answers
 * with status 200 by default when the source cannot be fetched).
 */
function fallbackRule(p: Parser): number | null {
  const configured = p.raw("IMGPROXY_FALLBACK_IMAGE_DATA") ??
    p.raw("IMGPROXY_FALLBACK_IMAGE_PATH") ??
    p.raw("IMGPROXY_FALLBACK_IMAGE_URL");
  if (configured === undefined) return null;
  const code = p.int("IMGPROXY_FALLBACK_IMAGE_HTTP_CODE", 200, 0, 599);
  if (code !== 200) return null; // never a 200, so never stored
  const ttl = p.raw("IMGPROXY_FALLBACK_IMAGE_TTL");
  if (ttl === undefined) {
    p.problems.push(
      "IMGPROXY_FALLBACK_IMAGE_HTTP_CODE: a fallback image is configured and answers 200, so it " +
        "cannot be told from a real image and would be stored under the real image's key; set " +
        "IMGPROXY_FALLBACK_IMAGE_HTTP_CODE to a non-200 code (e.g. 404) or set " +
        "IMGPROXY_FALLBACK_IMAGE_TTL to a value different from IMGPROXY_TTL",
    );
    return null;
  }
  // imgproxy applies the fallback TTL only when it is above 0.
  const fallbackTtl = p.int("IMGPROXY_FALLBACK_IMAGE_TTL", 0, 1);
  const ttlAll = p.int("IMGPROXY_TTL", 31536000, 0);
  if (fallbackTtl >= ttlAll) {
    // Answers with a max-age up to the fallback TTL are taken for placeholders: a TTL at or
    // above IMGPROXY_TTL would take every real image for one.
    p.problems.push(
      `IMGPROXY_FALLBACK_IMAGE_TTL: must be below IMGPROXY_TTL (${ttlAll}) so fallback images ` +
        `can be told from real ones, got ${fallbackTtl}`,
    );
  }
  return fallbackTtl;
}

/** imgproxy's log formats, as the proxy writes them: its key=value and colour formats as text. */
const IMGPROXY_FORMATS: Record<string, LogFormat> = {
  pretty: "text",
  structured: "text",
  json: "json",
  gcp: "json",
};

const LEVELS: Record<string, Level> = {
  debug: "DEBUG",
  info: "INFO",
  warn: "WARN",
  error: "ERROR",
};

/** One lower-case name out of `names`, or the fallback (with a problem) for anything else. */
function named<T>(p: Parser, name: VariableName, names: Record<string, T>, fallback: T): T {
  const v = p.raw(name);
  if (v === undefined) return fallback;
  const found = Object.hasOwn(names, v.toLowerCase()) ? names[v.toLowerCase()] : undefined;
  if (found !== undefined) return found;
  p.problems.push(
    `${name}: expected one of ${Object.keys(names).join(", ")}, got ${JSON.stringify(v)}`,
  );
  return fallback;
}

/**
 * `LOG_FORMAT` and `LOG_LEVEL`; unset, they follow imgproxy's `IMGPROXY_LOG_FORMAT` and
 * `IMGPROXY_LOG_LEVEL`, so both programs in one container write alike.
 */
function parseLog(p: Parser): LogSettings {
  const imgproxyFormat = named(p, "IMGPROXY_LOG_FORMAT", IMGPROXY_FORMATS, "text");
  const imgproxyLevel = named(p, "IMGPROXY_LOG_LEVEL", LEVELS, "INFO");
  return {
    format: named(p, "LOG_FORMAT", { text: "text", json: "json" } as const, imgproxyFormat),
    level: named(p, "LOG_LEVEL", LEVELS, imgproxyLevel),
  };
}

/**
 * The log settings alone, leniently (a bad value counts as unset): to write the configuration's
 * own problems in the format the operator asked for. {@linkcode loadConfig} reports bad values.
 */
export function logSettings(read: EnvReader): LogSettings {
  return parseLog(new Parser(read));
}

/**
 * The formats imgproxy's own settings make it negotiate, when the proxy sees them (one
 * environment in the Docker image): a format is on with `IMGPROXY_AUTO_<F>` or
 * `IMGPROXY_ENFORCE_<F>` (v3's `IMGPROXY_ENABLE_WEBP_DETECTION` is its older AUTO_WEBP).
 * Null when none of them is set: imgproxy may run elsewhere, its answers tell.
 */
function negotiatedFormats(p: Parser): NegotiatedFormat[] | null {
  const names = {
    webp: ["IMGPROXY_AUTO_WEBP", "IMGPROXY_ENFORCE_WEBP", "IMGPROXY_ENABLE_WEBP_DETECTION"],
    avif: ["IMGPROXY_AUTO_AVIF", "IMGPROXY_ENFORCE_AVIF"],
    jxl: ["IMGPROXY_AUTO_JXL", "IMGPROXY_ENFORCE_JXL"],
  } as const satisfies Record<NegotiatedFormat, readonly VariableName[]>;
  let seen = false;
  const formats: NegotiatedFormat[] = [];
  for (const format of PREFERENCE) {
    let on = false;
    for (const name of names[format]) {
      if (p.raw(name) === undefined) continue;
      seen = true;
      if (p.bool(name, false)) on = true;
    }
    if (on) formats.push(format);
  }
  return seen ? formats : null;
}

/**
 * The `Cache-Control` of a redirect to a stored object. Short by default: a purged or expired
 * object must not stay the target of cached redirects for long. With `IMGPROXY_SECRET` the
 * redirect answers an authorised request, so shared caches must not keep it for others.
 */
function redirectCacheControl(p: Parser): string {
  const value = p.raw("REDIRECT_CACHE_CONTROL");
  if (value === undefined) {
    return p.raw("IMGPROXY_SECRET") === undefined ? "public, max-age=60" : "private, max-age=60";
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) {
    p.problems.push(
      `REDIRECT_CACHE_CONTROL: expected a Cache-Control value such as "public, max-age=60", got one with control characters`,
    );
  }
  return value;
}

/** Builds the configuration from an environment reader; throws {@linkcode ConfigError}. */
export function loadConfig(read: EnvReader): Readonly<Config> {
  const p = new Parser(read);
  const bucket = p.raw("S3_BUCKET");
  // S3's naming rules, loosely (stores differ on dots, underscores and case): a name is part
  // of a host name and a path segment, so nothing that would change either.
  if (bucket !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(bucket)) {
    p.problems.push(
      `S3_BUCKET: expected a bucket name (letters, digits, ".", "-", "_"; at most 255 characters), got ${
        JSON.stringify(bucket)
      }`,
    );
  }
  const folder = normalizeFolder(p.string("S3_FOLDER", ""));
  if (/(^|\/)\.\.?(\/|$)/.test(folder) || folder.includes("//")) {
    p.problems.push(
      `S3_FOLDER: expected a prefix such as images/processed, got ${JSON.stringify(folder)}`,
    );
  }
  let store: S3StoreConfig | LocalStoreConfig;
  if (bucket !== undefined) {
    const endpoint = p.url(
      "S3_ENDPOINT",
      p.raw("S3_ENDPOINT") ?? p.raw("AWS_ENDPOINT_URL_S3") ?? p.raw("AWS_ENDPOINT_URL") ??
        DEFAULT_ENDPOINT,
    );
    store = {
      kind: "s3",
      bucket,
      endpoint,
      region: p.raw("S3_REGION") ?? p.raw("AWS_REGION") ?? defaultRegion(endpoint),
      forcePathStyle: p.bool("S3_FORCE_PATH_STYLE", isLocalOrIpHost(endpoint)),
      conditionalWrite: p.bool("S3_CONDITIONAL_WRITE", true),
    };
  } else {
    store = {
      kind: "local",
      dir: p.string("CACHE_DIR", "./data/cache"),
      maxBytes: p.raw("CACHE_DIR_MAX_BYTES") === undefined
        ? null
        : p.int("CACHE_DIR_MAX_BYTES", 0, 1),
    };
  }
  if (bucket !== undefined && p.raw("CACHE_DIR_MAX_BYTES") !== undefined) {
    p.problems.push(
      "CACHE_DIR_MAX_BYTES: bounds the local directory only, and S3_BUCKET is set " +
        "(expire bucket objects with its lifecycle rules)",
    );
  }
  const upload: UploadConfig = {
    concurrency: p.int("UPLOAD_CONCURRENCY", 8, 1, 1024),
    maxBytesInFlight: p.int("UPLOAD_MAX_BYTES_IN_FLIGHT", 134217728, 1),
    maxObjectBytes: p.int("UPLOAD_MAX_OBJECT_BYTES", 33554432, 1),
    retries: p.int("UPLOAD_RETRIES", 4, 0, 100),
    retryBaseDelayMs: p.int("UPLOAD_RETRY_BASE_DELAY_MS", 200, 1, 600_000),
    retryMaxDelayMs: p.int("UPLOAD_RETRY_MAX_DELAY_MS", 5000, 1, 3_600_000),
    attemptTimeoutMs: p.int("UPLOAD_ATTEMPT_TIMEOUT_IN_SEC", 30, 1, 3600) * 1000,
    drainTimeoutMs: p.int("UPLOAD_DRAIN_TIMEOUT_IN_SEC", 8, 0, 3600) * 1000,
    dedupKeys: p.int("UPLOAD_DEDUP_KEYS", 10000, 0, 10_000_000),
    dedupTtlMs: p.int("UPLOAD_DEDUP_TTL_IN_SEC", 600, 1, 31_536_000) * 1000,
  };
  if (upload.maxObjectBytes > upload.maxBytesInFlight) {
    p.problems.push(
      `UPLOAD_MAX_OBJECT_BYTES: must not exceed UPLOAD_MAX_BYTES_IN_FLIGHT (${upload.maxBytesInFlight}), got ${upload.maxObjectBytes}`,
    );
  }
  const cacheMode = p.oneOf("CACHE_MODE", ["write", "read", "redirect"] as const, "write");
  const publicBase = p.raw("PUBLIC_BASE_URL");
  if (cacheMode === "redirect" && publicBase === undefined) {
    p.problems.push(
      "PUBLIC_BASE_URL: CACHE_MODE=redirect needs the public or CDN URL of the stored objects, got nothing",
    );
  }
  const adminToken = p.raw("ADMIN_TOKEN") ?? null;
  if (adminToken !== null && adminToken.length < 16) {
    // The length only: the value is a secret.
    p.problems.push(
      `ADMIN_TOKEN: expected at least 16 characters (a random token), got ${adminToken.length}`,
    );
  }
  if (adminToken !== null && p.raw("METRICS_BIND") === undefined) {
    p.problems.push(
      "ADMIN_TOKEN: the purge endpoint is served on the METRICS_BIND listener, which is not set",
    );
  }
  const config: Config = {
    bind: p.bind("IMGPROXY_BIND", ":8080"),
    clients: {
      headerTimeoutMs: p.int("CLIENT_HEADER_TIMEOUT_IN_SEC", 10, 1, 3600) * 1000,
      idleTimeoutMs: p.int("CLIENT_IDLE_TIMEOUT_IN_SEC", 75, 1, 86400) * 1000,
      maxConnections: p.int("MAX_CLIENT_CONNECTIONS", 4096, 1, 1_000_000),
    },
    imgproxyUrl: p.url("IMGPROXY_URL", p.string("IMGPROXY_URL", "http://127.0.0.1:8081")),
    healthCheckTimeoutMs: p.int("HEALTH_CHECK_TIMEOUT_IN_SEC", 30, 0, 86400) * 1000,
    upstreamTimeoutMs: p.int("UPSTREAM_TIMEOUT_IN_SEC", 30, 1, 86400) * 1000,
    store,
    folder,
    cacheMode,
    publicBaseUrl: publicBase === undefined ? null : p.url("PUBLIC_BASE_URL", publicBase),
    redirectCacheControl: redirectCacheControl(p),
    lookupTimeoutMs: p.int("STORE_LOOKUP_TIMEOUT_MS", 1000, 1, 600_000),
    storeBodyTimeoutMs: p.int("STORE_BODY_TIMEOUT_IN_SEC", 10, 1, 3600) * 1000,
    breaker: {
      failures: p.int("STORE_BREAKER_FAILURES", 5, 0, 1_000_000),
      coolDownMs: p.int("STORE_BREAKER_COOL_DOWN_IN_SEC", 10, 1, 86400) * 1000,
    },
    coalesce: p.bool("COALESCE_REQUESTS", true),
    imgproxySecret: p.raw("IMGPROXY_SECRET") ?? null,
    metricsBind: p.raw("METRICS_BIND") === undefined ? null : p.bind("METRICS_BIND", ""),
    adminToken,
    cacheVariants: p.oneOf("CACHE_VARIANTS", ["off", "accept"] as const, "accept"),
    negotiatedFormats: negotiatedFormats(p),
    fallbackMaxAge: fallbackRule(p),
    cookiePassthrough: p.bool("IMGPROXY_COOKIE_PASSTHROUGH", false),
    cacheRules: { only: p.regex("CACHE_ONLY"), skip: p.regex("CACHE_SKIP") },
    storeCheck: p.bool("STORE_CHECK", true),
    upload,
    log: parseLog(p),
    accessLog: p.bool("ACCESS_LOG", true),
  };
  if (p.problems.length > 0) throw new ConfigError(p.problems);
  return Object.freeze(config);
}

/**
 * Reads from `Deno.env`. A variable the permissions deny throws (NotCapable) rather than
 * reading as unset: the computed flags allow every variable the program reads, so a denial is
 * a deployment mistake to report, not a default to take silently.
 */
export function denoEnv(name: string): string | undefined {
  return Deno.env.get(name);
}
