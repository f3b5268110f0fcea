/**
 * The store check at start-up (`STORE_CHECK`), before the proxy listens: a store that cannot
 * work as configured (missing bucket, bad credentials, a region it rejects, a directory that
 * cannot be written) stops the program with one message naming the variable(s) to fix, instead
 * of serving while every upload fails. A store that is merely unreachable does not stop the
 * start: the proxy serves, and a {@linkcode StoreRecheck} keeps checking in the background.
 */
import type { Config, S3StoreConfig } from "./config.ts";
import type { Logger } from "./log.ts";
import { checkLocalDir } from "./store/local_check.ts";
import type { S3CheckResult } from "./store/s3_check.ts";
import { errorMessage } from "./error_message.ts";
import { after } from "./timers.ts";

/** Each request of the probe gets this long. */
export const CHECK_TIMEOUT_MS = 10_000;

/** How the checks went, for metrics. */
export interface StoreCheckStats {
  ok: number;
  unreachable: number;
  misconfigured: number;
}

/** What to do after the start-up check. */
export type StartupVerdict =
  /** Exit 2 with this message. */
  | { kind: "stop"; message: string }
  /** Serve with this configuration (the store's region may be the one the store named). */
  | { kind: "serve"; config: Readonly<Config>; recheck: StoreRecheck | null };

/** Options of the start-up check (tests shorten the waits). */
export interface StartupCheckOptions {
  timeoutMs?: number;
  /** First wait before checking an unreachable store again; doubles up to `maxIntervalMs`. */
  intervalMs?: number;
  maxIntervalMs?: number;
  stats?: StoreCheckStats;
  /** The S3 probe (default: {@linkcode checkS3Store}); tests script its answers. */
  probe?: S3Probe;
}

/** Checks a bucket configuration once. */
export type S3Probe = (
  config: Readonly<Config>,
  timeoutMs: number,
  signal?: AbortSignal,
) => Promise<S3CheckResult>;

/** Creates zeroed check counters. */
export function newStoreCheckStats(): StoreCheckStats {
  return { ok: 0, unreachable: 0, misconfigured: 0 };
}

const checkS3: S3Probe = async (config, timeoutMs, signal) => {
  // Loaded only for a bucket, like the store itself (the AWS SDK is big).
  const { checkS3Store } = await import("./store/s3_check.ts");
  return checkS3Store(config.store as S3StoreConfig, {
    folder: config.folder,
    timeoutMs,
    signal,
  });
};

/** Checks the configured store once, before listening; logs what it found. */
export async function checkStoreAtStartup(
  config: Readonly<Config>,
  logger: Logger,
  options: StartupCheckOptions = {},
): Promise<StartupVerdict> {
  const stats = options.stats ?? newStoreCheckStats();
  const timeoutMs = options.timeoutMs ?? CHECK_TIMEOUT_MS;
  if (config.store.kind === "local") {
    const local = await checkLocalDir(config.store.dir, config.folder);
    if (local.kind === "misconfigured") {
      stats.misconfigured++;
      return { kind: "stop", message: local.message };
    }
    if (local.kind === "degraded") {
      stats.unreachable++;
      logger.log("WARN", "The cache directory is full: images are served but not stored", {
        reason: local.reason,
      });
    } else stats.ok++;
    return { kind: "serve", config, recheck: null };
  }
  const result = await (options.probe ?? checkS3)(config, timeoutMs);
  if (result.kind === "misconfigured") {
    stats.misconfigured++;
    return { kind: "stop", message: result.message };
  }
  if (result.kind === "unreachable") {
    stats.unreachable++;
    logger.log("WARN", "The store does not answer: serving without storing until it does", {
      endpoint: config.store.endpoint,
      bucket: config.store.bucket,
      reason: result.reason,
    });
    const recheck = new StoreRecheck(config, logger, { ...options, timeoutMs, stats });
    recheck.start();
    return { kind: "serve", config, recheck };
  }
  stats.ok++;
  for (const note of result.notes) logger.log("WARN", note);
  return { kind: "serve", config: { ...config, store: result.config }, recheck: null };
}

