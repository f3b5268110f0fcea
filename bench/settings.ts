/**
 * The benchmark's knobs (environment) and the tools it finds on this machine.
 *
 * Knobs:
 *   BENCH_DURATION      seconds per measured run (default 5)
 *   BENCH_RUNS          runs per contender (default 3)
 *   BENCH_CONNECTIONS   connections for throughput scenarios (default 32)
 *   BENCH_MEM_CONNECTIONS connections for the memory scenario (default 256)
 *   BENCH_THREADS       wrk threads (default 1)
 *   BENCH_SCENARIOS     comma list among pass,latency,miss,hit,memory,imgproxy (default
 *                       all of these), and paced (asked by name: misses from an upstream that
 *                       answers in 100 ms, the real-imgproxy rate without imgproxy's CPU beside it)
 *   BENCH_NGINX         1 adds nginx (proxy_pass, proxy_cache) beside the floors
 *   BENCH_NGINX_WORKERS nginx worker_processes (default 1)
 *   BENCH_LOAD          "wrk" or "deno" (default: wrk when installed)
 *   BENCH_PROXY_ARGS    extra `deno run` flags for the proxy (e.g. --cpu-prof --cpu-prof-dir=/tmp/p)
 *   BENCH_PROXY_ENV     extra proxy environment, space-separated NAME=VALUE (e.g. ACCESS_LOG=false)
 *   BENCH_BASELINE      another checkout of the proxy (e.g. a `git worktree` of main): the
 *                       scenarios run its proxies too (access log on and off where this
 *                       checkout's run both), named "… (baseline)", for before/after figures in
 *                       one run
 *   BENCH_KEEP          1 keeps the temporary directory (logs, configs)
 *   VERSITYGW, NGINX, WRK, IMGPROXY  paths of the tools (default: looked up on PATH, then where
 *                       scripts/install-deps.sh installs Go binaries: GOBIN, ~/go/bin)
 */
export const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const env = (name: string, fallback: string) => Deno.env.get(name) || fallback;
export const DURATION = Number(env("BENCH_DURATION", "5"));
export const RUNS = Number(env("BENCH_RUNS", "3"));
export const CONNS = Number(env("BENCH_CONNECTIONS", "32"));
export const MEM_CONNS = Number(env("BENCH_MEM_CONNECTIONS", "256"));
export const THREADS = Number(env("BENCH_THREADS", "1"));
export const SCENARIOS = new Set(
  env("BENCH_SCENARIOS", "pass,latency,miss,hit,memory,imgproxy").split(","),
);
export const WITH_NGINX = env("BENCH_NGINX", "") === "1";
export const NGINX_WORKERS = env("BENCH_NGINX_WORKERS", "1");
export const PROXY_ARGS = env("BENCH_PROXY_ARGS", "").split(" ").filter((s) => s !== "");
export const PROXY_ENV: Record<string, string> = Object.fromEntries(
  env("BENCH_PROXY_ENV", "").split(" ").filter((s) => s.includes("=")).map((s) => {
    const i = s.indexOf("=");
    return [s.slice(0, i), s.slice(i + 1)];
  }),
);
export const KEEP = env("BENCH_KEEP", "") === "1";
/** Another checkout whose proxies run beside this one's in every scenario. */
export const BASELINE = env("BENCH_BASELINE", "").replace(/\/$/, "") || null;
/** The proxy's default, stated explicitly to the proxies the benchmark starts. */
export const UPLOAD_MAX_BYTES_IN_FLIGHT = 134217728;
export const DENO = Deno.execPath();
export const tmp = await Deno.makeTempDir({ prefix: "imgproxy-cache-bench-" });

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
/** Where scripts/install-deps.sh puts Go binaries (versitygw, and the imgproxy it builds). */
const goBins = [Deno.env.get("GOBIN"), `${home}/go/bin`].filter((d) => d !== undefined);
export const WRK = Deno.env.get("WRK") ?? await which("wrk");
export const NGINX = WITH_NGINX ? Deno.env.get("NGINX") ?? await which("nginx") : null;
export const VERSITYGW = Deno.env.get("VERSITYGW") ?? await which("versitygw", goBins);
export const IMGPROXY = Deno.env.get("IMGPROXY") ?? await which("imgproxy", goBins);
export const LOAD = env("BENCH_LOAD", WRK ? "wrk" : "deno");

/** A command's output (stdout then stderr), or the error that kept it from running. */
export async function output(cmd: string, args: string[]): Promise<string> {
  try {
    const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return (new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr)).trim();
  } catch (e) {
    return `(${(e as Error).message})`;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The CPU model, from /proc/cpuinfo (read through `cat`: Deno asks for --allow-all on /proc). */
export async function readCpuModel(): Promise<string> {
  const info = await output("cat", ["/proc/cpuinfo"]);
  return /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? "unknown CPU";
}
