/**
 * Cache warm-up: reads a list of paths (or image URLs) and gets each one stored, in process,
 * through the same handler, uploader and store the proxy uses.
 *
 * - A key already in the store is reported "already present" without asking imgproxy, so a run
 *   can be interrupted and started again.
 * - The path that reaches imgproxy and the key are byte-for-byte the list's path: each request
 *   is handed over with its target in its context ({@linkcode contextFor}), because
 *   `new Request(url)` normalises the URL (`..`, `%2e%2e`, `\`).
 * - After a body has been read, the worker waits for the uploader's `onSettled` report for that
 *   key ({@linkcode UploadOutcomes}, passed to `createApp` as `onUploadSettled`), bounded by a
 *   deadline so a run never hangs.
 */
import { parseArgs } from "node:util";
import { createApp, createStore, drainUploads, waitForImgproxy } from "./app.ts";
import type { App } from "./app.ts";
import { type CacheRules, ruleFor, type RuleVerdict } from "./cache_rules.ts";
import { type Config, ConfigError, type EnvReader, loadConfig } from "./config.ts";
import { checkStoreAtStartup } from "./store_check.ts";
import { objectKey, pathOf } from "./key.ts";
import { formatLine, type Logger } from "./log.ts";
import { type ListEntry, parseList } from "./path_list.ts";
import { contextFor, type RequestContext } from "./context.ts";
import type { Store } from "./store/store.ts";
import type { UploadOutcome } from "./uploader.ts";

export { type ListEntry, parseList, targetOf } from "./path_list.ts";

// ---------------------------------------------------------------------------------------------
// Requests with a raw target

/** The origin warm-up requests are addressed to (never contacted: the handler runs in process). */
export const WARM_ORIGIN = "http://warm.invalid";

/**
 * The request (with its context) the handler is given for `target`. `new Request()` parses its
 * URL with the WHATWG rules, so `req.url` comes back normalised (`/a/../b` → `/b`, `%2e%2e` →
 * resolved, `\` → `/`); the context carries `target` exactly as listed, for the handler and the
 * key.
 */
export function warmRequest(target: string): RequestContext {
  let req: Request;
  try {
    req = new Request(WARM_ORIGIN + target);
  } catch {
    req = new Request(WARM_ORIGIN + "/");
  }
  return contextFor(req, target);
}

// ---------------------------------------------------------------------------------------------
// Upload outcomes

interface Watch {
  outcomes: UploadOutcome[];
  wake: (() => void) | null;
}

/**
 * Per-key upload outcomes, as the uploader reports them: pass {@linkcode record} to `createApp`
 * as `onUploadSettled`, {@linkcode watch} a key before its request, then wait with
 * {@linkcode next}. Outcomes for keys nobody watches are dropped.
 */
export class UploadOutcomes {
  readonly #watched = new Map<string, Watch>();

  /** The uploader's `onSettled` hook. */
  readonly record = (key: string, outcome: UploadOutcome): void => {
    const w = this.#watched.get(key);
    if (w === undefined) return;
    w.outcomes.push(outcome);
    w.wake?.();
  };

