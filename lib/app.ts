/**
 * Wiring: configuration → store, uploader, upstream client and request handler. Shared by
 * `main.ts` (`deno run`) and `serve.ts` (`deno serve`, Deno Deploy).
 */
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { AggregatingLogger } from "./warnings.ts";
import { withAccessLog } from "./access_log.ts";
import { Breaker } from "./breaker.ts";
import { livez, readyz } from "./health.ts";
import type { Routes } from "./ops.ts";
import { coalesce, type CoalesceStats } from "./coalesce.ts";
import {
  createProxyMetrics,
  instrumentHandler,
  instrumentStore,
  instrumentUpstream,
  metricsRoute,
} from "./metrics.ts";
import { Registry } from "./prometheus.ts";
import { purgeEndpoint } from "./purge_endpoint.ts";
import { type HitStats, newHitStats, withLookup } from "./lookup.ts";
import type { AdmissionRules } from "./admission.ts";
import { BypassNotices } from "./bypass_notice.ts";
import { FormatNegotiation } from "./negotiation.ts";
import { type ContextHandler, type Handler, serveContexts } from "./context.ts";
import { createHandler } from "./proxy.ts";
import { BoundedLocalStore } from "./store/bounded_local.ts";
import { LocalStore } from "./store/local.ts";
import { logLeftovers, walkLocalStore } from "./store/local_walk.ts";
import { registerHitMetrics } from "./defense_metrics.ts";
import type { Store } from "./store/store.ts";
import { Uploader, type UploaderOptions } from "./uploader.ts";
import type { StoreCheckStats } from "./store_check.ts";
import { createUpstream, type Upstream } from "./upstream.ts";
import { errorMessage } from "./error_message.ts";
import { Deadline, sleep, timeLimit } from "./timers.ts";

/** The running parts of the proxy. */
export interface App {
  config: Readonly<Config>;
  store: Store;
  uploader: Uploader;
  /** The store breakers of lookups and uploads. */
  breakers: Breakers;
  /** The `Deno.serve` handler: computes each request's context once, then {@linkcode handle}. */
  handler: Handler;
  /** Handles a request whose context is already known (in-process requests: warm). */
  handle: ContextHandler;
  coalesceStats: CoalesceStats;
  /** The Prometheus registry (instruments are attached when METRICS_BIND is set). */
  registry: Registry;
  /** Paths the METRICS_BIND listener serves besides `/metrics` (`/purge` with ADMIN_TOKEN). */
  adminRoutes: Routes;
  /** The logger the parts write to: repeated warnings aggregated (flushed by drainUploads). */
  warnings: AggregatingLogger;
  /** Hits found but not served whole (expired, length mismatch, cut). */
  hitStats: HitStats;
  /** Stops the local store's start-up walk and waits for it (shutdown). */
  stopStoreWalk: () => Promise<void>;
}

/** The store breakers, by the calls they guard. */
export interface Breakers {
  lookup: Breaker;
  upload: Breaker;
}

/** Parts a caller may swap (tests, embedding). */
export interface AppOverrides {
  store?: Store;
  upstream?: Upstream;
  /** Told how each body's upload ended (the warm command waits on it). */
  onUploadSettled?: UploaderOptions["onSettled"];
  /** The store check's counters (exported as metrics). */
  storeChecks?: StoreCheckStats;
  /** The level of the line per object stored (default: INFO with the access log, else DEBUG). */
  storedLogLevel?: UploaderOptions["storedLogLevel"];
  /**
   * Remove a crashed run's leftovers from a local store's directory at start-up (the server
   * does; commands that run beside it need not).
   */
  cleanStore?: boolean;
}

/**
 * Creates the store a configuration names. The AWS SDK is loaded only for a bucket, so the
 * local store needs neither its start-up time nor its environment permissions.
 */
export async function createStore(config: Readonly<Config>, logger?: Logger): Promise<Store> {
  if (config.store.kind === "local") {
    const local = new LocalStore(config.store.dir);
    return config.store.maxBytes === null
      ? local
      : new BoundedLocalStore(local, config.store.maxBytes);
  }
  const { S3Store } = await import("./store/s3.ts");
  const endpoint = config.store.endpoint;
  // Once, if ever: PUTs went back to fetch, which reached the store where our own could not.
  const fellBack = (reason: string) =>
    logger?.log(
      "WARN",
      "S3 uploads go over fetch from now on: a connection of the store's own could not be opened, fetch's could",
      {
        endpoint,
        reason,
      },
    );
  return new S3Store(config.store, undefined, undefined, undefined, fellBack);
}

