/**
 * Shared machinery of the end-to-end suite: real processes (versitygw, imgproxy or its
 * stand-in, entrypoint.sh, the proxy) over real sockets, every wait bounded, every child
 * killed and awaited.
 */
import { S3Client } from "@aws-sdk/client-s3";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { md5Hex } from "../../lib/key.ts";
import { freePort } from "../../tests/support/net_fs.ts";

export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
export const FIXTURES = `${ROOT}/e2e/fixtures`;
export const STAND_IN = `${ROOT}/e2e/support/imgproxy-stand-in`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a non-undefined value; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(
    `Timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ""}`,
  );
}

export { freePort };

async function findOnPath(
  name: string,
  path = Deno.env.get("PATH") ?? "",
): Promise<string | null> {
  if (name.includes("/")) return (await isExecutable(name)) ? name : null;
  for (const dir of path.split(":")) {
    if (dir !== "" && await isExecutable(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return null;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const st = await Deno.stat(path);
    return st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Which imgproxy the suite runs. */
export interface ImgproxyChoice {
  real: boolean;
  bin: string;
  version: string;
  /** For test names and the banner, e.g. "real imgproxy 4.0.12". */
  label: string;
}

/** Reads an environment variable (a seam for tests). */
export type Env = (name: string) => string | undefined;

let choice: Promise<ImgproxyChoice> | null = null;

/**
 * Picks imgproxy, where scripts/install-deps.sh puts it: `IMGPROXY_BIN` when set (and then
 * only it), else `imgproxy` on PATH, in `GOBIN`, or in ~/go/bin (install-deps.sh links the
 * binary it builds into `GOBIN`, by default ~/go/bin); falls back to the stand-in (which is not
 * imgproxy) when none exists, or when IMGPROXY_BIN names it
 * (`IMGPROXY_BIN=e2e/support/imgproxy-stand-in deno task test:e2e`).
 * With `E2E_EXPECT_IMGPROXY=<version>` (CI sets it) anything but real imgproxy of that version
 * is an error, so a run that was meant to test the real thing cannot pass on the stand-in.
 */
export function chooseImgproxy(): Promise<ImgproxyChoice> {
  return choice ??= pickImgproxy((name) => Deno.env.get(name));
}

/** {@linkcode chooseImgproxy} for an environment, not remembered. */
export async function pickImgproxy(env: Env): Promise<ImgproxyChoice> {
  const found = await findImgproxy(env);
  const expected = env("E2E_EXPECT_IMGPROXY");
  if (expected && (!found.real || found.version !== expected)) {
    throw new Error(
      `E2E_EXPECT_IMGPROXY=${expected}: expected real imgproxy ${expected}, found ${found.label}` +
        ` (${found.bin}); build it with IMGPROXY_SRC=... sh scripts/install-deps.sh`,
    );
  }
  return found;
}

async function findImgproxy(env: Env): Promise<ImgproxyChoice> {
  const named = env("IMGPROXY_BIN");
  const home = env("HOME");
  const gobin = env("GOBIN");
  // A binary named explicitly is the one meant: nothing else stands in for it.
  const candidates = named
    ? [named]
    : ["imgproxy", gobin && `${gobin}/imgproxy`, home && `${home}/go/bin/imgproxy`];
  for (const c of candidates) {
    if (!c) continue;
    const bin = await findOnPath(c, env("PATH") ?? "");
    if (bin === null) continue;
    const version = await imgproxyVersion(bin);
    if (version === "stand-in") break; // IMGPROXY_BIN names the stand-in: use it
    return { real: true, bin, version, label: `real imgproxy ${version}` };
  }
  return standIn();
}

/** What `bin version` prints (imgproxy prints its version, the stand-in "stand-in"). */
export async function imgproxyVersion(bin: string): Promise<string> {
  const out = await new Deno.Command(bin, { args: ["version"], stdout: "piped", stderr: "null" })
    .output();
  return new TextDecoder().decode(out.stdout).trim();
}

/** The stand-in, for tests that need what real imgproxy cannot be made to do. */
export function standIn(): ImgproxyChoice {
  return {
    real: false,
    bin: STAND_IN,
    version: "stand-in",
    label: "STAND-IN imgproxy, not real imgproxy",
  };
}

/** Prints which imgproxy runs, once per test module. */
export async function banner(module: string): Promise<ImgproxyChoice> {
  const c = await chooseImgproxy();
  console.log(
    `\n=== ${module}: using ${c.label}${c.real ? ` at ${c.bin}` : ` (${c.bin})`} ===\n`,
  );
  return c;
}

let denoDir: Promise<string> | null = null;

/** Deno's cache directory, so children with a trimmed environment (no HOME) still find it. */
export function getDenoDir(): Promise<string> {
  return denoDir ??= (async () => {
    const fromEnv = Deno.env.get("DENO_DIR");
    if (fromEnv) return fromEnv;
    const out = await new Deno.Command("deno", {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    return JSON.parse(new TextDecoder().decode(out.stdout)).denoDir as string;
  })();
}

/** The minimal environment every child gets (the proxy's permissions are exact). */
export async function baseEnv(): Promise<Record<string, string>> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    DENO_DIR: await getDenoDir(),
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
  };
}

/**
 * Starts imgproxy (or the stand-in) at `bin` on a port of its own, allowed to fetch sources from
 * loopback (the tests' source servers); not waited for: poll its /health.
 */
export async function startImgproxy(
  bin: string,
  env: Record<string, string> = {},
): Promise<{ proc: Proc; url: string }> {
  const bind = `127.0.0.1:${freePort()}`;
  const proc = new Proc(bin === STAND_IN ? "stand-in" : "imgproxy", bin, [], {
    env: {
      ...await baseEnv(),
      IMGPROXY_BIND: bind,
      IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES: "true",
      ...env,
    },
  });
  return { proc, url: `http://${bind}` };
}

/** Waits until imgproxy (or the stand-in) at `url` answers /health with 200. */
export function waitForHealth(url: string, proc: Proc, timeoutMs = 20_000): Promise<true> {
  return waitFor(`${proc.name} at ${url} to be healthy`, async () => {
    const r = await fetch(`${url}/health`);
    await r.body?.cancel();
    return r.status === 200 || undefined;
  }, timeoutMs);
}

/** A child process whose output is collected line by line. */
export class Proc {
  readonly lines: string[] = [];
  readonly child: Deno.ChildProcess;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #pumps: Promise<void>[];

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    options: { env: Record<string, string>; cwd?: string; echo?: boolean },
  ) {
    this.child = new Deno.Command(cmd, {
      args,
      env: options.env,
      clearEnv: true,
      cwd: options.cwd ?? ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const echo = options.echo ?? Deno.env.get("E2E_VERBOSE") === "1";
    this.#pumps = [this.child.stdout, this.child.stderr].map(async (stream) => {
      let buf = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf("\n")) !== -1) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          this.lines.push(line);
          if (echo) console.log(`[${name}] ${line}`);
        }
      }
      if (buf !== "") this.lines.push(buf);
    });
    this.status = this.child.status;
  }

  get pid(): number {
    return this.child.pid;
  }

  /** The collected output, for failure messages. */
  output(): string {
    return this.lines.map((l) => `  [${this.name}] ${l}`).join("\n");
  }

  /** Waits for a line matching `re`; returns its match. */
  async waitForLine(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    let exited = false;
    this.status.then(() => (exited = true));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const l of this.lines) {
        const m = l.match(re);
        if (m) return m;
      }
      if (exited) {
        await sleep(50);
        const m = this.lines.map((l) => l.match(re)).find((x) => x);
        if (m) return m;
        throw new Error(`${this.name} exited before printing ${re}:\n${this.output()}`);
      }
      await sleep(25);
    }
    throw new Error(`${this.name} did not print ${re} within ${timeoutMs} ms:\n${this.output()}`);
  }

  /** Waits for exit (bounded); returns the status. */
  async wait(timeoutMs = 30_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`${this.name} did not exit within ${timeoutMs} ms:\n${this.output()}`)),
        timeoutMs,
      );
    });
    try {
      const s = await Promise.race([this.status, timeout]);
      await Promise.all(this.#pumps);
      return s;
    } finally {
      clearTimeout(timer);
    }
  }

  signal(sig: Deno.Signal): void {
    try {
      this.child.kill(sig);
    } catch {
      // already gone
    }
  }

  /** Stops the process (TERM, then KILL) and waits for it and its output. */
  async stop(graceMs = 5000): Promise<Deno.CommandStatus> {
    this.signal("SIGTERM");
    try {
      return await this.wait(graceMs);
    } catch {
      this.signal("SIGKILL");
      return await this.wait(5000);
    }
  }
}