  /** Starts collecting outcomes for `key` (call before the request). */
  watch(key: string): void {
    if (!this.#watched.has(key)) this.#watched.set(key, { outcomes: [], wake: null });
  }

  /** Stops watching `key` (a pending {@linkcode next} resolves with null). */
  unwatch(key: string): void {
    const w = this.#watched.get(key);
    this.#watched.delete(key);
    w?.wake?.();
  }

  /** The next outcome reported for `key`, or null when none arrives within `ms`. */
  next(key: string, ms: number): Promise<UploadOutcome | null> {
    const w = this.#watched.get(key);
    if (w === undefined) return Promise.resolve(null);
    const ready = w.outcomes.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (w.wake === done) w.wake = null;
        resolve(w.outcomes.shift() ?? null);
      };
      const timer = setTimeout(done, Math.max(0, ms));
      w.wake = done;
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Warming

/** The result of one path. */
export type Outcome =
  | { kind: "stored" }
  | { kind: "present" }
  | { kind: "failed"; reason: string };

/** The parts of the app a warm run uses. */
export type WarmApp = Pick<App, "store" | "uploader" | "handle"> & {
  config: { readonly folder: string };
};

/** Settings of {@linkcode warmOne} / {@linkcode warmAll}. */
export interface WarmSettings {
  /** How long to wait for the upload of one body to settle. */
  settleTimeoutMs: number;
  /** How often a wait for an upload also checks whether any upload is still in flight. */
  pollIntervalMs: number;
  /**
   * Called before the first request that needs imgproxy; false stops the run (a failure),
   * "stopped" means the run was interrupted while waiting (the path is not attempted).
   */
  ready?: () => Promise<boolean | "stopped">;
}

async function readAll(body: ReadableStream<Uint8Array> | null): Promise<number> {
  if (body === null) return 0;
  let n = 0;
  for await (const chunk of body) n += chunk.byteLength;
  return n;
}

const message = (err: unknown) => (err as Error)?.message ?? String(err);

/** Gets one path stored; never throws. */
export async function warmOne(
  app: WarmApp,
  outcomes: UploadOutcomes,
  target: string,
  settings: WarmSettings,
): Promise<Outcome | null> {
  const key = objectKey(pathOf(target), app.config.folder);
  try {
    if (await app.store.has(key)) return { kind: "present" };
  } catch (err) {
    return { kind: "failed", reason: `store check failed: ${message(err)}` };
  }
  const ready = settings.ready === undefined ? true : await settings.ready();
  if (ready === "stopped") return null; // interrupted before it could be tried
  if (!ready) return { kind: "failed", reason: "imgproxy is not ready" };
  outcomes.watch(key);
  try {
    const res = await app.handle(warmRequest(target));
    if (res.status !== 200) {
      await res.body?.cancel();
      return { kind: "failed", reason: `HTTP ${res.status}` };
    }
    const xCache = res.headers.get("x-cache") ?? "";
    if (/^HIT\b/i.test(xCache)) {
      await res.body?.cancel();
      return { kind: "present" };
    }
    if (/^BYPASS\b/i.test(xCache)) {
      await res.body?.cancel();
      const reason = /reason=([^;,\s]+)/.exec(xCache)?.[1] ?? "unknown";
      return { kind: "failed", reason: `not cacheable (${reason})` };
    }
    try {
      await readAll(res.body);
    } catch (err) {
      return { kind: "failed", reason: `body cut short: ${message(err)}` };
    }
    return await settle(app, outcomes, key, settings);
  } catch (err) {
    return { kind: "failed", reason: message(err) };
  } finally {
    outcomes.unwatch(key);
  }
}

/** Waits until the uploader reports how it ended with `key`, up to the settle deadline. */
async function settle(
  app: WarmApp,
  outcomes: UploadOutcomes,
  key: string,
  settings: WarmSettings,
): Promise<Outcome> {
  const deadline = Date.now() + settings.settleTimeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    const outcome = left > 0
      ? await outcomes.next(key, Math.min(left, settings.pollIntervalMs))
      : null;
    if (outcome !== null) {
      switch (outcome.kind) {
        case "stored":
          return { kind: "stored" };
        case "exists": // stored by someone else since the check (a conditional write said so)
          return { kind: "present" };
        case "failed":
          return { kind: "failed", reason: `upload failed: ${outcome.reason}` };
        case "skipped":
          // Another body for this key is being written: its outcome is reported next.
          if (outcome.reason === "in-progress") continue;
          if (outcome.reason === "recently-stored") return { kind: "present" };
          return { kind: "failed", reason: `upload skipped: ${outcome.reason}` };
      }
    }
    // Outcomes are reported synchronously, so with nothing in flight none is still to come
    // (the handler never started an upload for this key).
    const idle = app.uploader.pending === 0;
    if (idle || left <= 0) {
      if (await app.store.has(key).catch(() => false)) return { kind: "stored" };
      return {
        kind: "failed",
        reason: idle
          ? "not stored (no upload started)"
          : `upload did not settle within ${settings.settleTimeoutMs / 1000} s`,
      };
    }
  }
}

/** Counts of a run. */
export interface WarmCounts {
  /** Paths to process (unique targets plus unusable lines). */
  total: number;
  done: number;
  stored: number;
  present: number;
  failed: number;
  /** Lines naming a key already listed earlier (not processed again). */
  duplicates: number;
  /** Lines the cache rules leave out (never requested). */
  excluded: number;
  /** Failures by reason. */
  reasons: Map<string, number>;
  interrupted: boolean;
}

/** Counts for a run of `total` paths, nothing done yet. */
export function newCounts(total: number, duplicates = 0, excluded = 0): WarmCounts {
  return {
    total,
    done: 0,
    stored: 0,
    present: 0,
    failed: 0,
    duplicates,
    excluded,
    reasons: new Map(),
    interrupted: false,
  };
}

/** Records one outcome in the counts. */
export function count(counts: WarmCounts, outcome: Outcome): void {
  counts.done++;
  if (outcome.kind === "stored") counts.stored++;
  else if (outcome.kind === "present") counts.present++;
  else {
    counts.failed++;
    counts.reasons.set(outcome.reason, (counts.reasons.get(outcome.reason) ?? 0) + 1);
  }
}

/** Settings of a whole run. */
export interface WarmAllOptions extends WarmSettings {
  concurrency: number;
  /** Aborted: take no new paths; those in flight finish. */
  signal?: AbortSignal;
  /** Called after each path. */
  onResult?: (target: string, outcome: Outcome, counts: WarmCounts) => void;
}

/**
 * Unique targets of a list (by key), with the duplicate count, the unusable lines and the lines
 * the cache rules leave out (the proxy would neither look them up nor store them).
 */
export function plan(entries: ListEntry[], folder: string, rules?: CacheRules): {
  targets: string[];
  duplicates: number;
  invalid: { line: number; error: string; text: string }[];
  excluded: { line: number; target: string; why: NonNullable<RuleVerdict> }[];
} {
  const seen = new Set<string>();
  const targets: string[] = [];
  const invalid: { line: number; error: string; text: string }[] = [];
  const excluded: { line: number; target: string; why: NonNullable<RuleVerdict> }[] = [];
  let duplicates = 0;
  for (const e of entries) {
    if ("error" in e) {
      invalid.push(e);
      continue;
    }
    const why = rules === undefined ? null : ruleFor(rules, pathOf(e.target));
    if (why !== null) {
      excluded.push({ line: e.line, target: e.target, why });
      continue;
    }
    const key = objectKey(pathOf(e.target), folder);
    if (seen.has(key)) duplicates++;
    else {
      seen.add(key);
      targets.push(e.target);
    }
  }
  return { targets, duplicates, invalid, excluded };
}

/** Runs `targets` through {@linkcode warmOne} with at most `concurrency` at a time. */
export async function warmAll(
  app: WarmApp,
  outcomes: UploadOutcomes,
  targets: readonly string[],
  counts: WarmCounts,
  options: WarmAllOptions,
): Promise<WarmCounts> {
  let next = 0;
  const worker = async () => {
    while (next < targets.length) {
      if (options.signal?.aborted) {
        counts.interrupted = true;
        return;
      }
      const target = targets[next++]!;
      const outcome = await warmOne(app, outcomes, target, options);
      if (outcome === null) {
        counts.interrupted = true;
        return;
      }
      count(counts, outcome);
      options.onResult?.(target, outcome, counts);
    }
  };
  const n = Math.max(1, Math.min(options.concurrency, targets.length));
  await Promise.all(Array.from({ length: n }, worker));
  if (options.signal?.aborted && counts.done < counts.total) counts.interrupted = true;
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Output

/** `40 stored, 3 already present, 2 failed`. */
export function tally(c: WarmCounts): string {
  return `${c.stored} stored, ${c.present} already present, ${c.failed} failed`;
}

/** A one-line progress bar (without control characters). */
export function progressBar(c: WarmCounts, width = 30): string {
  const ratio = c.total === 0 ? 1 : c.done / c.total;
  const full = Math.round(ratio * width);
  const pct = String(Math.floor(ratio * 100)).padStart(3);
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${pct}% ${c.done}/${c.total} ` +
    `(${tally(c)})`;
}

/** The final lines: counts, then each failure reason with its count (most frequent first). */
export function formatSummary(c: WarmCounts, seconds: number): string {
  const head = c.interrupted
    ? `Warm-up interrupted after ${c.done} of ${c.total} paths`
    : `Warm-up finished: ${c.total} paths`;
  let out = `${head} in ${seconds.toFixed(1)} s: ${tally(c)}`;
  if (c.duplicates > 0) out += `; ${c.duplicates} duplicate lines skipped`;
  if (c.excluded > 0) out += `; ${c.excluded} lines skipped by CACHE_ONLY/CACHE_SKIP`;
  out += "\n";
  const reasons = [...c.reasons].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  for (const [reason, n] of reasons) out += `  failed ${n} × ${reason}\n`;
  if (c.interrupted) out += "Run the same command again to continue: stored paths are skipped.\n";
  return out;
}

/** Where a run writes. */
export interface WarmOutput {
  /** Progress and the summary. */
  stdout: (text: string) => void;
  /** Failures and warnings. */
  stderr: (text: string) => void;
  /** True on a terminal: a redrawn progress bar instead of summary lines. */
  isTerminal: boolean;
}

const CLEAR = "\r\x1b[2K";

/** Progress output: a bar on a terminal, periodic summary lines otherwise. */
export class Reporter {
  #shown = false;
  #lastDraw = 0;
  #lastLineDone = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly out: WarmOutput,
    readonly counts: WarmCounts,
    /** Non-terminal: a line every `every` paths … */
    readonly every: number,
    /** … or every `intervalMs`, whichever comes first. */
    readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.out.isTerminal) this.#draw(true);
    else if (this.intervalMs > 0) this.#timer = setInterval(() => this.#line(), this.intervalMs);
  }

  /** After each path. */
  update(): void {
    if (this.out.isTerminal) this.#draw(false);
    else if (this.counts.done - this.#lastLineDone >= this.every) this.#line();
  }

  /** Prints a message line without garbling the bar. */
  message(text: string): void {
    if (this.out.isTerminal && this.#shown) this.out.stdout(CLEAR);
    this.out.stderr(text + "\n");
    if (this.out.isTerminal && this.#shown) this.#draw(true);
  }

  /** Removes the bar (leaving its final state) and stops the timer. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.out.isTerminal && this.#shown) {
      this.#draw(true);
      this.out.stdout("\n");
      this.#shown = false;
    }
  }

  #draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.#lastDraw < 100 && this.counts.done < this.counts.total) return;
    this.#lastDraw = now;
    this.#shown = true;
    this.out.stdout(CLEAR + progressBar(this.counts));
  }

  #line(): void {
    if (this.counts.done === this.#lastLineDone && this.counts.done > 0) return;
    this.#lastLineDone = this.counts.done;
    const c = this.counts;
    this.out.stdout(`progress ${c.done}/${c.total}: ${tally(c)}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// The command

/** What the command needs from its surroundings (tests swap all of it). */
export interface WarmIO extends WarmOutput {
  env: EnvReader;
  /** Reads the list (`-`: standard input). */
  readInput(path: string): Promise<string>;
  /** Aborted on SIGINT: take no new paths, finish, drain, summarise, exit 130. */
  interrupt?: AbortSignal;
}

export const USAGE = `Usage: deno task warm [options] <file | ->

Gets every path of <file> stored (one path or image URL a line; blank lines and
# comments are skipped), reading the same environment as the proxy. Paths
CACHE_ONLY or CACHE_SKIP leave out are skipped (listed, not failures).

Options:
  -c, --concurrency N     paths in flight at once (default 4)
      --every N           without a terminal: a progress line every N paths (default 100)
      --interval S        ... or every S seconds (default 10)
      --settle-timeout S  how long to wait for one upload to settle (default 120)
  -v, --verbose           also print the proxy's INFO log lines
  -h, --help              this text

Exit status: 0 all stored or present, 1 some failed, 2 bad usage or configuration,
130 interrupted (run again to continue).
`;

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new TypeError(`${name}: expected a whole number ≥ 1, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Parsed command line. */
export interface WarmArgs {
  file: string;
  concurrency: number;
  every: number;
  intervalMs: number;
  settleTimeoutMs: number;
  verbose: boolean;
  help: boolean;
}

/** Parses the command line; throws TypeError with a message for the user. */
export function parseWarmArgs(args: string[]): WarmArgs {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      concurrency: { type: "string", short: "c" },
      every: { type: "string" },
      interval: { type: "string" },
      "settle-timeout": { type: "string" },
      verbose: { type: "boolean", short: "v" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    return {
      file: "",
      concurrency: 4,
      every: 100,
      intervalMs: 10_000,
      settleTimeoutMs: 120_000,
      verbose: false,
      help: true,
    };
  }
  if (positionals.length !== 1) throw new TypeError("expected exactly one list file (or -)");
  return {
    file: positionals[0]!,
    concurrency: positiveInt("--concurrency", values.concurrency, 4),
    every: positiveInt("--every", values.every, 100),
    intervalMs: positiveInt("--interval", values.interval, 10) * 1000,
    settleTimeoutMs: positiveInt("--settle-timeout", values["settle-timeout"], 120) * 1000,
    verbose: values.verbose ?? false,
    help: false,
  };
}

/** Runs `deno task warm`; returns the exit status. */
export async function runWarm(args: string[], io: WarmIO): Promise<number> {
  let opts: WarmArgs;
  try {
    opts = parseWarmArgs(args);
  } catch (err) {
    io.stderr(`warm: ${message(err)}\n\n${USAGE}`);
    return 2;
  }
  if (opts.help) {
    io.stdout(USAGE);
    return 0;
  }
  let text: string;
  try {
    text = await io.readInput(opts.file);
  } catch (err) {
    const hint =
      err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied
        ? ` (run with --allow-read=${opts.file})`
        : "";
    io.stderr(`warm: cannot read ${opts.file}: ${message(err)}${hint}\n`);
    return 2;
  }
  let config: Readonly<Config>;
  try {
    config = loadConfig(io.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(`warm: ${err.message}\n`);
    return 2;
  }
  if (config.storeCheck) {
    // As the proxy does: a store that cannot work stops the run before any request.
    const verdict = await checkStoreAtStartup(config, {
      log: (level, msg, fields) => io.stderr(`warm: ${formatLine(level, msg, fields)}\n`),
    });
    if (verdict.kind === "stop") {
      io.stderr(`warm: the store cannot work as configured: ${verdict.message}\n`);
      return 2;
    }
    // An unreachable store fails each upload, reported per path: no checking in the background.
    await verdict.recheck?.stop();
    config = verdict.config;
  }
  const started = performance.now();
  const { targets, duplicates, invalid, excluded } = plan(
    parseList(text),
    config.folder,
    config.cacheRules,
  );
  const counts = newCounts(targets.length + invalid.length, duplicates, excluded.length);
  const reporter = new Reporter(io, counts, opts.every, opts.intervalMs);
  const printer: Logger = {
    log(level, msg, fields) {
      if (level === "WARN" || level === "ERROR" || opts.verbose) {
        reporter.message(formatLine(level, msg, fields));
      }
    },
  };
  for (const bad of invalid) {
    count(counts, { kind: "failed", reason: bad.error });
    reporter.message(`failed line ${bad.line}: ${bad.error}: ${bad.text}`);
  }
  // Not failures: the proxy would not cache these paths either.
  for (const left of excluded) {
    reporter.message(`skipped line ${left.line}: ${left.why}: ${left.target}`);
  }

  // Lookups would be wasted (the run checks the store itself): always the write path. The run
  // reports per path itself: no access lines.
  const warmConfig = Object.freeze({ ...config, cacheMode: "write" as const, accessLog: false });
  let store: Store;
  try {
    store = await createStore(warmConfig);
  } catch (err) {
    io.stderr(`warm: cannot open the store: ${message(err)}\n`);
    return 1;
  }
  const outcomes = new UploadOutcomes();
  const app = await createApp(warmConfig, printer, { store, onUploadSettled: outcomes.record });

  // imgproxy is only needed once a path is missing: a run where everything is present does
  // not wait for it (or send it anything).
  const stop = new AbortController();
  const signal = io.interrupt === undefined
    ? stop.signal
    : AbortSignal.any([stop.signal, io.interrupt]);
  let ready: Promise<boolean | "stopped"> | null = null;
  let notReady = false;
  const whenReady = () => {
    // Ctrl-C stops the wait too: an interrupted run is not an imgproxy failure.
    ready ??= waitForImgproxy(
      config.imgproxyUrl,
      config.healthCheckTimeoutMs,
      printer,
      250,
      io.interrupt,
    ).then((ok) => {
      if (ok) return true;
      if (io.interrupt?.aborted) return "stopped";
      notReady = true;
      stop.abort();
      return false;
    });
    return ready;
  };

  reporter.start();
  try {
    await warmAll(app, outcomes, targets, counts, {
      concurrency: opts.concurrency,
      settleTimeoutMs: opts.settleTimeoutMs,
      pollIntervalMs: 50,
      ready: whenReady,
      signal,
      onResult: (target, outcome) => {
        if (outcome.kind === "failed") reporter.message(`failed ${target}: ${outcome.reason}`);
        reporter.update();
      },
    });
    await drainUploads(app, printer);
  } finally {
    reporter.stop();
  }
  io.stdout(formatSummary(counts, (performance.now() - started) / 1000));
  if (counts.interrupted || io.interrupt?.aborted) return 130;
  if (notReady) {
    io.stderr(`warm: imgproxy at ${config.imgproxyUrl} is not ready; stopped\n`);
    return 1;
  }
  return counts.failed > 0 ? 1 : 0;
}
