/**
 * Configuration: the environment, read once, turned into a frozen, typed {@linkcode Config}.
 *
 * The entry the rest of the program imports. Every variable is declared once, with its default,
 * in {@linkcode VARIABLES} (config_variables.ts); config_parse.ts reads them (a blank value
 * counts as unset) and collects every problem, each naming the variable, what it expects and
 * what it got, so they are reported together; values that may hold secrets are never echoed.
 * The store's settings, the rules that follow imgproxy's own settings and the log settings each
 * have their module; {@linkcode loadConfig} assembles them.
 */
import { type Config, ConfigError, type EnvReader, type UploadConfig } from "./config_types.ts";
import { Parser } from "./config_parse.ts";
import { bucketName, keyFolder, storeConfig } from "./config_store.ts";
import { fallbackRule, negotiatedFormats } from "./config_imgproxy.ts";
import { parseLog } from "./config_log.ts";

export type {
  BindAddress,
  Config,
  EnvReader,
  LocalStoreConfig,
  S3StoreConfig,
  ServerLimits,
  UploadConfig,
} from "./config_types.ts";
export { bindHostPort, ConfigError } from "./config_types.ts";
export { type VariableName, VARIABLES } from "./config_variables.ts";
export { redactUrl } from "./config_parse.ts";
export { defaultRegion, isLocalOrIpHost } from "./config_store.ts";
export { maxAgeOf } from "./config_imgproxy.ts";
export { logSettings } from "./config_log.ts";

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
  const bucket = bucketName(p);
  const folder = keyFolder(p);
  const store = storeConfig(p, bucket);
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
      sendTimeoutMs: p.int("CLIENT_SEND_TIMEOUT_IN_SEC", 10, 1, 86400) * 1000,
      minSendBytesPerSec: p.int("CLIENT_MIN_SEND_RATE_BYTES", 1024, 0, 1_000_000_000),
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
