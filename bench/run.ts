/**
 * `deno task bench`: the performance benchmark (docs/performance.md), on loopback.
 *
 * Starts everything it needs — a fixed-bytes stand-in for imgproxy, a null store (accepts PUTs,
 * discards them), a stalled store (accepts, never answers), versitygw when installed, nginx
 * (`proxy_pass` and `proxy_cache`) when installed, and the proxy itself as a real subprocess
 * through `bin/start` — then runs each scenario with its contenders alternating run by run, and
 * prints medians and the ratios the issue sets targets for.
 *
 * Load comes from wrk when it is installed, else from `bench/load.ts`.
 *
 * Knobs (environment):
 *   BENCH_DURATION      seconds per measured run (default 5)
 *   BENCH_RUNS          runs per contender (default 3)
 *   BENCH_CONNECTIONS   connections for throughput scenarios (default 32)
 *   BENCH_MEM_CONNECTIONS connections for the memory scenario (default 256)
 *   BENCH_THREADS       wrk threads (default 1)
 *   BENCH_SCENARIOS     comma list among pass,latency,pass1m,miss,memory (default all)
 *   BENCH_NGINX_WORKERS nginx worker_processes (default 1)
 *   BENCH_LOAD          "wrk" or "deno" (default: wrk when installed)
 *   BENCH_PROXY_ARGS    extra `deno run` flags for the proxy (e.g. --cpu-prof --cpu-prof-dir=/tmp/p)
 *   BENCH_PROXY_ENV     extra proxy environment, space-separated NAME=VALUE (e.g. COALESCE_REQUESTS=false)
 *   BENCH_KEEP          1 keeps the temporary directory (logs, configs)
 *   VERSITYGW, NGINX, WRK  paths of the tools (default: looked up on PATH and ~/go/bin)
 */
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const env = (name: string, fallback: string) => Deno.env.get(name) || fallback;
const DURATION = Number(env("BENCH_DURATION", "5"));
const RUNS = Number(env("BENCH_RUNS", "3"));
const CONNS = Number(env("BENCH_CONNECTIONS", "32"));
const MEM_CONNS = Number(env("BENCH_MEM_CONNECTIONS", "256"));
const THREADS = Number(env("BENCH_THREADS", "1"));
const SCENARIOS = new Set(env("BENCH_SCENARIOS", "pass,latency,pass1m,miss,hit,memory").split(","));
const NGINX_WORKERS = env("BENCH_NGINX_WORKERS", "1");
const PROXY_ARGS = env("BENCH_PROXY_ARGS", "").split(" ").filter((s) => s !== "");
const PROXY_ENV = Object.fromEntries(
  env("BENCH_PROXY_ENV", "").split(" ").filter((s) => s.includes("=")).map((s) => {
    const i = s.indexOf("=");
    return [s.slice(0, i), s.slice(i + 1)];
  }),
);
const KEEP = env("BENCH_KEEP", "") === "1";
const UPLOAD_MAX_BYTES_IN_FLIGHT = 134217728; // the proxy's default, stated explicitly below
const CLK_TCK = 100;
const DENO = Deno.execPath();
const tmp = await Deno.makeTempDir({ prefix: "imgproxy-cache-bench-" });

// ---------------------------------------------------------------------------------------------
// Tools