/**
 * Checks an unreachable store again in the background, one check at a time, waiting 1 s, 2 s,
 * 4 s... up to a minute in between, until it answers; each outcome is logged. A store that
 * turns out misconfigured is logged as an ERROR (the proxy is already serving) and no longer
 * checked. {@linkcode stop} ends it (shutdown).
 */
export class StoreRecheck {
  readonly #config: Readonly<Config>;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #maxIntervalMs: number;
  readonly #stats: StoreCheckStats;
  readonly #probe: S3Probe;
  readonly #stop = new AbortController();
  #intervalMs: number;
  #cancelWait: (() => void) | undefined;
  #running: Promise<void> | null = null;
  #attempts = 0;
  #finished = false;
  /** Settles when the checking has ended (store answered, misconfigured, or stopped). */
  readonly done: Promise<void>;
  #resolveDone!: () => void;

  constructor(config: Readonly<Config>, logger: Logger, options: StartupCheckOptions) {
    this.#config = config;
    this.#logger = logger;
    this.#timeoutMs = options.timeoutMs ?? CHECK_TIMEOUT_MS;
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#maxIntervalMs = options.maxIntervalMs ?? 60_000;
    this.#stats = options.stats ?? newStoreCheckStats();
    this.#probe = options.probe ?? checkS3;
    this.done = new Promise((r) => this.#resolveDone = r);
  }

  /** Schedules the next check. */
  start(): void {
    if (this.#stop.signal.aborted) return;
    // Ref'd: `done` is awaited (a warm run, tests), and shutdown stops it (stop()).
    this.#cancelWait = after(this.#intervalMs, () => {
      this.#cancelWait = undefined;
      this.#running = this.#check();
    }, { ref: true });
    this.#intervalMs = Math.min(this.#intervalMs * 2, this.#maxIntervalMs);
  }

  async #check(): Promise<void> {
    this.#attempts++;
    let result: S3CheckResult;
    try {
      result = await this.#probe(this.#config, this.#timeoutMs, this.#stop.signal);
    } catch (err) {
      result = { kind: "unreachable", reason: errorMessage(err) };
    }
    if (this.#stop.signal.aborted) return this.#finish();
    const store = this.#config.store as S3StoreConfig;
    if (result.kind === "unreachable") {
      this.#stats.unreachable++;
      this.#logger.log("WARN", "The store still does not answer", {
        endpoint: store.endpoint,
        attempts: this.#attempts,
        nextInSec: this.#intervalMs / 1000,
        reason: result.reason,
      });
      this.#running = null;
      return this.start();
    }
    if (result.kind === "misconfigured") {
      this.#stats.misconfigured++;
      this.#logger.log("ERROR", `The store answers, but nothing can be stored: ${result.message}`);
    } else {
      this.#stats.ok++;
      // The running store signs for the configured region until the store's first refusal,
      // which names the right one (that request is retried with it).
      if (result.config.region !== store.region) {
        for (const note of result.notes) this.#logger.log("WARN", note);
      }
      this.#logger.log("INFO", "The store answers now: storing resumes", {
        endpoint: store.endpoint,
        bucket: store.bucket,
        attempts: this.#attempts,
      });
    }
    this.#finish();
  }

  #finish(): void {
    this.#finished = true;
    this.#running = null;
    this.#resolveDone();
  }

  /**
   * Stops checking; waits for a check under way to end (it is aborted). Logs that the store
   * never answered when it had not.
   */
  async stop(): Promise<void> {
    const checking = !this.#finished && !this.#stop.signal.aborted;
    this.#stop.abort();
    this.#cancelWait?.();
    this.#cancelWait = undefined;
    await this.#running;
    this.#finished = true;
    this.#resolveDone();
    if (checking) {
      this.#logger.log("INFO", "Stopped checking the store: it has not answered since start-up", {
        endpoint: (this.#config.store as S3StoreConfig).endpoint,
        attempts: this.#attempts,
      });
    }
  }
}
