/**
 * Metrics of the defences against hostile clients and stores: connections the listeners
 * closed or refused, and hits the store had that were not served whole. Mirrored at scrape time
 * from the counters the listener ({@linkcode ServerStats}) and the lookup ({@linkcode HitStats})
 * keep, so the request path pays nothing for them.
 */
import type { HitStats } from "./lookup.ts";
import type { Registry } from "./prometheus.ts";
import type { ServerStats } from "./server.ts";

/** `imgproxy_cache_hits_not_served_total{reason}`: expired, length_mismatch, cut. */
export function registerHitMetrics(registry: Registry, stats: Readonly<HitStats>): void {
  registry.counter(
    "imgproxy_cache_hits_not_served_total",
    "Objects found in the store but not served whole, by reason: expired (exp: past, left to imgproxy), length_mismatch (not the length recorded at write: a miss), cut (the store stalled mid-body).",
    {
      labelNames: ["reason"],
      collect: (c) => {
        c.setTotal({ reason: "expired" }, stats.expired);
        c.setTotal({ reason: "length_mismatch" }, stats.mismatched);
        c.setTotal({ reason: "cut" }, stats.cut);
      },
    },
  );
}

/**
 * The listeners' connection metrics, labelled by listener (`proxy`, `metrics`):
 * `imgproxy_cache_connections_open`, `imgproxy_cache_connections_closed_total{reason}`
 * (header_timeout, idle_timeout, send_timeout, evicted), `imgproxy_cache_accept_errors_total` and
 * `imgproxy_cache_connections_without_request_total`.
 */
export function registerListenerMetrics(
  registry: Registry,
  listeners: Record<string, Readonly<ServerStats>>,
): void {
  const entries = Object.entries(listeners);
  registry.gauge("imgproxy_cache_connections_open", "Client connections open, by listener.", {
    labelNames: ["listener"],
    collect: (g) => {
      for (const [listener, s] of entries) g.set(s.open, { listener });
    },
  });
  registry.counter(
    "imgproxy_cache_connections_closed_total",
    "Client connections the proxy closed, by listener and reason: header_timeout (no complete request head in time), idle_timeout, send_timeout (an answer not taken within CLIENT_SEND_TIMEOUT_IN_SEC plus its length at CLIENT_MIN_SEND_RATE_BYTES), evicted (idle, to make room at MAX_CLIENT_CONNECTIONS).",
    {
      labelNames: ["listener", "reason"],
      collect: (c) => {
        for (const [listener, s] of entries) {
          c.setTotal({ listener, reason: "header_timeout" }, s.headerTimeouts);
          c.setTotal({ listener, reason: "idle_timeout" }, s.idleTimeouts);
          c.setTotal({ listener, reason: "send_timeout" }, s.sendTimeouts);
          c.setTotal({ listener, reason: "evicted" }, s.evicted);
        }
      },
    },
  );
  registry.counter(
    "imgproxy_cache_accept_errors_total",
    "Accept errors retried (descriptors or memory ran out), by listener.",
    {
      labelNames: ["listener"],
      collect: (c) => {
        for (const [listener, s] of entries) c.setTotal({ listener }, s.acceptErrors);
      },
    },
  );
  registry.counter(
    "imgproxy_cache_connections_without_request_total",
    "Client connections that ended before any request reached the proxy, by listener: the client sent none (a TCP health check, an unused pre-connection) or the runtime refused what it sent (a malformed or oversized request head, answered 400 by the runtime with no access line).",
    {
      labelNames: ["listener"],
      collect: (c) => {
        for (const [listener, s] of entries) c.setTotal({ listener }, s.withoutRequest);
      },
    },
  );
}