/** True when `pid` no longer runs (absent, or a zombie awaiting its reaper). */
export async function processGone(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state === "Z" || state === "X";
  } catch {
    return true;
  }
}

/** Kills a pid that should be gone already (cleanup after a failed test). */
export async function reap(pid: number | undefined): Promise<void> {
  if (pid === undefined || await processGone(pid)) return;
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    // gone
  }
}

// ---------------------------------------------------------------------------------------------
// versitygw

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
  ) {
    this.endpoint = `http://127.0.0.1:${port}`;
    this.virtualEndpoint = `http://${VIRTUAL_DOMAIN}:${port}`;
    this.client = s3Client(this.endpoint, SECRET_KEY);
  }

  /**
   * Starts versitygw on `port` (default: a free one); with `virtualHosted` it also serves
   * `<bucket>.${VIRTUAL_DOMAIN}` hosts (path-style requests to 127.0.0.1 keep working, for the
   * tests' own client).
   */
  static async start(
    options: { virtualHosted?: boolean; port?: number } = {},
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
      "posix",
      `${dir}/root`,
    ], {
      env: { ...await baseEnv(), ROOT_ACCESS_KEY: ACCESS_KEY, ROOT_SECRET_KEY: SECRET_KEY },
    });
    const gw = new Versitygw(proc, port, dir, accessLog);
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

