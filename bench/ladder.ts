/**
 * The pass-through ladder: what each piece of the proxy's pass-through path costs, from a bare
 * `Deno.serve` + `fetch` proxy up to the proxy itself, one piece added per rung
 * (bench/ladder_rungs.ts), all measured side by side in one run against the bench upstream's
 * unstorable answers (`/nostore/`, unique paths), contenders alternating run by run, each
 * charged the CPU of its own process (from /proc), at 32 connections and at one.
 *
 * The last rungs are the whole request path with the access log on, writing to a file (as the
 * bench's proxies do), to /dev/null and to a pipe read by another process (as container runtimes
 * collect stdout), and the proxy itself started through `bin/start`, log off and on.
 *
 * Knobs: those of bench/settings.ts (BENCH_RUNS, BENCH_DURATION, BENCH_CONNECTIONS), and
 * LADDER_RUNGS, a comma list of contender keys (default: all), LADDER_SCENARIOS (`32,1`).
 *
 * Usage: deno task bench:ladder (or deno run ... bench/ladder.ts)
 */
import { CONNS, DENO, DURATION, KEEP, output, root, RUNS, tmp } from "./settings.ts";
import {
  makeStop,
  type Proc,
  procs,
  runBench,
  startHelper,
  treeTicks,
  waitForPort,
} from "./procs.ts";
import { fmtUs, load, median } from "./measure.ts";
import { freePort } from "../tests/support/net_fs.ts";

type Sink = "file" | "null" | "pipe";

interface Rung {
  key: string;
  name: string;
  /** The rung of bench/ladder_rungs.ts, or `proxy` for the proxy through bin/start. */
  kind: string;
  env?: Record<string, string>;
  sink?: Sink;
  /** The rung this one adds to (default: the one listed before it). */
  over?: string;
}

const RUNGS: Rung[] = [
  { key: "bare", name: "1 bare Deno.serve + fetch", kind: "bare" },
  { key: "rewrap", name: "2 + new Response, headers filtered", kind: "rewrap" },
  { key: "forward", name: "3 + context, forwarded headers", kind: "forward" },
  { key: "follow", name: "4a + client signal followed", kind: "follow" },
  { key: "signal", name: "4b + fetch given a signal", kind: "signal" },
  { key: "cancel", name: "4 + upstream timeout", kind: "cancel" },
  { key: "handler", name: "4c proxy.ts handler (admission)", kind: "handler", over: "cancel" },
  { key: "conn", name: "5a 4 on own accept loop, unwatched", kind: "conn", over: "cancel" },
  { key: "listener", name: "5 4 on lib/server.ts listener", kind: "listener", over: "cancel" },
  { key: "app-serve", name: "6b app, log off, on Deno.serve", kind: "app-serve", over: "handler" },
  { key: "app", name: "6 app, log off, on listener", kind: "app", over: "listener" },
  { key: "log-file", name: "7a app, log on, file", kind: "app", env: { ACCESS_LOG: "true" } },
  {
    key: "log-null",
    name: "7b app, log on, /dev/null",
    kind: "app",
    env: { ACCESS_LOG: "true" },
    sink: "null",
    over: "app",
  },
  {
    key: "log-pipe",
    name: "7c app, log on, pipe",
    kind: "app",
    env: { ACCESS_LOG: "true" },
    sink: "pipe",
    over: "app",
  },
  {
    key: "log-direct",
    name: "7d app, log on, file, a write per line",
    kind: "app",
    env: { ACCESS_LOG: "true", LADDER_SINK: "direct" },
    over: "log-file",
  },
  {
    key: "log-discard",
    name: "7e app, log on, lines not written",
    kind: "app",
    env: { ACCESS_LOG: "true", LADDER_SINK: "discard" },
    over: "app",
  },
  { key: "proxy-off", name: "proxy (bin/start), log off", kind: "proxy", over: "app" },
  { key: "proxy", name: "proxy (bin/start), log on", kind: "proxy", env: { ACCESS_LOG: "true" } },
];

const wanted = (Deno.env.get("LADDER_RUNGS") ?? "").split(",").filter((s) => s !== "");
const scenarios = (Deno.env.get("LADDER_SCENARIOS") ?? `${CONNS},1`).split(",").map(Number);

/**
 * Starts `cmd` with stdout to `sink` (a file in the temporary directory, /dev/null, or a pipe
 * this process reads and discards) and stderr to the file; the shell execs, so the PID is the
 * command's.
 */
function spawn(name: string, cmd: string, args: string[], env: Record<string, string>, sink: Sink) {
  const log = `${tmp}/${name}.log`;
  const out = sink === "file" ? `>>"${log}"` : sink === "null" ? ">/dev/null" : "";
  const child = new Deno.Command("sh", {
    args: ["-c", `exec "$0" "$@" ${out} 2>>"${log}"`, cmd, ...args],
    env,
    stdin: "null",
    stdout: sink === "pipe" ? "piped" : "null",
    stderr: "null",
  }).spawn();
  if (sink === "pipe") child.stdout.pipeTo(new WritableStream()).catch(() => {});
  return child;
}

