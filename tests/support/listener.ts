/** The proxy's listener as tests start it: loopback, a free port, generous limits. */
import { MemoryLogger } from "../../lib/log.ts";
import type { ServerOptions } from "../../lib/server.ts";

/** Listener options for a test: `overrides` name what the test is about. */
export function listenerOptions(overrides: Partial<ServerOptions> = {}): ServerOptions {
  return {
    variable: "IMGPROXY_BIND",
    hostname: "127.0.0.1",
    port: 0,
    headerTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    maxConnections: 64,
    sendTimeoutMs: 10_000,
    minSendBytesPerSec: 1024,
    logger: new MemoryLogger(),
    ...overrides,
  };
}
