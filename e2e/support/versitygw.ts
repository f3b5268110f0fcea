/**
 * versitygw for the end-to-end suite: a real S3 gateway over a temporary directory, path-style
 * and virtual-hosted, with its access log.
 */
import { S3Client } from "@aws-sdk/client-s3";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { freePort } from "../../tests/support/net_fs.ts";
import { baseEnv, findOnPath, Proc, waitFor } from "./child.ts";

/** Credentials of the test gateway. */
export const ACCESS_KEY = "e2e-access";
export const SECRET_KEY = "e2e-secret-key-000";

/**
 * The base domain of versitygw's virtual-hosted addressing (`--virtual-domain`): a bucket B is
 * addressed as B.s3.localhost. Names under `localhost` are loopback by definition (RFC 6761),
 * but glibc does not resolve them by itself, so each bucket used that way needs a hosts entry
 * (scripts/install-deps.sh adds it when run as root). `s3.localhost` itself is not needed.
 */
export const VIRTUAL_DOMAIN = "s3.localhost";

/** A running versitygw over a temporary directory, with its S3 access log. */
export class Versitygw {
  readonly endpoint: string;
  /** The endpoint for virtual-hosted addressing (only with `virtualHosted`). */
  readonly virtualEndpoint: string;
  readonly client: S3Client;
  private constructor(
    readonly proc: Proc,
    readonly port: number,
    readonly dir: string,
    readonly accessLog: string,
    tls: boolean,
  ) {
    this.endpoint = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
    this.virtualEndpoint = `http://${VIRTUAL_DOMAIN}:${port}`;
    this.client = s3Client(this.endpoint, SECRET_KEY);
  }

  /**
   * Starts versitygw on `port` (default: a free one); with `virtualHosted` it also serves
   * `<bucket>.${VIRTUAL_DOMAIN}` hosts (path-style requests to 127.0.0.1 keep working, for the
   * tests' own client); with `tls` (PEM files) it serves https only (the tests' own client does
   * not trust it: make buckets with {@linkcode makeBucketDir}).
   */
  static async start(
    options: { virtualHosted?: boolean; port?: number; tls?: { cert: string; key: string } } = {},
  ): Promise<Versitygw> {
    const bin = await findOnPath("versitygw") ??
      await findOnPath(`${Deno.env.get("HOME")}/go/bin/versitygw`);
    if (bin === null) {
      throw new Error("versitygw not found on PATH or in ~/go/bin: run scripts/install-deps.sh");
    }
    const port = options.port ?? freePort();
    const dir = await Deno.makeTempDir({ prefix: "e2e-vgw-" });
    await Deno.mkdir(`${dir}/root`);
    const accessLog = `${dir}/access.log`;
    const proc = new Proc("versitygw", bin, [
      "--port",
      `127.0.0.1:${port}`,
      "--access-log",
      accessLog,
      "--quiet",
      ...(options.virtualHosted ? ["--virtual-domain", VIRTUAL_DOMAIN] : []),
      ...(options.tls ? ["--cert", options.tls.cert, "--key", options.tls.key] : []),
      "posix",
      `${dir}/root`,
    ], {
      env: { ...await baseEnv(), ROOT_ACCESS_KEY: ACCESS_KEY, ROOT_SECRET_KEY: SECRET_KEY },
    });
    const gw = new Versitygw(proc, port, dir, accessLog, options.tls !== undefined);
    try {
      await waitFor("versitygw to accept connections", async () => {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        c.close();
        return true;
      }, 10_000);
    } catch (err) {
      await gw.close();
      throw err;
    }
    return gw;
  }

  /** Makes a bucket as the posix backend keeps one: a directory under its root. */
  async makeBucketDir(name: string): Promise<void> {
    await Deno.mkdir(`${this.dir}/root/${name}`);
  }

  async createBucket(name: string): Promise<void> {
    await this.client.send(new CreateBucketCommand({ Bucket: name }));
  }

  /** Fails unless `<bucket>.${VIRTUAL_DOMAIN}` resolves to this gateway (a hosts entry). */
  async requireVirtualHost(bucket: string): Promise<void> {
    const hostname = `${bucket}.${VIRTUAL_DOMAIN}`;
    try {
      (await Deno.connect({ hostname, port: this.port })).close();
    } catch (err) {
      throw new Error(
        `${hostname} does not resolve to 127.0.0.1 (${err}); virtual-hosted S3 tests need ` +
          `"127.0.0.1 ${hostname}" in /etc/hosts (scripts/install-deps.sh adds it as root)`,
      );
    }
  }

  /** Parsed S3 access-log lines: operation, key, status. */
  async log(): Promise<{ op: string; bucket: string; key: string; status: number }[]> {
    let text = "";
    try {
      text = await Deno.readTextFile(this.accessLog);
    } catch {
      return [];
    }
    const out = [];
    for (const line of text.split("\n")) {
      // owner bucket [time +zone] ip requester id operation key uri status ...
      const m = /^\S+ (\S+) \[[^\]]*\] \S+ \S+ \S+ (s3_\w+) (\S+) \S+ (\d{3}) /.exec(line);
      if (m) out.push({ bucket: m[1]!, op: m[2]!, key: m[3]!, status: Number(m[4]) });
    }
    return out;
  }

  /** PutObject requests that reached the gateway for `key` (any outcome). */
  async puts(bucket: string, key: string): Promise<{ status: number }[]> {
    return (await this.log()).filter((l) =>
      l.op === "s3_PutObject" && l.bucket === bucket && l.key === key
    );
  }

  async keys(bucket: string): Promise<string[]> {
    const out = await this.client.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (out.Contents ?? []).map((o) => o.Key!).sort();
  }

  async get(
    bucket: string,
    key: string,
  ): Promise<{ body: Uint8Array; contentType?: string; cacheControl?: string } | null> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return {
        body: await out.Body!.transformToByteArray(),
        contentType: out.ContentType,
        cacheControl: out.CacheControl,
      };
    } catch (err) {
      if ((err as { name?: string }).name === "NoSuchKey") return null;
      throw err;
    }
  }

  /** Waits until `key` is stored and returns it. */
  waitForObject(bucket: string, key: string, timeoutMs = 15_000) {
    return waitFor(
      `object ${bucket}/${key} in versitygw`,
      async () => {
        return (await this.get(bucket, key)) ?? undefined;
      },
      timeoutMs,
      100,
    );
  }

  async close(): Promise<void> {
    this.client.destroy();
    await this.proc.stop();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** An SDK client for the test gateway (path-style, no default checksums). */
export function s3Client(endpoint: string, secret: string): S3Client {
  return new S3Client({
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: secret },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 1,
  });
}
