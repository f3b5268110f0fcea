/**
 * The operations routes on a plain `Deno.serve` listener, for tests that exercise the routes
 * themselves (main.ts serves the same table, `opsRoutes` in lib/app.ts, through lib/server.ts).
 */
import { metricsRoute } from "../../lib/metrics.ts";
import { opsHandler, type Routes } from "../../lib/ops.ts";
import type { Registry } from "../../lib/prometheus.ts";

/** Where the listener binds. */
export interface OpsServeOptions {
  hostname: string;
  port: number;
  signal?: AbortSignal;
  onListen?: (addr: Deno.NetAddr) => void;
}

/** Serves `routes` on their own listener. */
export function serveOps(options: OpsServeOptions, routes: Routes): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({
    hostname: options.hostname,
    port: options.port,
    signal: options.signal,
    onListen: options.onListen ?? (() => {}),
  }, opsHandler(routes));
}

/** Serves the registry at `/metrics` and `routes` on their own listener. */
export function serveMetrics(
  options: OpsServeOptions,
  registry: Registry,
  routes: Routes = {},
): Deno.HttpServer<Deno.NetAddr> {
  return serveOps(options, { "/metrics": metricsRoute(registry), ...routes });
}
