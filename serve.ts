/**
 * imgproxy-cache for `deno serve serve.ts` and Deno Deploy, with imgproxy running elsewhere
 * (`IMGPROXY_URL`).
 *
 * The app is built lazily from the environment, once, on the first request. Nothing here
 * starts a subprocess or writes to disk when `S3_BUCKET` is set (without it the local-directory
 * store is used, which needs a writable `CACHE_DIR`: fine for `deno serve` on a machine, not on
 * Deploy; as under `deno run`, a crashed run's leftovers there are removed in the background,
 * from the first request on: only those too old to be a write under way, so `--parallel`
 * workers sharing the directory are safe). The address comes from `deno serve --host/--port` (Deploy chooses it);
 * `IMGPROXY_BIND` is not used. There is no wait for imgproxy's `/health`: until it answers,
 * requests get the proxy's 502.
 *
 * On SIGINT or SIGTERM (Deploy sends SIGINT to an idle instance, then SIGKILL 5 s later) the
 * answers in flight are given time to finish, the background work stops (the re-check of a
 * store that did not answer at start, the local store's walk) and the pending uploads are
 * flushed, all within `UPLOAD_DRAIN_TIMEOUT_IN_SEC` (set it below 5 on Deploy), before the
 * process exits 0.
 *
 * Not main.ts: under `deno serve`, `import.meta.main` is true as well, and `deno run` of a
 * module with `export default { fetch }` prints Deno's "did you mean deno serve" warning.
 */
import { type App, createApp, drainUploads, logStartup } from "./lib/app.ts";
import { ConfigError, denoEnv, loadConfig, logSettings } from "./lib/config.ts";
import { logUnhandledRejections, onShutdownSignal, RequestsInFlight } from "./lib/lifecycle.ts";
import { consoleLogger, createLogger, type Logger, servingSink } from "./lib/log.ts";
import { checkStoreAtStartup, newStoreCheckStats, type StoreRecheck } from "./lib/store_check.ts";
import { Deadline } from "./lib/timers.ts";

let app: Promise<App> | null = null;
/** The configured logger once the environment is read (LOG_FORMAT, LOG_LEVEL). */
let logger: Logger = consoleLogger;
const inFlight = new RequestsInFlight();

async function build(): Promise<App> {
  logger = createLogger(logSettings(denoEnv), servingSink());
  logUnhandledRejections(logger);
  let config = loadConfig(denoEnv);
  const storeChecks = newStoreCheckStats();
  let recheck: StoreRecheck | null = null;
  if (config.storeCheck) {
    // A store that cannot work is reported like bad configuration: every request gets the
    // 500 below and the log says what to fix. An unreachable one is checked again while
    // serving, until it answers or the process shuts down.
    const verdict = await checkStoreAtStartup(config, logger, { stats: storeChecks });
    if (verdict.kind === "stop") throw new ConfigError([verdict.message]);
    config = verdict.config;
    recheck = verdict.recheck;
  }
  const built = await createApp(config, logger, { storeChecks, cleanStore: true });
  logStartup(built, logger);
  logger.log("INFO", "Serving (deno serve)", { imgproxy: config.imgproxyUrl });
  listenForShutdown(built, recheck);
  return built;
}

function listenForShutdown(built: App, recheck: StoreRecheck | null): void {
  onShutdownSignal(logger, async () => {
    // One deadline for everything, as under `deno run`: answers in flight finish (an exit would
    // cut them, unlogged), then the upload queue gets whatever time is left. The runtime owns
    // the connections, so what is still in flight at the deadline can only be counted.
    const timeoutMs = built.config.upload.drainTimeoutMs;
    const deadline = new Deadline(timeoutMs);
    if (!await deadline.within(inFlight.idle())) {
      logger.log("WARN", "Responses still in flight at the deadline: they will be cut at exit", {
        requests: inFlight.count,
        timeoutSec: timeoutMs / 1000,
      });
    }
    // Background work stops before the exit, as under `deno run`: a store check under way is
    // aborted and logged rather than cut.
    await recheck?.stop();
    await built.stopStoreWalk();
    await drainUploads(built, logger, deadline.remainingMs);
    Deno.exit(0);
  });
}

function misconfigured(): Response {
  // The details are in the log; clients learn nothing about the configuration.
  return new Response("imgproxy-cache could not start: see its log\n", {
    status: 500,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}

export default {
  async fetch(req: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    inFlight.track(info.completed);
    if (app === null) {
      app = build();
      // Logged once; every request then gets a plain 500.
      app.catch((err) => {
        logger.log("ERROR", err instanceof ConfigError ? err.message : String(err));
      });
    }
    let built: App;
    try {
      built = await app;
    } catch {
      return misconfigured();
    }
    return built.handler(req, info);
  },
} satisfies Deno.ServeDefaultExport;
