/**
 * imgproxy-cache: a caching reverse proxy for imgproxy (the `deno run` entry point).
 *
 * Reads the environment once, waits for imgproxy, serves, and on SIGTERM/SIGINT stops
 * accepting, finishes the responses in flight and drains the upload queue before exiting 0.
 */
import { createApp, drainUploads, logStartup, waitForImgproxy } from "./lib/app.ts";
import { ConfigError, denoEnv, type EnvReader, loadConfig, logSettings } from "./lib/config.ts";
import { logUnhandledRejections, onShutdownSignal } from "./lib/lifecycle.ts";
import { createLogger, type Logger } from "./lib/log.ts";
import { serveMetrics } from "./lib/metrics.ts";

/** Runs the proxy until a signal arrives; returns the exit code. */
export async function main(
  env: EnvReader = denoEnv,
  logger: Logger = createLogger(logSettings(env)),
): Promise<number> {
  let config;
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
  const app = await createApp(config, logger);
  logStartup(app, logger);
  if (!await waitForImgproxy(config.imgproxyUrl, config.healthCheckTimeoutMs, logger)) return 1;

  const stop = new AbortController();
  const removeSignalListeners = onShutdownSignal(logger, () => stop.abort());

  const server = Deno.serve({
    hostname: config.bind.hostname,
    port: config.bind.port,
    onListen: ({ hostname, port }) => {
      logger.log("INFO", "Listening", {
        address: `${hostname}:${port}`,
        imgproxy: config.imgproxyUrl,
      });
    },
  }, app.handler);
  const metricsServer = config.metricsBind === null ? null : serveMetrics({
    hostname: config.metricsBind.hostname,
    port: config.metricsBind.port,
    onListen: ({ hostname, port }) => {
      logger.log("INFO", "Serving metrics", { address: `${hostname}:${port}`, path: "/metrics" });
    },
  }, app.registry);
  const stopping = new Promise<void>((resolve) =>
    stop.signal.addEventListener("abort", () => resolve(), { once: true })
  );
  await Promise.race([stopping, server.finished]);
  // One deadline for everything: responses in flight finish (server.shutdown() waits for
  // streaming bodies, whose uploads would otherwise be lost) while queued uploads carry on,
  // then the upload queue gets whatever time is left.
  const deadline = Date.now() + config.upload.drainTimeoutMs;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const finished = await Promise.race([
    Promise.all([server.shutdown(), metricsServer?.shutdown()]).then(() => true),
    new Promise<boolean>((r) => timer = setTimeout(() => r(false), config.upload.drainTimeoutMs)),
  ]);
  clearTimeout(timer);
  if (!finished) {
    logger.log("WARN", "Responses still in flight at the deadline: they will be cut at exit", {
      timeoutSec: config.upload.drainTimeoutMs / 1000,
    });
  }
  await drainUploads(app, logger, Math.max(0, deadline - Date.now()));
  removeSignalListeners();
  return 0;
}

if (import.meta.main) {
  // Even a failure nobody expected is one line in the configured format.
  const logger = createLogger(logSettings(denoEnv));
  let code: number;
  try {
    code = await main(denoEnv, logger);
  } catch (err) {
    logger.log("ERROR", "Fatal error", { reason: String((err as Error)?.stack ?? err) });
    code = 1;
  }
  Deno.exit(code);
}
