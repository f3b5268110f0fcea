/**
 * The process metrics Prometheus users expect from any exporter (the names client libraries
 * use: `process_resident_memory_bytes`, `process_cpu_seconds_total`,
 * `process_start_time_seconds`), plus `imgproxy_cache_build_info`. All are read at scrape time
 * from Deno and `node:process`, which need no permission.
 */
import process from "node:process";
import denoJson from "../deno.json" with { type: "json" };
import type { Registry } from "./prometheus.ts";

/** The proxy's version, from deno.json. */
export const VERSION: string = denoJson.version;

/** Registers the process and build metrics in `registry`. */
export function registerProcessMetrics(registry: Registry): void {
  registry.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {
    collect: (g) => g.set(Deno.memoryUsage().rss),
  });
  registry.counter(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
    {
      collect: (c) => {
        const { user, system } = process.cpuUsage();
        c.setTotal({}, (user + system) / 1e6);
      },
    },
  );
  // The process began (about) when its clock's origin was set.
  const started = Math.round(performance.timeOrigin) / 1000;
  registry.gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
    { collect: (g) => g.set(started) },
  );
  const info = registry.gauge(
    "imgproxy_cache_build_info",
    "Always 1; the labels say which build runs: the proxy's version and Deno's.",
    { labelNames: ["version", "deno", "v8", "typescript"] },
  );
  info.set(1, {
    version: VERSION,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
  });
}