async function which(name: string, extra: string[] = []): Promise<string | null> {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin", ...extra];
  for (const d of dirs) {
    if (d === "") continue;
    try {
      const st = await Deno.stat(`${d}/${name}`);
      if (st.isFile) return `${d}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

const home = Deno.env.get("HOME") ?? "/root";
const WRK = Deno.env.get("WRK") ?? await which("wrk");
const NGINX = Deno.env.get("NGINX") ?? await which("nginx");
const VERSITYGW = Deno.env.get("VERSITYGW") ??
  await which("versitygw", [`${home}/go/bin`, "/root/go/bin"]);
const LOAD = env("BENCH_LOAD", WRK ? "wrk" : "deno");

async function output(cmd: string, args: string[]): Promise<string> {
  try {
    const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return (new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr)).trim();
  } catch (e) {
    return `(${(e as Error).message})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

interface Proc {
  name: string;
  child: Deno.ChildProcess;
  pid: number;
  port: number;
  stop(): Promise<void>;
}
const procs: Proc[] = [];

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitForPort(port: number, child: Deno.ChildProcess, what: string, ms = 60_000) {
  const deadline = Date.now() + ms;
  let exited = false;
  child.status.then(() => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${what} exited before listening (see logs in ${tmp})`);
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch { /* not yet */ }
    await sleep(50);
  }
  throw new Error(`${what} did not listen on ${port} within ${ms} ms`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function makeStop(child: Deno.ChildProcess, name: string, graceMs = 20_000) {
  let stopped: Promise<void> | null = null;
  return () => {
    stopped ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, graceMs);
      await child.status;
      clearTimeout(timer);
      const i = procs.findIndex((p) => p.child === child);
      if (i >= 0) procs.splice(i, 1);
      void name;
    })();
    return stopped;
  };
}

/** Runs `cmd` with stdout and stderr appended to a log file (PID kept through exec). */
function spawnLogged(name: string, cmd: string, args: string[], extraEnv: Record<string, string>) {
  const log = `${tmp}/${name}.log`;
  return new Deno.Command("sh", {
    args: ["-c", `exec "$0" "$@" >>"${log}" 2>&1`, cmd, ...args],
    env: extraEnv,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function startHelper(
  kind: "upstream" | "nullstore" | "stall" | "bare" | "files",
  upstream?: Proc | string,
): Promise<Proc> {
  const port = await freePort();
  const child = spawnLogged(kind, DENO, [
    "run",
    "--quiet",
    "--allow-net=127.0.0.1",
    ...(typeof upstream === "string" ? [`--allow-read=${upstream}`] : []),
    `${root}/bench/servers.ts`,
    kind,
    String(port),
    ...(upstream === undefined
      ? []
      : [typeof upstream === "string" ? upstream : String(upstream.port)]),
  ], {});
  await waitForPort(port, child, kind);
  const p = { name: kind, child, pid: child.pid, port, stop: makeStop(child, kind, 3000) };
  procs.push(p);
  return p;
}

async function startVersitygw(): Promise<Proc> {
  const port = await freePort();
  const dir = `${tmp}/versitygw`;
  await Deno.mkdir(dir, { recursive: true });
  const child = spawnLogged("versitygw", VERSITYGW!, [
    "--port",
    `127.0.0.1:${port}`,
    "posix",
    dir,
  ], { ROOT_ACCESS_KEY: "benchkey", ROOT_SECRET_KEY: "benchsecret" });
  await waitForPort(port, child, "versitygw");
  const p = { name: "versitygw", child, pid: child.pid, port, stop: makeStop(child, "vgw", 5000) };
  procs.push(p);
  const s3 = new S3Client({
    region: "us-east-1",
    endpoint: `http://127.0.0.1:${port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: "benchkey", secretAccessKey: "benchsecret" },
  });
  await s3.send(new CreateBucketCommand({ Bucket: "bench" }));
  s3.destroy();
  return p;
}

/** Counts the objects versitygw holds in the bench bucket (its posix backend: one file each). */
async function versitygwCount(): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(`${tmp}/versitygw/bench`)) {
    if (e.isFile && /^[0-9a-f]{32}$/.test(e.name)) n++;
  }
  return n;
}

async function nullStoreCount(store: Proc): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${store.port}/__count`);
  return (await res.json()).puts;
}

/** Starts the proxy the way `bin/start` does, with its computed permission flags. */
async function startProxy(
  name: string,
  upstream: Proc,
  store: number | { dir: string },
  extraEnv: Record<string, string> = {},
): Promise<Proc> {
  const port = await freePort();
  const storeEnv: Record<string, string> = typeof store === "number"
    ? {
      S3_BUCKET: "bench",
      S3_ENDPOINT: `http://127.0.0.1:${store}`,
      S3_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "benchkey",
      AWS_SECRET_ACCESS_KEY: "benchsecret",
    }
    : { CACHE_DIR: store.dir };
  const child = spawnLogged(name, "sh", [`${root}/bin/start`, ...PROXY_ARGS], {
    DENO,
    HOME: tmp,
    IMGPROXY_URL: `http://127.0.0.1:${upstream.port}`,
    IMGPROXY_BIND: `127.0.0.1:${port}`,
    ...storeEnv,
    UPLOAD_MAX_BYTES_IN_FLIGHT: String(UPLOAD_MAX_BYTES_IN_FLIGHT),
    ...extraEnv,
    ...PROXY_ENV,
  });
  await waitForPort(port, child, name);
  // bin/start execs deno, so the child's PID is the proxy's.
  const comm = (await readProc(`/proc/${child.pid}/comm`)).trim();
  if (comm !== "deno") throw new Error(`${name}: expected pid ${child.pid} to be deno, is ${comm}`);
  const p = { name, child, pid: child.pid, port, stop: makeStop(child, name, 20_000) };
  procs.push(p);
  return p;
}