// ---------------------------------------------------------------------------------------------
// Source images and a delaying TCP relay

/**
 * Serves e2e/fixtures over HTTP on 127.0.0.1 (the sources imgproxy fetches): `/NAME` is the
 * fixture, `/status/NNN/NAME` answers status NNN, `/cache-control/N/NAME` is the fixture with
 * `Cache-Control: max-age=N, public` (`/cache-control/no-store/NAME`: `no-store`), and
 * `/validators/NAME` is the fixture with an ETag and a Last-Modified, answering a matching
 * `If-None-Match` or a not-older `If-Modified-Since` with 304.
 */
export const SOURCE_LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT";

export class SourceServer {
  readonly requests: string[] = [];
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  readonly base: string;

  constructor() {
    const types: Record<string, string> = { jpg: "image/jpeg", png: "image/png" };
    this.server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      async (req) => {
        const path = new URL(req.url).pathname;
        this.requests.push(path);
        const status = /^\/status\/(\d{3})\//.exec(path);
        if (status) return new Response(`status ${status[1]}`, { status: Number(status[1]) });
        const cc = /^\/cache-control\/(\d+|no-store)(\/.*)$/.exec(path);
        const extra: Record<string, string> = cc
          ? { "cache-control": cc[1] === "no-store" ? "no-store" : `max-age=${cc[1]}, public` }
          : {};
        const validated = /^\/validators(\/.*)$/.exec(path);
        const name = (cc?.[2] ?? validated?.[1] ?? path).slice(1);
        if (validated) {
          const v = { etag: `"v1-${name}"`, "last-modified": SOURCE_LAST_MODIFIED };
          const ims = Date.parse(req.headers.get("if-modified-since") ?? "");
          if (
            req.headers.get("if-none-match") === v.etag ||
            (!req.headers.has("if-none-match") && ims >= Date.parse(SOURCE_LAST_MODIFIED))
          ) {
            return new Response(null, { status: 304, headers: v });
          }
          Object.assign(extra, v);
        }
        if (!/^[a-z0-9_-]+\.(jpg|png)$/.test(name)) {
          return new Response("not found", {
            status: 404,
          });
        }
        try {
          const body = await Deno.readFile(`${FIXTURES}/${name}`);
          return new Response(body, {
            headers: { "content-type": types[name.split(".")[1]!]!, ...extra },
          });
        } catch {
          return new Response("not found", { status: 404 });
        }
      },
    );
    this.base = `http://127.0.0.1:${this.server.addr.port}`;
  }

  close(): Promise<void> {
    return this.server.shutdown();
  }
}

