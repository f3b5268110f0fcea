/**
 * The whole stack as the Docker image runs it: `sh entrypoint.sh` starting imgproxy (real or
 * the stand-in) and the proxy (bin/start, the real permission flags), with versitygw as S3 and
 * a local HTTP server for source images.
 */
import {
  ACCESS_KEY,
  baseEnv,
  chooseImgproxy,
  DelayRelay,
  freePort,
  Proc,
  processGone,
  reap,
  ROOT,
  SECRET_KEY,
  SourceServer,
  Versitygw,
  VIRTUAL_DOMAIN,
  waitFor,
} from "./harness.ts";

export interface StackOptions {
  /** Extra environment (IMGPROXY_KEY, CACHE_VARIANTS, ...). */
  env?: Record<string, string>;
  /** Put a relay that delays every S3 answer by this much in front of versitygw. */
  s3DelayMs?: number;
  /**
   * How the proxy addresses the bucket: "path" (default) or "virtual" (virtual-hosted, as
   * Tigris and AWS default to: requests go to `e2e-images.s3.localhost`). With "virtual" the
   * endpoint's own host, `s3.localhost`, has no hosts entry, and versitygw would file a
   * path-style request sent to the bucket's host under a doubled key, so an object found under
   * the expected key was written virtual-hosted.
   */
  addressing?: "path" | "virtual";
}

export const BUCKET = "e2e-images";

/** A running entrypoint.sh with its helpers. */
export class Stack {
  imgproxyPid: number | undefined;
  proxyPid: number | undefined;

  private constructor(
    readonly proc: Proc,
    readonly base: string,
    readonly proxyBind: string,
    readonly s3: Versitygw,
    readonly sources: SourceServer,
    readonly relay: DelayRelay | null,
  ) {}

  static async start(options: StackOptions = {}): Promise<Stack> {
    const imgproxy = await chooseImgproxy();
    const virtual = options.addressing === "virtual";
    const s3 = await Versitygw.start({ virtualHosted: virtual });
    const sources = new SourceServer();
    let relay: DelayRelay | null = null;
    let proc: Proc | null = null;
    try {
      await s3.createBucket(BUCKET);
      if (virtual) await s3.requireVirtualHost(BUCKET);
      relay = options.s3DelayMs ? new DelayRelay(s3.port, options.s3DelayMs) : null;
      const port = freePort();
      const proxyBind = `127.0.0.1:${port}`;
      proc = new Proc("entrypoint", "sh", [`${ROOT}/entrypoint.sh`], {
        env: {
          ...await baseEnv(),
          IMGPROXY_BIN: imgproxy.bin,
          INTERNAL_IMGPROXY_BIND: `127.0.0.1:${freePort()}`,
          IMGPROXY_BIND: proxyBind,
          IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES: "true",
          S3_BUCKET: BUCKET,
          S3_ENDPOINT: `http://${virtual ? VIRTUAL_DOMAIN : "127.0.0.1"}:${relay?.port ?? s3.port}`,
          S3_FORCE_PATH_STYLE: String(!virtual),
          AWS_ACCESS_KEY_ID: ACCESS_KEY,
          AWS_SECRET_ACCESS_KEY: SECRET_KEY,
          AWS_REGION: "us-east-1",
          HEALTH_CHECK_TIMEOUT_IN_SEC: "20",
          // A container has a HOME; runs without one are e2e/permissions_test.ts's subject.
          HOME: s3.dir,
          ...options.env,
        },
      });
      const stack = new Stack(proc, `http://${proxyBind}`, proxyBind, s3, sources, relay);
      const ip = await proc.waitForLine(/started imgproxy pid=(\d+)/);
      stack.imgproxyPid = Number(ip[1]);
      const pp = await proc.waitForLine(/started imgproxy-cache pid=(\d+)/);
      stack.proxyPid = Number(pp[1]);
      await proc.waitForLine(/INFO Listening address=/, 30_000);
      return stack;
    } catch (err) {
      await proc?.stop(2000);
      await relay?.close();
      await sources.close();
      await s3.close();
      throw err;
    }
  }

  /** A source URL for a fixture. */
  source(name: string): string {
    return `${this.sources.base}/${name}`;
  }

  /** Waits until both children are gone (absent or zombies awaiting a reaper). */
  async childrenGone(timeoutMs = 5000): Promise<void> {
    for (const [name, pid] of [["imgproxy", this.imgproxyPid], ["proxy", this.proxyPid]] as const) {
      await waitFor(
        `${name} (pid ${pid}) to be gone`,
        async () => (await processGone(pid!)) || undefined,
        timeoutMs,
      );
    }
  }

  /** Stops everything; safe to call after the stack already exited. */
  async close(): Promise<void> {
    await this.proc.stop(30_000).catch(() => {});
    await reap(this.imgproxyPid);
    await reap(this.proxyPid);
    await this.relay?.close();
    await this.sources.close();
    await this.s3.close();
  }
}