async function startNginx(
  upstream: Proc,
): Promise<{ proc: Proc; passPort: number; cachePort: number }> {
  const passPort = await freePort();
  const cachePort = await freePort();
  const dir = `${tmp}/nginx`;
  for (const d of ["cache", "temp"]) await Deno.mkdir(`${dir}/${d}`, { recursive: true });
  const isRoot = Deno.uid() === 0;
  const loc = `proxy_pass http://img; proxy_http_version 1.1; proxy_set_header Connection "";`;
  const conf = `
${isRoot ? "user root;" : ""}
worker_processes ${NGINX_WORKERS};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/temp/body;
  proxy_temp_path ${dir}/temp/proxy;
  fastcgi_temp_path ${dir}/temp/fastcgi;
  uwsgi_temp_path ${dir}/temp/uwsgi;
  scgi_temp_path ${dir}/temp/scgi;
  upstream img { server 127.0.0.1:${upstream.port}; keepalive 64; }
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=img:64m max_size=20g inactive=7d use_temp_path=off;
  server { listen 127.0.0.1:${passPort}; location / { ${loc} } }
  server {
    listen 127.0.0.1:${cachePort};
    location / { ${loc} proxy_cache img; proxy_cache_key $uri; proxy_cache_valid 200 1y; }
  }
}
`;
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const child = spawnLogged("nginx", NGINX!, [
    "-p",
    dir,
    "-e",
    `${dir}/error.log`,
    "-c",
    `${dir}/nginx.conf`,
  ], {});
  await waitForPort(passPort, child, "nginx");
  await waitForPort(cachePort, child, "nginx");
  const proc = {
    name: "nginx",
    child,
    pid: child.pid,
    port: passPort,
    stop: makeStop(child, "nginx", 5000),
  };
  procs.push(proc);
  return { proc, passPort, cachePort };
}