/** Builds the proxy from a configuration. */
export async function createApp(
  config: Readonly<Config>,
  logger: Logger,
  overrides: AppOverrides = {},
): Promise<App> {
  // Warnings that can repeat per request are aggregated; drainUploads() writes the last counts.
  const warnings = new AggregatingLogger(logger);
  logger = warnings;
  // Metrics cost a little on every request, so instruments are only put in when served.
  const registry = new Registry();
  const metrics = config.metricsBind === null ? null : createProxyMetrics(registry);
  let store = overrides.store ?? await createStore(config, logger);
  const bounded = store instanceof BoundedLocalStore ? store : null;
  // The wall clock, unlike every wait: it is compared with the files' modification times.
  const cleanBefore = overrides.cleanStore
    ? Date.now() - config.upload.attemptTimeoutMs
    : undefined;
  const stopStoreWalk = startStoreWalk(store, logger, cleanBefore);
  if (metrics) store = instrumentStore(store, metrics);
  let upstream = overrides.upstream ?? createUpstream(config.imgproxyUrl);
  if (metrics) upstream = instrumentUpstream(upstream, metrics);
  // Lookups and uploads fail differently (a read timeout is short, a write's long), so each has
  // its own breaker.
  const breakers: Breakers = {
    lookup: new Breaker({ name: "lookups", ...config.breaker }, logger),
    upload: new Breaker({ name: "uploads", ...config.breaker }, logger),
  };
  const uploader = new Uploader(store, {
    ...config.upload,
    conditionalWrite: config.store.kind === "s3" ? config.store.conditionalWrite : true,
    onSettled: overrides.onUploadSettled,
    breaker: breakers.upload,
    storedLogLevel: overrides.storedLogLevel ?? (config.accessLog ? "INFO" : "DEBUG"),
  }, logger);
  const rules: AdmissionRules = {
    cacheVariants: config.cacheVariants,
    fallbackMaxAge: config.fallbackMaxAge,
    cookiePassthrough: config.cookiePassthrough,
    maxObjectBytes: config.upload.maxObjectBytes,
  };
  const proxy = createHandler({
    upstream,
    uploader,
    logger,
    rules,
    notices: new BypassNotices(logger, rules),
    folder: config.folder,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    cacheRules: config.cacheRules,
  });
  const coalesceStats: CoalesceStats = { coalesced: 0 };
  const hitStats = newHitStats();
  let handle = config.coalesce ? coalesce(proxy, { stats: coalesceStats }) : proxy;
  if (config.cacheMode !== "write") {
    handle = withLookup(handle, {
      mode: config.cacheMode,
      store,
      uploader,
      logger,
      folder: config.folder,
      cacheVariants: config.cacheVariants,
      negotiation: new FormatNegotiation(config.negotiatedFormats),
      publicBaseUrl: config.publicBaseUrl ?? "",
      redirectCacheControl: config.redirectCacheControl,
      breaker: breakers.lookup,
      timeoutMs: config.lookupTimeoutMs,
      bodyTimeoutMs: config.storeBodyTimeoutMs,
      stats: hitStats,
      imgproxySecret: config.imgproxySecret,
      cacheRules: config.cacheRules,
    });
  }
  if (metrics) {
    metrics.attach({
      uploader,
      coalesceStats,
      storeChecks: overrides.storeChecks,
      breakers,
      cacheDir: bounded ?? undefined,
    });
    registerHitMetrics(registry, hitStats);
    handle = instrumentHandler(handle, metrics);
  }
  if (config.accessLog) handle = withAccessLog(handle, logger);
  const handler = serveContexts(handle);
  const adminRoutes: Routes = config.adminToken === null ? {} : {
    "/purge": purgeEndpoint({
      token: config.adminToken,
      target: {
        store,
        folder: config.folder,
        forget: (baseKey) => uploader.forgetVariants(baseKey),
      },
      logger,
    }),
  };
  return {
    config,
    store,
    uploader,
    breakers,
    handler,
    handle,
    coalesceStats,
    registry,
    adminRoutes,
    warnings,
    hitStats,
    stopStoreWalk,
  };
}

/** How long imgproxy's `/health` may take to answer a readiness check. */
const READY_IMGPROXY_TIMEOUT_MS = 1000;

/**
 * The endpoints of the operations listener (`METRICS_BIND`), by path: the one place where
 * they are listed.
 */
export function opsRoutes(app: App): Routes {
  const { config } = app;
  return {
    "/metrics": metricsRoute(app.registry),
    "/livez": livez,
    "/readyz": readyz({
      imgproxyUrl: config.imgproxyUrl,
      store: app.store,
      probeKey: config.folder === "" ? READY_PROBE_KEY : `${config.folder}/${READY_PROBE_KEY}`,
      imgproxyTimeoutMs: READY_IMGPROXY_TIMEOUT_MS,
      storeTimeoutMs: config.lookupTimeoutMs,
      storeSkipped: () =>
        app.breakers.lookup.isOpen()
          ? "lookups paused after repeated failures (breaker open)"
          : null,
    }),
    ...app.adminRoutes,
  };
}

/** The key readiness looks up: never written, so a usable store answers "not found". */
export const READY_PROBE_KEY = "imgproxy-cache-readiness-probe";

