/**
 * The processes a benchmark run starts (helpers from bench/servers.ts, versitygw, nginx, real
 * imgproxy, the proxy through `bin/start`), and what is read of them from /proc.
 */
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import {
  DENO,
  IMGPROXY,
  NGINX,
  NGINX_WORKERS,
  PROXY_ARGS,
  PROXY_ENV,
  root,
  sleep,
  tmp,
  UPLOAD_MAX_BYTES_IN_FLIGHT,
  VERSITYGW,
} from "./settings.ts";
import { nginxArgs, nginxConf } from "../tests/support/nginx.ts";
import { freePort } from "../tests/support/net_fs.ts";

// ---------------------------------------------------------------------------------------------
// Processes

export interface Proc {
  name: string;
  child: Deno.ChildProcess;
  pid: number;
  port: number;
  stop(): Promise<void>;
}
export const procs: Proc[] = [];

export async function waitForPort(
  port: number,
  child: Deno.ChildProcess,
  what: string,
  ms = 60_000,
) {
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

export function makeStop(child: Deno.ChildProcess, name: string, graceMs = 20_000) {
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
export function spawnLogged(
  name: string,
  cmd: string,
  args: string[],
  extraEnv: Record<string, string>,
) {
  const log = `${tmp}/${name}.log`;
  return new Deno.Command("sh", {
    args: ["-c", `exec "$0" "$@" >>"${log}" 2>&1`, cmd, ...args],
    env: extraEnv,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

export async function startHelper(
  kind: "upstream" | "nullstore" | "stall" | "bare" | "barejs" | "files",
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

/** Starts versitygw (posix backend in a directory of its own) with the `bench` bucket. */
export async function startVersitygw(): Promise<Proc & { dir: string }> {
  const port = await freePort();
  const dir = `${tmp}/versitygw-${port}`;
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
  return { ...p, dir };
}

/** Counts the objects versitygw holds in the bench bucket (its posix backend: one file each). */
export async function versitygwCount(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(`${dir}/bench`)) {
    if (e.isFile && /^[0-9a-f]{32}$/.test(e.name)) n++;
  }
  return n;
}

export async function nullStoreCount(store: Proc): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${store.port}/__count`);
  return (await res.json()).puts;
}

/**
 * Starts the proxy the way `bin/start` does, with its computed permission flags; `from` is the
 * checkout whose proxy runs (this one by default).
 */
export async function startProxy(
  name: string,
  upstream: Proc,
  store: number | { dir: string },
  extraEnv: Record<string, string> = {},
  from: string = root,
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
  const child = spawnLogged(name, "sh", [`${from}/bin/start`, ...PROXY_ARGS], {
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

export async function startNginx(
  upstream: Proc,
): Promise<{ proc: Proc; passPort: number; cachePort: number }> {
  const passPort = await freePort();
  const cachePort = await freePort();
  const dir = `${tmp}/nginx`;
  for (const d of ["cache", "temp"]) await Deno.mkdir(`${dir}/${d}`, { recursive: true });
  const loc = `proxy_pass http://img; proxy_http_version 1.1; proxy_set_header Connection "";`;
  const conf = nginxConf({
    dir,
    temp: `${dir}/temp`,
    workers: NGINX_WORKERS,
    workerConnections: 4096,
    http: `
  upstream img { server 127.0.0.1:${upstream.port}; keepalive 64; }
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=img:64m max_size=20g inactive=7d use_temp_path=off;
  server { listen 127.0.0.1:${passPort}; location / { ${loc} } }
  server {
    listen 127.0.0.1:${cachePort};
    location / { ${loc} proxy_cache img; proxy_cache_key $uri; proxy_cache_valid 200 1y; }
  }`,
  });
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const child = spawnLogged("nginx", NGINX!, nginxArgs(dir), {});
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

export async function nginxCacheCount(): Promise<number> {
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
export async function readProc(path: string): Promise<string> {
  const o = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" })
    .output();
  if (!o.success) throw new Error(`cannot read ${path}`);
  return new TextDecoder().decode(o.stdout);
}

export async function cpuTicks(pid: number): Promise<number> {
  try {
    const stat = await readProc(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14 and 15)
  } catch {
    return 0;
  }
}

export async function children(pid: number): Promise<number[]> {
  try {
    const t = await readProc(`/proc/${pid}/task/${pid}/children`);
    return t.trim().split(/\s+/).filter((s) => s !== "").map(Number);
  } catch {
    return [];
  }
}

/** CPU ticks of a process and its direct children (nginx: master + workers). */
export async function treeTicks(pid: number): Promise<number> {
  let t = await cpuTicks(pid);
  for (const c of await children(pid)) t += await cpuTicks(c);
  return t;
}

export async function statusKb(pid: number, field: "VmHWM" | "VmRSS"): Promise<number> {
  const s = await readProc(`/proc/${pid}/status`);
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(s);
  return m ? Number(m[1]) : 0;
}

/** Waits until a process has used no more than a tick over `windowMs` (its background work is done). */
export async function waitIdle(pid: number, maxMs = 60_000, windowMs = 300): Promise<void> {
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

/** How many events a proxy's log lines containing `text` tell of. */
export async function countLog(name: string, text: string): Promise<number> {
  try {
    const log = await Deno.readTextFile(`${tmp}/${name}.log`);
    let n = 0;
    for (const line of log.split("\n")) {
      if (!line.includes(text)) continue;
      // The proxy writes the first warning of a kind in an interval, then one line with how many
      // more there were (`repeated=N`): each of those stands for N events.
      const repeated = / repeated=(\d+)/.exec(line);
      n += repeated === null ? 1 : Number(repeated[1]);
    }
    return n;
  } catch {
    return 0;
  }
}

/** Waits until `count()` stops changing (uploads drained), bounded. */
export async function settleCount(count: () => Promise<number>, maxMs = 60_000): Promise<number> {
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
// ---------------------------------------------------------------------------------------------

/**
 * Starts real imgproxy on a port of its own, serving `local:///` sources from `dir`, and makes
 * the benchmark's source there: a 1600×1200 JPEG that imgproxy itself enlarges from the test
 * fixture. Returns the process and the source's name.
 */
export async function startImgproxy(dir: string): Promise<Proc> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.copyFile(`${root}/e2e/fixtures/photo.jpg`, `${dir}/small.jpg`);
  const port = await freePort();
  const child = spawnLogged("imgproxy", IMGPROXY!, [], {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    IMGPROXY_BIND: `127.0.0.1:${port}`,
    IMGPROXY_LOCAL_FILESYSTEM_ROOT: dir,
    IMGPROXY_LOG_LEVEL: "error",
  });
  await waitForPort(port, child, "imgproxy");
  const p = {
    name: "imgproxy",
    child,
    pid: child.pid,
    port,
    stop: makeStop(child, "imgproxy", 5000),
  };
  procs.push(p);
  const res = await fetch(
    `http://127.0.0.1:${port}/insecure/rs:force:1600:1200/el:1/plain/local:///small.jpg@jpg`,
  );
  if (res.status !== 200) throw new Error(`imgproxy could not make the source: ${res.status}`);
  await Deno.writeFile(`${dir}/source.jpg`, await res.bytes());
  return p;
}

/** Asks `p` for `path` until it answers from its store. */
export async function warmHit(p: Proc, path: string): Promise<void> {
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
export async function storedFile(dir: string): Promise<string> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && /^[0-9a-f]{32}$/.test(e.name)) return `${dir}/${e.name}`;
  }
  throw new Error(`no stored object in ${dir}`);
}

/** Stops every process started (newest first) and removes the temporary directory unless kept. */
export async function cleanupAll(keep: boolean): Promise<void> {
  await Promise.all([...procs].reverse().map((p) => p.stop()));
  if (!keep) await Deno.remove(tmp, { recursive: true }).catch(() => {});
  else console.error(`kept ${tmp}`);
}

/**
 * Runs a benchmark program's `main` and exits: every process it started is stopped on success,
 * failure and interruption (SIGINT, SIGTERM), the temporary directory kept when it failed or
 * when `keep` says so.
 */
export async function runBench(name: string, main: () => Promise<void>, keep: boolean) {
  const onSignal = () => {
    console.error("interrupted: stopping everything");
    cleanupAll(keep).finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let code = 0;
  try {
    await main();
  } catch (err) {
    console.error(`${name} failed: ${(err as Error)?.stack ?? err}`);
    console.error(`logs kept in ${tmp}`);
    code = 1;
  }
  await cleanupAll(keep || code !== 0);
  Deno.exit(code);
}