async function nginxCacheCount(): Promise<number> {
  let n = 0;
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`);
      else if (e.isFile && /^[0-9a-f]{32}$/.test(e.name)) n++;
    }
  };
  await walk(`${tmp}/nginx/cache`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// /proc

/** Reads a /proc file through `cat` (Deno asks for --allow-all to read /proc directly). */
async function readProc(path: string): Promise<string> {
  const o = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" })
    .output();
  if (!o.success) throw new Error(`cannot read ${path}`);
  return new TextDecoder().decode(o.stdout);
}

async function cpuTicks(pid: number): Promise<number> {
  try {
    const stat = await readProc(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14 and 15)
  } catch {
    return 0;
  }
}

async function children(pid: number): Promise<number[]> {
  try {
    const t = await readProc(`/proc/${pid}/task/${pid}/children`);
    return t.trim().split(/\s+/).filter((s) => s !== "").map(Number);
  } catch {
    return [];
  }
}

/** CPU ticks of a process and its direct children (nginx: master + workers). */
async function treeTicks(pid: number): Promise<number> {
  let t = await cpuTicks(pid);
  for (const c of await children(pid)) t += await cpuTicks(c);
  return t;
}

async function statusKb(pid: number, field: "VmHWM" | "VmRSS"): Promise<number> {
  const s = await readProc(`/proc/${pid}/status`);
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(s);
  return m ? Number(m[1]) : 0;
}

/** Waits until a process has used no more than a tick over `windowMs` (its background work is done). */
async function waitIdle(pid: number, maxMs = 60_000, windowMs = 300): Promise<void> {
  const deadline = Date.now() + maxMs;
  let last = await cpuTicks(pid);
  while (Date.now() < deadline) {
    await sleep(windowMs);
    const now = await cpuTicks(pid);
    if (now - last <= 1) return;
    last = now;
  }
}

// ---------------------------------------------------------------------------------------------
// Load

interface LoadResult {
  requests: number;
  rps: number;
  p50Us: number;
  p99Us: number;
  errors: number;
  non2xx: number;
}

function parseDuration(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n : m[2] === "ms" ? n * 1e3 : m[2] === "s" ? n * 1e6 : n * 6e7;
}

let runCounter = 0;

async function load(
  port: number,
  opts: { path?: string; unique?: string; connections: number; seconds: number },
): Promise<LoadResult> {
  const url = `http://127.0.0.1:${port}${opts.path ?? "/30k/img.webp"}`;
  const run = `r${Date.now().toString(36)}${++runCounter}`;
  const threads = Math.min(THREADS, opts.connections);
  if (LOAD === "wrk") {
    const args = [
      "-t",
      String(threads),
      "-c",
      String(opts.connections),
      "-d",
      `${opts.seconds}s`,
      "--timeout",
      "30s",
      "--latency",
    ];
    if (opts.unique !== undefined) args.push("-s", `${root}/bench/unique.lua`);
    args.push(url);
    if (opts.unique !== undefined) args.push("--", opts.unique, run);
    const out = await output(WRK!, args);
    const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
    const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    const res = {
      requests: num(/(\d+) requests in/),
      rps: num(/Requests\/sec:\s+([\d.]+)/),
      p50Us: parseDuration(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ""),
      p99Us: parseDuration(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ""),
      errors: sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
      non2xx: num(/Non-2xx or 3xx responses: (\d+)/) || 0,
    };
    if (!Number.isFinite(res.rps)) throw new Error(`could not parse wrk output:\n${out}`);
    return res;
  }
  const args = [
    "run",
    "--quiet",
    "--allow-net=127.0.0.1",
    `${root}/bench/load.ts`,
    url,
    String(opts.connections),
    String(opts.seconds),
  ];
  if (opts.unique !== undefined) args.push(opts.unique, run);
  const out = await output(DENO, args);
  return JSON.parse(out.split("\n").pop()!);
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Contender {
  name: string;
  port: number;
  /** The process whose CPU is charged to this contender. */
  pid: number;
  /** Wait after each run until this process is idle (background uploads finished). */
  settle?: boolean;
  path?: string;
}

interface Row {
  scenario: string;
  contender: string;
  rps: number;
  p50Us: number;
  p99Us: number;
  cpuPer1k: number;
  rssMb: number | null;
  requests: number;
  errors: number;
  note?: string;
}

const rows: Row[] = [];
const notes: string[] = [];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function scenario(
  name: string,
  contenders: Contender[],
  opts: { connections: number; unique?: string; path?: string; warmup?: number },
): Promise<Map<string, Row>> {
  const results = new Map<string, { r: LoadResult[]; ticks: number; requests: number }>();
  for (const c of contenders) results.set(c.name, { r: [], ticks: 0, requests: 0 });
  console.error(
    `\n# ${name}: ${contenders.map((c) => c.name).join(" vs ")}, ` +
      `${opts.connections} connections, ${RUNS} × ${DURATION}s`,
  );
  // Warm-up (not measured): JIT, connection pools, nginx upstream keepalive.
  for (const c of contenders) {
    await load(c.port, { ...opts, path: c.path ?? opts.path, seconds: opts.warmup ?? 1 });
    if (c.settle) await waitIdle(c.pid);
  }
  for (let run = 0; run < RUNS; run++) {
    // Alternate: rotate the order each run so no contender always goes first.
    const order = contenders.map((_, i) => contenders[(i + run) % contenders.length]!);
    for (const c of order) {
      const t0 = await treeTicks(c.pid);
      const r = await load(c.port, {
        ...opts,
        path: c.path ?? opts.path,
        seconds: DURATION,
      });
      if (c.settle) await waitIdle(c.pid);
      const t1 = await treeTicks(c.pid);
      const acc = results.get(c.name)!;
      acc.r.push(r);
      acc.ticks += t1 - t0;
      acc.requests += r.requests;
      console.error(
        `  run ${run + 1} ${c.name.padEnd(28)} ${r.rps.toFixed(0).padStart(7)} req/s  ` +
          `p50 ${fmtUs(r.p50Us)}  p99 ${fmtUs(r.p99Us)}  errors ${r.errors} non2xx ${r.non2xx}`,
      );
    }
  }
  const out = new Map<string, Row>();
  for (const c of contenders) {
    const acc = results.get(c.name)!;
    let rss: number | null = null;
    try {
      rss = (await statusKb(c.pid, "VmHWM")) / 1024;
    } catch { /* gone */ }
    const row: Row = {
      scenario: name,
      contender: c.name,
      rps: median(acc.r.map((x) => x.rps)),
      p50Us: median(acc.r.map((x) => x.p50Us)),
      p99Us: median(acc.r.map((x) => x.p99Us)),
      cpuPer1k: acc.requests === 0 ? NaN : (acc.ticks / CLK_TCK) / acc.requests * 1000,
      rssMb: rss,
      requests: acc.requests,
      errors: acc.r.reduce((a, x) => a + x.errors + x.non2xx, 0),
    };
    rows.push(row);
    out.set(c.name, row);
  }
  return out;
}

function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return "   n/a";
  return us >= 10_000
    ? `${(us / 1000).toFixed(0)}ms`.padStart(7)
    : `${(us / 1000).toFixed(2)}ms`.padStart(7);
}

async function countLog(name: string, text: string): Promise<number> {
  try {
    const log = await Deno.readTextFile(`${tmp}/${name}.log`);
    let n = 0;
    for (let i = log.indexOf(text); i !== -1; i = log.indexOf(text, i + 1)) n++;
    return n;
  } catch {
    return 0;
  }
}

/** Waits until `count()` stops changing (uploads drained), bounded. */
async function settleCount(count: () => Promise<number>, maxMs = 60_000): Promise<number> {
  const deadline = Date.now() + maxMs;
  let last = await count();
  let stableSince = Date.now();
  while (Date.now() < deadline) {
    await sleep(250);
    const n = await count();
    if (n !== last) {
      last = n;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 1000) break;
  }
  return last;
}

// ---------------------------------------------------------------------------------------------
// Main

const ratios: string[] = [];
const verdicts: string[] = [];
/** The contender that shows what the runtime alone costs (bench/servers.ts `bare`). */
const BARE = "bare Deno proxy";
/** The proxy as configured by default, coalescing concurrent identical requests. */
const COALESCING = "proxy, coalescing (default)";
/** The floor for hits (bench/servers.ts `files`). */
const BARE_FILES = "bare Deno file server";