/** Logs how the proxy is set up (never secrets). */
export function logStartup(app: App, logger: Logger): void {
  const { config } = app;
  if (config.store.kind === "local") {
    logger.log("INFO", "S3_BUCKET is not set: storing processed images in a local directory", {
      dir: config.store.dir,
    });
    if (config.store.maxBytes === null) {
      logger.log(
        "INFO",
        "CACHE_DIR_MAX_BYTES is not set: the cache directory grows without bound",
        {
          dir: config.store.dir,
        },
      );
    } else {
      logger.log(
        "INFO",
        "Cache directory bounded: past CACHE_DIR_MAX_BYTES the least recently used objects are removed",
        {
          dir: config.store.dir,
          maxBytes: config.store.maxBytes,
        },
      );
    }
  }
  const folder = config.folder === "" ? undefined : config.folder;
  if (config.store.kind === "s3") {
    // Everything needed to see why a store answers as it does, on one line.
    logger.log("INFO", "Store", {
      bucket: config.store.bucket,
      endpoint: config.store.endpoint,
      region: config.store.region,
      addressing: config.store.forcePathStyle ? "path-style" : "virtual-hosted",
      folder,
    });
  } else {
    logger.log("INFO", "Store", { store: app.store.description, folder });
  }
}

/**
 * Polls imgproxy's `/health` until it answers 200. Returns false when `timeoutMs` passes first.
 * A timeout of 0 skips the wait.
 */
export async function waitForImgproxy(
  imgproxyUrl: string,
  timeoutMs: number,
  logger: Logger,
  intervalMs = 250,
  signal?: AbortSignal,
): Promise<boolean> {
  if (timeoutMs === 0) return true;
  logger.log("INFO", "Waiting for imgproxy to be ready...", { url: imgproxyUrl });
  // The monotonic clock: a wall-clock step must not cut the wait short or stretch it.
  const deadline = new Deadline(timeoutMs);
  let last = "no answer yet";
  while (deadline.remainingMs > 0) {
    if (signal?.aborted) return false;
    const ms = Math.max(1, Math.min(2000, deadline.remainingMs));
    // Ref'd: the start awaits this answer.
    const limit = timeLimit(ms, `no answer within ${ms} ms`, { ref: true, signal });
    try {
      const res = await fetch(`${imgproxyUrl}/health`, { signal: limit.signal });
      await res.body?.cancel();
      if (res.status === 200) {
        logger.log("INFO", "imgproxy is ready");
        return true;
      }
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = errorMessage(err);
    } finally {
      limit.clear();
    }
    // Ref'd: the start (or a warm run) awaits it, with nothing else to hold the process up.
    await sleep(Math.min(intervalMs, deadline.remainingMs), { ref: true, signal });
  }
  if (signal?.aborted) return false;
  logger.log("ERROR", "imgproxy did not become ready in time", {
    url: imgproxyUrl,
    timeoutSec: timeoutMs / 1000,
    last,
  });
  return false;
}

/**
 * Starts a local store's start-up walk in the background (nothing for a bucket): one pass over
 * the directory that accounts what a bounded store holds and removes a crashed run's leftovers
 * last modified before `cleanBefore` (this start less the longest a write may take), without
 * delaying the start. Returns the function that stops it and waits (shutdown).
 */
function startStoreWalk(
  store: Store,
  logger: Logger,
  cleanBefore: number | undefined,
): () => Promise<void> {
  if (store instanceof BoundedLocalStore) {
    store.start(logger, cleanBefore);
    return () => store.stopScan();
  }
  if (!(store instanceof LocalStore) || cleanBefore === undefined) return () => Promise.resolve();
  const stop = new AbortController();
  const done = walkLocalStore(store.dir, { cleanBefore, signal: stop.signal })
    .then((result) => logLeftovers(logger, store.dir, result.removed));
  return () => {
    stop.abort();
    return done;
  };
}

/** Drains the uploader, logging what could not be stored. */
export async function drainUploads(
  app: App,
  logger: Logger,
  timeoutMs = app.config.upload.drainTimeoutMs,
): Promise<void> {
  const pending = app.uploader.pending;
  if (pending > 0) {
    logger.log("INFO", "Draining uploads", { pending, timeoutSec: timeoutMs / 1000 });
  }
  const { lost } = await app.uploader.drain(timeoutMs);
  // The last interval's counts of repeated warnings, before the summary.
  app.warnings.flush();
  const s = app.uploader.stats;
  if (lost.length > 0) {
    logger.log("ERROR", "Shutdown: uploads not stored", {
      count: lost.length,
      keys: lost.join(","),
    });
  }
  logger.log("INFO", "Uploads drained", {
    stored: s.stored,
    alreadyPresent: s.alreadyPresent,
    failed: s.failed,
    lost: lost.length,
  });
  // Nothing is written any more: the store's own background work (eviction) stops too.
  await app.store.close?.();
}