/**
 * A TCP relay in front of a server that holds back every chunk the server sends for `delayMs`
 * (so S3 answers arrive late, keeping uploads pending). Requests pass at once.
 */
export class DelayRelay {
  readonly listener: Deno.Listener;
  readonly port: number;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;

  constructor(readonly target: number, readonly delayMs: number) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#accepting = (async () => {
      try {
        for await (const conn of listener) this.#track(this.#relay(conn));
      } catch {
        // listener closed
      }
    })();
  }

  #track(p: Promise<void>) {
    this.#tasks.add(p);
    p.finally(() => this.#tasks.delete(p));
  }

  async #relay(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: this.target });
    } catch {
      client.close();
      return;
    }
    this.#conns.add(client);
    this.#conns.add(server);
    const pipe = async (from: Deno.Conn, to: Deno.Conn, delay: number) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          const chunk = buf.slice(0, n);
          if (delay > 0) await sleep(delay);
          let off = 0;
          while (off < chunk.length) off += await to.write(chunk.subarray(off));
        }
      } catch {
        // either side closed
      }
      try {
        to.closeWrite();
      } catch {
        // closed
      }
    };
    await Promise.all([pipe(client, server, 0), pipe(server, client, this.delayMs)]);
    for (const c of [client, server]) {
      this.#conns.delete(c);
      try {
        c.close();
      } catch {
        // closed
      }
    }
  }

  async close(): Promise<void> {
    this.listener.close();
    await this.#accepting;
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
    await Promise.all([...this.#tasks]);
  }
}

// ---------------------------------------------------------------------------------------------
// Images

/** Format and size read from an image's header (PNG, JPEG, WebP, AVIF). */
export function imageInfo(b: Uint8Array): { format: string; width: number; height: number } {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ascii = (o: number, n: number) => String.fromCharCode(...b.subarray(o, o + n));
  if (b[0] === 0x89 && ascii(1, 3) === "PNG") {
    return { format: "png", width: dv.getUint32(16), height: dv.getUint32(20) };
  }
  if (b[0] === 0xff && b[1] === 0xd8) {
    let o = 2;
    while (o + 9 < b.length) {
      if (b[o] !== 0xff) throw new Error(`bad JPEG marker at ${o}`);
      const marker = b[o + 1]!;
      const len = dv.getUint16(o + 2);
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return { format: "jpeg", height: dv.getUint16(o + 5), width: dv.getUint16(o + 7) };
      }
      o += 2 + len;
    }
    throw new Error("JPEG without a frame header");
  }
  if (ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") {
    const kind = ascii(12, 4);
    if (kind === "VP8 ") {
      return {
        format: "webp",
        width: dv.getUint16(26, true) & 0x3fff,
        height: dv.getUint16(28, true) & 0x3fff,
      };
    }
    if (kind === "VP8L") {
      const bits = dv.getUint32(21, true);
      return { format: "webp", width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
    }
    if (kind === "VP8X") {
      const w = 1 + (b[24]! | b[25]! << 8 | b[26]! << 16);
      const h = 1 + (b[27]! | b[28]! << 8 | b[29]! << 16);
      return { format: "webp", width: w, height: h };
    }
  }
  if (ascii(4, 4) === "ftyp" && ["avif", "avis"].includes(ascii(8, 4))) {
    // The size is in the first `ispe` (image spatial extents) property: version/flags, w, h.
    for (let o = 12; o + 16 <= b.length; o++) {
      if (ascii(o, 4) === "ispe") {
        return { format: "avif", width: dv.getUint32(o + 8), height: dv.getUint32(o + 12) };
      }
    }
    throw new Error("AVIF without an ispe box");
  }
  throw new Error(`unknown image format (first bytes ${[...b.subarray(0, 12)].join(",")})`);
}

/** The object key the proxy uses for a raw path. */
export const keyOf = (path: string, suffix = "") => md5Hex(path) + suffix;

/** Fetches and returns status, headers and the whole body. */
export async function get(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: Uint8Array }> {
  const res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(20_000) });
  const body = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body };
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}
