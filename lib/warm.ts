/**
 * `deno task warm`: reads a list of paths (or image URLs) and gets each one stored, in process,
 * through the same handler, uploader and store the proxy uses (one path: lib/warm_one.ts; the
 * run: lib/warm_run.ts; its output: lib/warm_report.ts; the command line: lib/warm_args.ts).
 * This module wires them to the environment: configuration, the store check, the app, waiting
 * for imgproxy only when a path needs it, and the exit status.
 */
import { createApp, createStore, drainUploads, waitForImgproxy } from "./app.ts";
import type { EnvReader } from "./config.ts";
import { commandConfig } from "./command_io.ts";
import { errorMessage as message } from "./error_message.ts";
import { checkStoreAtStartup } from "./store_check.ts";
import { formatLine, type Logger } from "./log.ts";
import { parseList } from "./path_list.ts";
import type { Store } from "./store/store.ts";
import { UploadOutcomes } from "./upload_outcomes.ts";
import { parseWarmArgs, USAGE, type WarmArgs } from "./warm_args.ts";
import { formatSummary, Reporter, type WarmOutput } from "./warm_report.ts";
import { count, newCounts, plan, warmAll } from "./warm_run.ts";

/** What the command needs from its surroundings (tests swap all of it). */
export interface WarmIO extends WarmOutput {
  env: EnvReader;
  /** Reads the list (`-`: standard input). */
  readInput(path: string): Promise<string>;
  /** Aborted on SIGINT: take no new paths, finish, drain, summarise, exit 130. */
  interrupt?: AbortSignal;
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
  let config = commandConfig("warm", io);
  if (config === null) return 2;
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
  // Its INFO lines (printed with -v) keep the line per object stored.
  const app = await createApp(warmConfig, printer, {
    store,
    onUploadSettled: outcomes.record,
    storedLogLevel: "INFO",
  });

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
