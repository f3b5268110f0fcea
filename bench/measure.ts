/**
 * Load and measurement: one run of wrk (or bench/load.ts) against a port, and a scenario whose
 * contenders alternate run by run, each charged the CPU its own process used.
 */
import { DENO, DURATION, LOAD, output, root, RUNS, THREADS, WRK } from "./settings.ts";
import { statusKb, treeTicks, waitIdle } from "./procs.ts";
import { median, type RunSample, summarize, type Summary } from "./summary.ts";

export { median };

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

export interface Row extends Summary {
  scenario: string;
  contender: string;
  note?: string;
}

export const rows: Row[] = [];
export const notes: string[] = [];

/**
 * Starts a new peak-RSS measurement for `pid` (Linux's `clear_refs` 5 resets `VmHWM` to the
 * current RSS); false when the kernel refuses, and the peak then covers the process's life.
 * Written by a shell: Deno lets only a fully privileged program write under /proc.
 */
async function resetPeak(pid: number): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("sh", {
      args: ["-c", 'echo 5 > "/proc/$1/clear_refs"', "sh", String(pid)],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

export async function scenario(
  name: string,
  contenders: Contender[],
  opts: { connections: number; unique?: string; path?: string; warmup?: number },
): Promise<Map<string, Row>> {
  const results = new Map<string, RunSample[]>();
  for (const c of contenders) results.set(c.name, []);
  let peaksPerRun = true;
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
      if (!await resetPeak(c.pid)) peaksPerRun = false;
      const t0 = await treeTicks(c.pid);
      const r = await load(c.port, {
        ...opts,
        path: c.path ?? opts.path,
        seconds: DURATION,
      });
      if (c.settle) await waitIdle(c.pid);
      const t1 = await treeTicks(c.pid);
      let peakRssKb: number | null = null;
      try {
        peakRssKb = await statusKb(c.pid, "VmHWM");
      } catch { /* gone */ }
      results.get(c.name)!.push({
        ...r,
        errors: r.errors + r.non2xx,
        cpuTicks: t1 - t0,
        peakRssKb,
      });
      console.error(
        `  run ${run + 1} ${c.name.padEnd(28)} ${r.rps.toFixed(0).padStart(7)} req/s  ` +
          `p50 ${fmtUs(r.p50Us)}  p99 ${fmtUs(r.p99Us)}  errors ${r.errors} non2xx ${r.non2xx}`,
      );
    }
  }
  if (!peaksPerRun) {
    notes.push(`${name}: peak RSS is over the whole scenario (the kernel refused to reset it)`);
  }
  const out = new Map<string, Row>();
  for (const c of contenders) {
    const row: Row = {
      scenario: name,
      contender: c.name,
      ...summarize(results.get(c.name)!, CLK_TCK),
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
