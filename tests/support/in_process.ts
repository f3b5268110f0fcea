/**
 * The proxy in-process (createApp, as main.ts builds it) on a loopback port, in front of a fake
 * imgproxy, for tests that need the whole request path but not a subprocess.
 */
import { type App, type AppOverrides, createApp } from "../../lib/app.ts";
import { loadConfig } from "../../lib/config.ts";
import { MemoryLogger } from "../../lib/log.ts";
import { type FakeImgproxy, startFakeImgproxy } from "./fake_imgproxy.ts";

/** A running in-process proxy. */
export interface InProcess {
  fake: FakeImgproxy;
  logger: MemoryLogger;
  app: App;
  port: number;
  /** Stops serving, drains the uploads (1 s at most) and closes the fake imgproxy. */
  close(): Promise<void>;
}

/**
 * Serves the proxy configured by `env` (IMGPROXY_URL is the fake's unless `env` sets it) with
 * `overrides`; `fake` defaults to a new fake imgproxy.
 */
export async function serveInProcess(
  env: Record<string, string>,
  overrides: AppOverrides = {},
  fake: FakeImgproxy = startFakeImgproxy(),
): Promise<InProcess> {
  const logger = new MemoryLogger();
  const all: Record<string, string> = { IMGPROXY_URL: fake.url, ...env };
  const app = await createApp(loadConfig((n) => all[n]), logger, overrides);
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  return {
    fake,
    logger,
    app,
    port: server.addr.port,
    async close() {
      await server.shutdown();
      await app.uploader.drain(1000);
      await fake.close();
    },
  };
}