async function start(r: Rung, upstream: Proc, cacheDir: string): Promise<Proc> {
  const port = await freePort();
  const env: Record<string, string> = {
    HOME: tmp,
    IMGPROXY_URL: `http://127.0.0.1:${upstream.port}`,
    IMGPROXY_BIND: `127.0.0.1:${port}`,
    CACHE_DIR: cacheDir,
    ACCESS_LOG: "false",
    ...r.env,
  };
  const child = r.kind === "proxy"
    ? spawn(r.key, "sh", [`${root}/bin/start`], { ...env, DENO }, r.sink ?? "file")
    : spawn(
      r.key,
      DENO,
      [
        "run",
        "--quiet",
        "--config",
        `${root}/deno.json`,
        "--allow-net=127.0.0.1",
        "--allow-env",
        `--allow-read=${root},${cacheDir}`,
        `--allow-write=${cacheDir}`,
        `${root}/bench/ladder_rungs.ts`,
        r.kind,
        String(port),
        String(upstream.port),
      ],
      env,
      r.sink ?? "file",
    );
  await waitForPort(port, child, r.key);
  const p = { name: r.key, child, pid: child.pid, port, stop: makeStop(child, r.key, 5000) };
  procs.push(p);
  return p;
}

/** One contender's runs: CPU µs per request, req/s, p50 (µs). */
interface Samples {
  cpu: number[];
  rps: number[];
  p50: number[];
  errors: number;
}

/**
 * Runs every contender `RUNS` times at `connections`, in an order rotated each round, so each
 * rung's run sits next to the one it adds to; returns each contender's samples.
 */
async function measure(procsOf: Proc[], connections: number): Promise<Samples[]> {
  const unique = "/nostore/{}.webp";
  console.error(`\n# ladder, ${connections} connection(s), ${RUNS} × ${DURATION}s`);
  for (const p of procsOf) await load(p.port, { connections, unique, seconds: 1 });
  const out: Samples[] = procsOf.map(() => ({ cpu: [], rps: [], p50: [], errors: 0 }));
  for (let run = 0; run < RUNS; run++) {
    for (let k = 0; k < procsOf.length; k++) {
      const i = (k + run) % procsOf.length;
      const p = procsOf[i]!;
      const t0 = await treeTicks(p.pid);
      const r = await load(p.port, { connections, unique, seconds: DURATION });
      const t1 = await treeTicks(p.pid);
      const s = out[i]!;
      s.cpu.push((t1 - t0) / CLK_TCK / r.requests * 1e6);
      s.rps.push(r.rps);
      s.p50.push(r.p50Us);
      s.errors += r.errors + r.non2xx;
      console.error(
        `  run ${run + 1} ${p.name.padEnd(10)} ${r.rps.toFixed(0).padStart(6)} req/s ` +
          `${((t1 - t0) / CLK_TCK / r.requests * 1e6).toFixed(0).padStart(4)} µs`,
      );
    }
  }
  return out;
}

const CLK_TCK = 100;

async function main(): Promise<void> {
  const loadBefore = (await output("cat", ["/proc/loadavg"])).split(" ").slice(0, 3).join(" ");
  const upstream = await startHelper("upstream");
  const cacheDir = `${tmp}/cache`;
  await Deno.mkdir(cacheDir, { recursive: true });
  const rungs = RUNGS.filter((r) => wanted.length === 0 || wanted.includes(r.key));
  const started: Proc[] = [];
  for (const r of rungs) started.push(await start(r, upstream, cacheDir));
  const results: Samples[][] = [];
  for (const connections of scenarios) results.push(await measure(started, connections));
  const loadAfter = (await output("cat", ["/proc/loadavg"])).split(" ").slice(0, 3).join(" ");
  const head = scenarios.map((c) => `${c} conn: req/s | p50 | CPU µs | Δ paired`).join(" | ");
  const lines = [
    "",
    `pass-through ladder — ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC, ` +
    `deno ${Deno.version.deno}; ${RUNS} runs × ${DURATION}s alternating, medians; Δ paired: ` +
    `the median over the rounds of the CPU difference from the rung added to, in the same ` +
    `round; load average ${loadBefore} before, ${loadAfter} after`,
    "",
    `| rung | ${head} |`,
    `|---|${scenarios.map(() => "---:|---:|---:|---:").join("|")}|`,
    ...rungs.map((r, i) => {
      const overKey = r.over ?? rungs[i - 1]?.key;
      const o = rungs.findIndex((x) => x.key === overKey);
      const cells = results.map((samples) => {
        const s = samples[i]!;
        const paired = o < 0 ? null : median(s.cpu.map((c, k) => c - samples[o]!.cpu[k]!));
        return `${median(s.rps).toFixed(0)} | ${fmtUs(median(s.p50)).trim()} | ${
          median(s.cpu).toFixed(0)
        } | ${paired === null ? "" : (paired >= 0 ? "+" : "") + paired.toFixed(0)}`;
      });
      const errors = results.some((samples) => samples[i]!.errors > 0) ? " (errors)" : "";
      return `| ${r.name}${o < 0 ? "" : ` (over ${rungs[o]!.key})`}${errors} | ${
        cells.join(" | ")
      } |`;
    }),
  ];
  console.log(lines.join("\n"));
}

await runBench("ladder", main, KEEP);