/** Asks `p` for `path` until it answers from its store. */
async function warmHit(p: Proc, path: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const res = await fetch(`http://127.0.0.1:${p.port}${path}`);
    await res.arrayBuffer();
    if (res.headers.get("x-cache") === "HIT") return;
    await sleep(100);
  }
  throw new Error(`${p.name}: ${path} was not stored within 30 s`);
}

/** The one object file in a local store directory (not its sidecar). */
async function storedFile(dir: string): Promise<string> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && /^[0-9a-f]{32}$/.test(e.name)) return `${dir}/${e.name}`;
  }
  throw new Error(`no stored object in ${dir}`);
}

const ratio = (
  a: number,
  b: number,
) => (b === 0 || !Number.isFinite(a / b) ? "n/a" : (a / b).toFixed(2));

async function main() {
  const versions = {
    deno: Deno.version.deno,
    nginx: NGINX ? (await output(NGINX, ["-v"])).replace(/^nginx version: /, "") : "not installed",
    wrk: WRK
      ? (await output(WRK, ["-v"])).split("\n")[0]!.replace(/ Copyright.*/, "")
      : "not installed",
    versitygw: VERSITYGW
      ? (await output(VERSITYGW, ["--version"])).split("\n").filter((l) => /Version|Build/.test(l))
        .map((l) => l.replace(/\s+/g, " ").trim()).join(", ")
      : "not installed",
  };
  const cpu = (await readProc("/proc/cpuinfo")).match(/^model name\s*:\s*(.*)$/m)?.[1];
  console.error(`imgproxy-cache benchmark — temp dir ${tmp}`);
  console.error(
    `load: ${LOAD}; nginx: ${NGINX ?? "not installed (apt-get install nginx-light)"}; ` +
      `versitygw: ${
        VERSITYGW ?? "not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.7.0)"
      }`,
  );

  const upstream = await startHelper("upstream");
  const nullStore = await startHelper("nullstore");
  const nginx = NGINX ? await startNginx(upstream) : null;
  const nginxPid = nginx?.proc.pid ?? 0;

  // 1. Pass-through: a fixed path, stored once, then every answer is passed through.
  if (SCENARIOS.has("pass") || SCENARIOS.has("latency") || SCENARIOS.has("pass1m")) {
    // Every client asks for the same path, so with coalescing on (the default) concurrent
    // requests share one imgproxy request, which nginx proxy_pass does not do. The contender
    // compared with nginx forwards every request, like nginx; the default is shown beside it.
    const proxy = await startProxy("proxy-pass", upstream, nullStore.port, {
      COALESCE_REQUESTS: "false",
    });
    const coalescing = await startProxy("proxy-pass-coalescing", upstream, nullStore.port);
    const bare = await startHelper("bare", upstream);
    const direct: Contender = { name: "direct", port: upstream.port, pid: upstream.pid };
    const px: Contender = { name: "proxy", port: proxy.port, pid: proxy.pid };
    const pxc: Contender = { name: COALESCING, port: coalescing.port, pid: coalescing.pid };
    const floor: Contender = { name: BARE, port: bare.port, pid: bare.pid };
    const ng: Contender[] = [
      ...(nginx ? [{ name: "nginx proxy_pass", port: nginx.passPort, pid: nginxPid }] : []),
      floor,
    ];
    if (SCENARIOS.has("pass")) {
      const r = await scenario("pass-through 30 KB", [direct, ...ng, px, pxc], {
        connections: CONNS,
        path: "/30k/img.webp",
      });
      ratios.push(
        `pass-through 30 KB: proxy ÷ direct = ${ratio(r.get("proxy")!.rps, r.get("direct")!.rps)}`,
        `pass-through 30 KB: proxy ÷ ${BARE} = ${ratio(r.get("proxy")!.rps, r.get(BARE)!.rps)}`,
      );
      if (nginx) {
        ratios.push(
          `pass-through 30 KB: ${BARE} ÷ nginx proxy_pass = ${
            ratio(r.get(BARE)!.rps, r.get("nginx proxy_pass")!.rps)
          } (the runtime's ceiling for this target)`,
        );
      }
      if (nginx) {
        const q = r.get("proxy")!.rps / r.get("nginx proxy_pass")!.rps;
        ratios.push(
          `pass-through 30 KB: proxy ÷ nginx proxy_pass = ${q.toFixed(2)} (target ≥ 0.90)`,
          `pass-through 30 KB: ${COALESCING} ÷ nginx proxy_pass = ${
            ratio(r.get(COALESCING)!.rps, r.get("nginx proxy_pass")!.rps)
          } (concurrent identical requests share one imgproxy request)`,
        );
        verdicts.push(
          `pass-through ≥ 0.9× nginx proxy_pass: ${q >= 0.9 ? "MET" : "MISSED"} (${q.toFixed(2)})`,
        );
      }
    }
    if (SCENARIOS.has("pass1m")) {
      const r = await scenario("pass-through 1 MB", [direct, ...ng, px], {
        connections: CONNS,
        path: "/1m/img.webp",
      });
      ratios.push(
        `pass-through 1 MB: proxy ÷ direct = ${ratio(r.get("proxy")!.rps, r.get("direct")!.rps)}`,
      );
      if (nginx) {
        ratios.push(
          `pass-through 1 MB: proxy ÷ nginx proxy_pass = ${
            ratio(r.get("proxy")!.rps, r.get("nginx proxy_pass")!.rps)
          }`,
        );
      }
    }
    if (SCENARIOS.has("latency")) {
      const r = await scenario("latency, 1 connection, 30 KB", [direct, ...ng, px, pxc], {
        connections: 1,
        path: "/30k/img.webp",
      });
      // The default configuration is what users run: judge it (one connection never coalesces).
      const added = (r.get(COALESCING)!.p50Us - r.get("direct")!.p50Us) / 1000;
      const bareAdded = (r.get(BARE)!.p50Us - r.get("direct")!.p50Us) / 1000;
      ratios.push(
        `added p50 at 1 connection: ${COALESCING} ${
          added.toFixed(3)
        } ms over direct (target ≤ 0.100)`,
        `added p50 at 1 connection: ${BARE} ${bareAdded.toFixed(3)} ms over direct (the floor)`,
      );
      if (nginx) {
        const n = (r.get("nginx proxy_pass")!.p50Us - r.get("direct")!.p50Us) / 1000;
        ratios.push(`added p50 at 1 connection: nginx proxy_pass ${n.toFixed(3)} ms over direct`);
      }
      verdicts.push(
        `added p50 ≤ 0.1 ms: ${added <= 0.1 ? "MET" : "MISSED"} (${added.toFixed(3)} ms)`,
      );
    }
    const stored = await nullStoreCount(nullStore);
    notes.push(
      `pass-through: the fixed paths were stored ${stored} time(s) (each proxy stores each path it is asked for once; later answers pass through)`,
    );
    await Promise.all([proxy.stop(), coalescing.stop(), bare.stop()]);
  }

  // 2. Miss and store: a unique path per request, every answer stored.
  if (SCENARIOS.has("miss")) {
    const missStore = await startHelper("nullstore");
    const proxyNull = await startProxy("proxy-miss-null", upstream, missStore.port);
    const vgw = VERSITYGW ? await startVersitygw() : null;
    const proxyVgw = vgw ? await startProxy("proxy-miss-versitygw", upstream, vgw.port) : null;
    const cs: Contender[] = [];
    if (nginx) cs.push({ name: "nginx proxy_cache miss", port: nginx.cachePort, pid: nginxPid });
    cs.push({ name: "proxy + null store", port: proxyNull.port, pid: proxyNull.pid, settle: true });
    if (proxyVgw) {
      cs.push({ name: "proxy + versitygw", port: proxyVgw.port, pid: proxyVgw.pid, settle: true });
    }
    const r = await scenario("miss and store 30 KB", cs, { connections: CONNS, unique: "/30k" });
    // Count what was actually stored (warm-up requests included), and what the proxy skipped.
    const warm = (c: Proc) => countLog(c.name, "Uploaded to S3");
    const check = async (label: string, proc: Proc, count: () => Promise<number>) => {
      const stored = await settleCount(count);
      const logged = await warm(proc);
      const skipped = await countLog(proc.name, "Upload skipped");
      const failed = await countLog(proc.name, "Upload failed");
      const measured = r.get(label)!.requests;
      notes.push(
        `${label}: ${stored} objects in the store; ${logged} "Uploaded" log lines (warm-up included); ` +
          `${measured} responses in measured runs; skipped ${skipped}, failed ${failed}`,
      );
      return { stored, logged, skipped, failed };
    };
    const nullCheck = await check("proxy + null store", proxyNull, () => nullStoreCount(missStore));
    const vgwCheck = proxyVgw ? await check("proxy + versitygw", proxyVgw, versitygwCount) : null;
    if (nginx) {
      const n = await nginxCacheCount();
      notes.push(
        `nginx proxy_cache miss: ${n} files in its cache (warm-up included); ` +
          `${r.get("nginx proxy_cache miss")!.requests} responses in measured runs`,
      );
      const base = r.get("nginx proxy_cache miss")!.rps;
      const qn = r.get("proxy + null store")!.rps / base;
      ratios.push(
        `miss and store: proxy + null store ÷ nginx proxy_cache miss = ${
          qn.toFixed(2)
        } (target ≥ 1.0)`,
      );
      if (proxyVgw) {
        const qv = r.get("proxy + versitygw")!.rps / base;
        ratios.push(
          `miss and store: proxy + versitygw ÷ nginx proxy_cache miss = ${
            qv.toFixed(2)
          } (target ≥ 1.0)`,
        );
        verdicts.push(
          `miss and store ≥ 1.0× nginx proxy_cache (versitygw): ${qv >= 1 ? "MET" : "MISSED"} (${
            qv.toFixed(2)
          }), ` +
            `every response stored: ${vgwCheck!.skipped + vgwCheck!.failed === 0 ? "yes" : "NO"}`,
        );
      }
      verdicts.push(
        `miss and store ≥ 1.0× nginx proxy_cache (null store): ${qn >= 1 ? "MET" : "MISSED"} (${
          qn.toFixed(2)
        }), ` +
          `every response stored: ${nullCheck.skipped + nullCheck.failed === 0 ? "yes" : "NO"}`,
      );
    }
    await Promise.all([proxyNull.stop(), proxyVgw?.stop(), vgw?.stop(), missStore.stop()]);
  }

  // Hits: read mode, every request answered from the store.
  if (SCENARIOS.has("hit")) {
    const dir = `${tmp}/local-store`;
    const hitPath = "/30k/hit.webp";
    const local = await startProxy("proxy-hit-local", upstream, { dir }, { CACHE_MODE: "read" });
    const vgw = VERSITYGW ? await startVersitygw() : null;
    const s3 = vgw
      ? await startProxy("proxy-hit-versitygw", upstream, vgw.port, { CACHE_MODE: "read" })
      : null;
    for (const p of [local, s3]) if (p) await warmHit(p, hitPath);
    const file = await storedFile(dir);
    const files = await startHelper("files", file);
    const cs: Contender[] = [
      { name: BARE_FILES, port: files.port, pid: files.pid },
      { name: "proxy local hit", port: local.port, pid: local.pid },
    ];
    if (s3) cs.push({ name: "proxy S3 hit (versitygw)", port: s3.port, pid: s3.pid });
    const r = await scenario("hit 30 KB", cs, { connections: CONNS, path: hitPath });
    const floor = r.get(BARE_FILES)!;
    const lh = r.get("proxy local hit")!;
    ratios.push(
      `local hit: req/s ÷ ${BARE_FILES} = ${ratio(lh.rps, floor.rps)} (target ≥ 0.80), ` +
        `CPU/request ÷ = ${ratio(lh.cpuPer1k, floor.cpuPer1k)} (target ≤ 1.25)`,
    );
    if (s3) {
      const sh = r.get("proxy S3 hit (versitygw)")!;
      ratios.push(
        `S3 hit: CPU/request ÷ ${BARE_FILES} = ${
          ratio(sh.cpuPer1k, floor.cpuPer1k)
        } (target ≤ 2.5)`,
      );
    }
    await Promise.all([local.stop(), s3?.stop(), vgw?.stop(), files.stop()]);
  }

  // 3. Memory: a stalled store, 256 concurrent 1 MB misses.
  if (SCENARIOS.has("memory")) {
    const stall = await startHelper("stall");
    const memStore = await startHelper("nullstore");
    const proxyStall = await startProxy("proxy-stalled-store", upstream, stall.port);
    const proxyOk = await startProxy("proxy-healthy-store", upstream, memStore.port);
    const bare = await startHelper("bare", upstream);
    // Idle: after start-up and a few pass-through requests (code paths loaded), nothing stored.
    for (const p of [proxyStall, proxyOk, bare]) {
      for (let i = 0; i < 50; i++) await (await fetch(`http://127.0.0.1:${p.port}/health`)).text();
    }
    await sleep(500);
    const idleStall = (await statusKb(proxyStall.pid, "VmRSS")) / 1024;
    const idleOk = (await statusKb(proxyOk.pid, "VmRSS")) / 1024;
    const idleBare = (await statusKb(bare.pid, "VmRSS")) / 1024;
    const r = await scenario("memory: 1 MB misses", [
      { name: "proxy + healthy null store", port: proxyOk.port, pid: proxyOk.pid, settle: true },
      { name: "proxy + stalled store", port: proxyStall.port, pid: proxyStall.pid },
      { name: BARE, port: bare.port, pid: bare.pid },
    ], { connections: MEM_CONNS, unique: "/1m" });
    notes.push(
      `memory: ${BARE} (nothing kept for upload) idle RSS ${idleBare.toFixed(0)} MB, peak ${
        r.get(BARE)!.rssMb!.toFixed(0)
      } MB: ${(r.get(BARE)!.rssMb! - idleBare).toFixed(0)} MB is the runtime's own streaming cost`,
    );
    const peak = r.get("proxy + stalled store")!.rssMb!;
    const bound = idleStall + UPLOAD_MAX_BYTES_IN_FLIGHT / 1048576 + 64;
    notes.push(
      `memory: stalled-store proxy idle RSS ${idleStall.toFixed(0)} MB, peak ${
        peak.toFixed(0)
      } MB, ` +
        `bound ${bound.toFixed(0)} MB (idle + UPLOAD_MAX_BYTES_IN_FLIGHT ${
          UPLOAD_MAX_BYTES_IN_FLIGHT / 1048576
        } MB + 64 MB); ` +
        `"Upload skipped" lines ${await countLog(proxyStall.name, "Upload skipped")}`,
    );
    notes.push(
      `memory: healthy-store proxy idle RSS ${idleOk.toFixed(0)} MB, peak ${
        r.get("proxy + healthy null store")!.rssMb!.toFixed(0)
      } MB; stored ${await nullStoreCount(memStore)}`,
    );
    const ok = r.get("proxy + healthy null store")!;
    const st = r.get("proxy + stalled store")!;
    ratios.push(
      `memory: stalled ÷ healthy store throughput = ${ratio(st.rps, ok.rps)}, p50 ${
        fmtUs(st.p50Us).trim()
      } vs ${fmtUs(ok.p50Us).trim()}, p99 ${fmtUs(st.p99Us).trim()} vs ${fmtUs(ok.p99Us).trim()}`,
    );
    verdicts.push(
      `memory bound (peak ≤ idle + ${UPLOAD_MAX_BYTES_IN_FLIGHT / 1048576} MB + 64 MB): ${
        peak <= bound ? "MET" : "MISSED"
      } (${peak.toFixed(0)} ≤ ${bound.toFixed(0)} MB)`,
    );
    verdicts.push(
      `stalled store responses as fast as healthy: ${
        st.rps >= 0.9 * ok.rps ? "MET" : "MISSED"
      } (throughput ${ratio(st.rps, ok.rps)}×, taken as met at ≥ 0.90)`,
    );
    // The stalled proxy waits its drain deadline on SIGTERM.
    await Promise.all([
      proxyStall.stop(),
      proxyOk.stop(),
      bare.stop(),
      stall.stop(),
      memStore.stop(),
    ]);
  }

  // Report
  const lines: string[] = [];
  lines.push("");
  lines.push(
    `imgproxy-cache benchmark — ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`,
  );
  lines.push(
    `machine: ${navigator.hardwareConcurrency} CPUs, ${cpu ?? "unknown CPU"}; load: ${LOAD} ` +
      `(${THREADS} thread(s)); ${RUNS} runs × ${DURATION}s per contender, alternating, medians; ` +
      `nginx ${NGINX_WORKERS} worker(s)` +
      (Object.keys(PROXY_ENV).length > 0 ? `; proxy env ${JSON.stringify(PROXY_ENV)}` : ""),
  );
  lines.push(
    `versions: deno ${versions.deno}; nginx ${versions.nginx}; wrk ${versions.wrk}; versitygw ${versions.versitygw}`,
  );
  lines.push("");
  lines.push("| scenario | contender | req/s | p50 | p99 | CPU µs / req | peak RSS MB |");
  lines.push("|---|---|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    lines.push(
      `| ${r.scenario} | ${r.contender}${r.errors ? ` (${r.errors} errors)` : ""} | ${
        r.rps.toFixed(0)
      } | ${fmtUs(r.p50Us).trim()} | ${fmtUs(r.p99Us).trim()} | ${
        (r.cpuPer1k * 1000).toFixed(0)
      } | ${r.rssMb === null ? "n/a" : r.rssMb.toFixed(0)} |`,
    );
  }
  lines.push("");
  lines.push("CPU is the contender's own process (nginx: master + workers; direct: the upstream).");
  lines.push(
    "Proxy CPU includes its background uploads (each run waits for the proxy to go idle).",
  );
  lines.push("");
  for (const l of ratios) lines.push(`- ${l}`);
  lines.push("");
  for (const l of notes) lines.push(`- ${l}`);
  lines.push("");
  lines.push("Targets:");
  for (const l of verdicts) lines.push(`- ${l}`);
  console.log(lines.join("\n"));
}

let code = 0;
const onSignal = () => {
  console.error("interrupted: stopping everything");
  cleanup().finally(() => Deno.exit(130));
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

async function cleanup() {
  await Promise.all([...procs].reverse().map((p) => p.stop()));
  if (!KEEP) await Deno.remove(tmp, { recursive: true }).catch(() => {});
  else console.error(`kept ${tmp}`);
}

try {
  await main();
} catch (err) {
  console.error(`benchmark failed: ${(err as Error)?.stack ?? err}`);
  code = 1;
  console.error(`logs kept in ${tmp}`);
  await Promise.all([...procs].reverse().map((p) => p.stop()));
  Deno.exit(code);
}
await cleanup();
Deno.exit(code);
