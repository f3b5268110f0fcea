/**
 * imgproxy-cache: a caching reverse proxy for imgproxy (the `deno run` entry point).
 *
 * Reads the environment once, waits for imgproxy, serves, and on SIGTERM/SIGINT stops
 * accepting, finishes the responses in flight and drains the upload queue before exiting 0.
 */
import { createApp, drainUploads, logStartup, opsRoutes, waitForImgproxy } from "./lib/app.ts";
import {
  bindHostPort,
  type Config,
  ConfigError,
  denoEnv,
  type EnvReader,
  loadConfig,
  logSettings,
} from "./lib/config.ts";
import { logUnhandledRejections, onShutdownSignal } from "./lib/lifecycle.ts";
import { createLogger, type Logger, servingSink } from "./lib/log.ts";
import { opsHandler } from "./lib/ops.ts";
import { listen, ListenError, type Server } from "./lib/server.ts";
import { registerListenerMetrics } from "./lib/defense_metrics.ts";
import { checkStoreAtStartup, newStoreCheckStats, type StoreRecheck } from "./lib/store_check.ts";
import { Deadline } from "./lib/timers.ts";

/** How long requests cut at the shutdown deadline get to end (and write their access line). */
const CUT_GRACE_MS = 1000;

/** Runs the proxy until a signal arrives; returns the exit code. */
export async function main(
  env: EnvReader = denoEnv,
  logger: Logger = createLogger(logSettings(env)),
): Promise<number> {
  let config: Readonly<Config>;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      logger.log("ERROR", err.message);
      return 2;
    }
    throw err;
  }
  logUnhandledRejections(logger);
  const storeChecks = newStoreCheckStats();
  let recheck: StoreRecheck | null = null;
  if (config.storeCheck) {
    const verdict = await checkStoreAtStartup(config, logger, { stats: storeChecks });
    if (verdict.kind === "stop") {
      logger.log("ERROR", `The store cannot work as configured: ${verdict.message}`);
      return 2;
    }
    config = verdict.config;
    recheck = verdict.recheck;
  }
  const app = await createApp(config, logger, { storeChecks, cleanStore: true });
  logStartup(app, logger);
  if (!await waitForImgproxy(config.imgproxyUrl, config.healthCheckTimeoutMs, logger)) {
    await recheck?.stop();
    await app.stopStoreWalk();
    return 1;
  }

  const stop = new AbortController();
  const removeSignalListeners = onShutdownSignal(logger, () => stop.abort());

  // Both listeners or neither: an address that cannot be listened on stops the program with
  // one line naming the variable, before anything is served.
  const servers: Server[] = [];
  try {
    servers.push(listen({
      variable: "IMGPROXY_BIND",
      ...config.bind,
      ...config.clients,
      logger: app.warnings,
    }, app.handler));
    logger.log("INFO", "Listening", {
      address: bindHostPort(servers[0]!.addr),
      imgproxy: config.imgproxyUrl,
    });
    if (config.metricsBind !== null) {
      servers.push(listen({
        variable: "METRICS_BIND",
        ...config.metricsBind,
        ...config.clients,
        logger,
      }, opsHandler(opsRoutes(app))));
      registerListenerMetrics(app.registry, {
        proxy: servers[0]!.stats,
        metrics: servers[1]!.stats,
      });
      logger.log("INFO", "Serving metrics and health", {
        address: bindHostPort(servers[1]!.addr),
        paths: "/metrics,/livez,/readyz",
      });
      if (config.adminToken !== null) {
        logger.log("INFO", "Purge endpoint enabled", {
          address: bindHostPort(servers[1]!.addr),
          path: "/purge",
        });
      }
    }
  } catch (err) {
    if (!(err instanceof ListenError)) throw err;
    logger.log("ERROR", err.message);
    await Promise.all(servers.map((s) => s.shutdown()));
    await recheck?.stop();
    await app.stopStoreWalk();
    removeSignalListeners();
    return 1;
  }
  const stopping = new Promise<void>((resolve) =>
    stop.signal.addEventListener("abort", () => resolve(), { once: true })
  );
  // A listener that fails while serving stops the program too, with a non-zero exit.
  let failure: ListenError | null = null;
  await Promise.race([
    stopping,
    ...servers.map((s) =>
      s.finished.catch((err) => {
        failure = err instanceof ListenError ? err : new ListenError("IMGPROXY_BIND", "?", err);
      })
    ),
  ]);
  if (failure !== null) logger.log("ERROR", (failure as ListenError).message);
  // One deadline for everything: responses in flight finish (shutdown waits for streaming
  // bodies, whose uploads would otherwise be lost) while queued uploads carry on, then the
  // upload queue gets whatever time is left.
  const deadline = new Deadline(config.upload.drainTimeoutMs);
  const finished = await deadline.within(Promise.all(servers.map((s) => s.shutdown())));
  if (!finished) {
    logger.log("WARN", "Responses still in flight at the deadline: cutting them", {
      timeoutSec: config.upload.drainTimeoutMs / 1000,
    });
    // Cut as if their clients had left, so each still gets its access line: the requests end
    // within a few turns of the event loop; the second is a bound, not a wait.
    for (const s of servers) s.cutInFlight();
    await new Deadline(CUT_GRACE_MS).within(Promise.all(servers.map((s) => s.shutdown())));
  }
  await recheck?.stop();
  await app.stopStoreWalk();
  await drainUploads(app, logger, deadline.remainingMs);
  removeSignalListeners();
  return failure === null ? 0 : 1;
}

if (import.meta.main) {
  // Even a failure nobody expected is one line in the configured format.
  const logger = createLogger(logSettings(denoEnv), servingSink());
  let code: number;
  try {
    code = await main(denoEnv, logger);
  } catch (err) {
    logger.log("ERROR", "Fatal error", { reason: String((err as Error)?.stack ?? err) });
    code = 1;
  }
  Deno.exit(code);
}
