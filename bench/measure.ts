/**
 * Load and measurement: one run of wrk (or bench/load.ts) against a port, and a scenario whose
 * contenders alternate run by run, each charged the CPU its own process used.
 */
import { DENO, DURATION, LOAD, output, root, RUNS, THREADS, WRK } from "./settings.ts";
import { statusKb, treeTicks, waitIdle } from "./procs.ts";

const CLK_TCK = 100;

// ---------------------------------------------------------------------------------------------
// Load

export interface LoadResult {
  requests: number;
  rps: number;
  p50Us: number;
  p99Us: number;
  errors: number;
  non2xx: number;
}

export function parseDuration(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n : m[2] === "ms" ? n * 1e3 : m[2] === "s" ? n * 1e6 : n * 6e7;
}

let runCounter = 0;

export async function load(
  port: number,
  /** `unique`: a path template, `{}` replaced by a token unique to each request. */
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

export interface Contender {
  name: string;
  port: number;
  /** The process whose CPU is charged to this contender. */
  pid: number;
  /** Wait after each run until this process is idle (background uploads finished). */
  settle?: boolean;
  path?: string;
}

export interface Row {
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

export const rows: Row[] = [];
export const notes: string[] = [];

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export async function scenario(
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

export function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return "   n/a";
  return us >= 10_000
    ? `${(us / 1000).toFixed(0)}ms`.padStart(7)
    : `${(us / 1000).toFixed(2)}ms`.padStart(7);
}
