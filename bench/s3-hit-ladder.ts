/**
 * The S3 hit ladder: from the runtime's floor for a small S3 hit (a `fetch` read whole and
 * answered anew) to the proxy's real read-mode hit from a store that keeps its connections open
 * (the bench's null store), each step one more thing the hit does (bench/s3_hit_steps.ts), all
 * alternating run by run, each charged the CPU of its own process. The bare Deno file server
 * and the bare Deno proxy (streaming, and reading the body whole) of the main bench stand
 * beside them. Each step's cost is printed as the median over the runs of its difference from
 * the contender before it in the same run.
 *
 * Usage: deno run --lock=tests/deno.lock --allow-run --allow-net=127.0.0.1 --allow-read
 * --allow-write --allow-env --allow-sys=osRelease,uid bench/s3-hit-ladder.ts
 * (BENCH_RUNS, BENCH_DURATION, BENCH_CONNECTIONS as for `deno task bench`; LADDER_STEPS, a
 * comma list, limits the steps.)
 */
import { CONNS, DENO, DURATION, KEEP, output, root, RUNS, tmp } from "./settings.ts";
import {
  makeStop,
  type Proc,
  procs,
  runBench,
  spawnLogged,
  startHelper,
  startProxy,
  treeTicks,
  waitForPort,
  warmHit,
} from "./procs.ts";
import { type Contender, load, median } from "./measure.ts";
import { freePort } from "../tests/support/net_fs.ts";

const STEPS = (Deno.env.get("LADDER_STEPS") ??
  "whole,hashes,init,signcalc,signed,requester,signal,store,slots,deadline,lookup,app")
  .split(",");
const PATH = "/30k/hit.webp";

async function startStep(step: string, store: Proc, upstream: Proc): Promise<Proc> {
  const port = await freePort();
  const child = spawnLogged(`step-${step}`, DENO, [
    "run",
    "--quiet",
    `--lock=${root}/tests/deno.lock`,
    "--allow-net=127.0.0.1",
    "--allow-env",
    "--allow-read",
    "--allow-sys=osRelease,uid,homedir,hostname",
    `${root}/bench/s3_hit_steps.ts`,
    step,
    String(port),
    String(store.port),
    String(upstream.port),
    // Credentials from the environment, through the SDK's provider chain, as the proxy has them.
  ], { AWS_ACCESS_KEY_ID: "benchkey", AWS_SECRET_ACCESS_KEY: "benchsecret" });
  await waitForPort(port, child, step);
  const p = { name: step, child, pid: child.pid, port, stop: makeStop(child, step, 3000) };
  procs.push(p);
  return p;
}

const loadBefore = (await output("cat", ["/proc/loadavg"])).split(" ").slice(0, 3).join(" ");
async function main(): Promise<void> {
  const upstream = await startHelper("upstream");
  const store = await startHelper("nullstore");
  const bare = await startHelper("bare", upstream);
  const quiet = await startProxy("proxy-nolog", upstream, store.port, {
    CACHE_MODE: "read",
    ACCESS_LOG: "false",
  });
  const logged = await startProxy("proxy", upstream, store.port, { CACHE_MODE: "read" });
  await warmHit(quiet, PATH);
  await warmHit(logged, PATH);
  // The floor of a local hit, for the S3 hit target (≤ 2.5× its CPU): the same bytes, from a file.
  const file = `${tmp}/hit.webp`;
  await Deno.writeFile(file, await (await fetch(`http://127.0.0.1:${quiet.port}${PATH}`)).bytes());
  const files = await startHelper("files", file);
  const cs: Contender[] = [
    { name: "bare Deno file server", port: files.port, pid: files.pid },
    { name: "bare Deno proxy (streamed)", port: bare.port, pid: bare.pid, path: "/30k/b.webp" },
    { name: "bare Deno proxy, read whole", port: bare.port, pid: bare.pid, path: "/whole/30k/b" },
  ];
  for (const step of STEPS) {
    const p = await startStep(step, store, upstream);
    const res = await fetch(`http://127.0.0.1:${p.port}${PATH}`);
    const body = await res.bytes();
    if (res.status !== 200 || body.byteLength !== 30 * 1024) {
      throw new Error(`step ${step}: ${res.status}, ${body.byteLength} bytes`);
    }
    cs.push({ name: `step ${step}`, port: p.port, pid: p.pid });
  }
  cs.push({ name: "proxy, ACCESS_LOG=false", port: quiet.port, pid: quiet.pid });
  cs.push({ name: "proxy", port: logged.port, pid: logged.pid });
  // Alternating runs, each contender charged its own process's CPU; a step's cost is also
  // given as the median over runs of its difference from the contender before it in the same
  // run (neighbours in time share the machine's load).
  for (const c of cs) await load(c.port, { connections: CONNS, path: c.path ?? PATH, seconds: 1 });
  const cpu = new Map<string, number[]>(cs.map((c) => [c.name, []]));
  const rps = new Map<string, number[]>(cs.map((c) => [c.name, []]));
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 === 0 ? cs : [...cs].reverse();
    for (const c of order) {
      const t0 = await treeTicks(c.pid);
      const r = await load(c.port, { connections: CONNS, path: c.path ?? PATH, seconds: DURATION });
      const t1 = await treeTicks(c.pid);
      if (r.errors + r.non2xx > 0) throw new Error(`${c.name}: ${r.errors + r.non2xx} errors`);
      cpu.get(c.name)!.push((t1 - t0) / 100 / r.requests * 1e6);
      rps.get(c.name)!.push(r.rps);
    }
    console.error(`run ${run + 1} of ${RUNS} done`);
  }
  const loadAfter = (await output("cat", ["/proc/loadavg"])).split(" ").slice(0, 3).join(" ");
  console.log(
    `\nS3 hit ladder, ${
      new Date().toISOString().slice(0, 16)
    } UTC, ${RUNS} runs × ${DURATION} s, ` +
      `${CONNS} connections; load average ${loadBefore} before, ${loadAfter} after\n`,
  );
  console.log("| contender | req/s | CPU µs / request | step (paired median) |");
  console.log("|---|---:|---:|---:|");
  for (let i = 0; i < cs.length; i++) {
    const name = cs[i]!.name;
    const mine = cpu.get(name)!;
    const before = i > 2 ? cpu.get(cs[i - 1]!.name)! : null;
    const step = before === null ? "" : median(mine.map((x, k) => x - before[k]!));
    console.log(
      `| ${name} | ${median(rps.get(name)!).toFixed(0)} | ${median(mine).toFixed(0)} | ${
        step === "" ? "" : `${step >= 0 ? "+" : ""}${step.toFixed(0)}`
      } |`,
    );
  }
}

await runBench("S3 hit ladder", main, KEEP);
