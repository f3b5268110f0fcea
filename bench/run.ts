/**
 * `deno task bench`: the performance benchmark (docs/performance.md), on loopback.
 *
 * Each scenario runs the proxy (a real subprocess through `bin/start`) beside the floor the
 * runtime sets for the same work: a bare `Deno.serve` + `fetch` proxy, a bare `Deno.serve`
 * streaming a file. Contenders alternate run by run; medians over the runs are printed, with each
 * contender's CPU time per request (its own process, from /proc), the figure to steer by on a
 * shared machine, and its peak RSS (each run's own, bench/summary.ts).
 *
 * - pass-through: unique paths whose answers are not storable (`Cache-Control: no-store`);
 * - latency: the same at one connection (p50);
 * - miss and store: unique paths, every answer stored (null store, versitygw; room for all of a
 *   run's answers in flight, so none is skipped);
 * - hit: read mode, one stored 30 KB image, from the local store and from S3: versitygw (which
 *   closes every connection) and the null store (which keeps them open);
 * - paced misses (asked by name): unique 30 KB misses from an upstream answering in 100 ms,
 *   every answer stored: a few hundred requests a second, as in front of real imgproxy;
 * - memory: 256 connections of unique 1 MB misses, RSS growth over idle;
 * - imgproxy: real imgproxy (1600×1200 JPEG → 300×300 JPEG, every request a miss) direct and
 *   behind the proxy (every answer stored, and nothing stored), and the bare proxy in front of it.
 *
 * Helpers: bench/servers.ts (upstream stand-in, null store, floors), versitygw, real imgproxy and
 * nginx (BENCH_NGINX=1) when installed. Knobs: see bench/settings.ts.
 */
import { type Contender, fmtUs, notes, type Row, rows, scenario } from "./measure.ts";
import {
  countLog,
  nullStoreCount,
  type Proc,
  runBench,
  settleCount,
  startHelper,
  startImgproxy,
  startNginx,
  startProxy,
  startVersitygw,
  statusKb,
  storedFile,
  versitygwCount,
  warmHit,
} from "./procs.ts";
import {
  BASELINE,
  CONNS,
  DURATION,
  IMGPROXY,
  KEEP,
  LOAD,
  MEM_CONNS,
  NGINX,
  NGINX_WORKERS,
  output,
  PROXY_ENV,
  readCpuModel,
  root,
  RUNS,
  SCENARIOS,
  sleep,
  THREADS,
  tmp,
  UPLOAD_MAX_BYTES_IN_FLIGHT,
  VERSITYGW,
  WRK,
} from "./settings.ts";

const BARE = "bare Deno proxy";
const FILES = "bare Deno file server";
const BARE_CLOSE = "bare Deno proxy, new upstream connection per request";
const BARE_WHOLE = "bare Deno proxy, body read whole before answering";
const BARE_JS = "bare Deno proxy, body read in JavaScript";
const S3_HIT = "proxy S3 hit";
const targets: string[] = [];

const ratio = (a: number, b: number) =>
  b === 0 || !Number.isFinite(a / b) ? "n/a" : (a / b).toFixed(2);
const cpuUs = (r: Row) => r.cpuPer1k * 1000;

/** One target line: what was measured against what the issue asks, and whether it is met. */
function target(text: string, met: boolean): void {
  targets.push(`${met ? "MET   " : "MISSED"} ${text}`);
}

async function passThrough(upstream: Proc, nullStore: Proc, bare: Proc): Promise<void> {
  const proxy = await startProxy("proxy-pass", upstream, nullStore.port);
  const cs: Contender[] = [
    { name: BARE, port: bare.port, pid: bare.pid },
    { name: "proxy", port: proxy.port, pid: proxy.pid },
  ];
  // The access log on (the default) and off, this checkout's and the baseline's.
  const others: Proc[] = [];
  for (const [from, suffix] of BASELINE ? [[root, ""], [BASELINE, " (baseline)"]] : [[root, ""]]) {
    const tag = suffix === "" ? "" : "-baseline";
    if (suffix !== "") {
      const p = await startProxy(`proxy-pass${tag}`, upstream, nullStore.port, {}, from);
      others.push(p);
      cs.push({ name: `proxy${suffix}`, port: p.port, pid: p.pid });
    }
    const quiet = await startProxy(`proxy-pass-nolog${tag}`, upstream, nullStore.port, {
      ACCESS_LOG: "false",
    }, from);
    others.push(quiet);
    cs.push({ name: `proxy, ACCESS_LOG=false${suffix}`, port: quiet.port, pid: quiet.pid });
  }
  const nginx = NGINX ? await startNginx(upstream) : null;
  if (nginx) cs.push({ name: "nginx proxy_pass", port: nginx.passPort, pid: nginx.proc.pid });
  if (SCENARIOS.has("pass")) {
    const r = await scenario("pass-through 30 KB", cs, {
      connections: CONNS,
      unique: "/nostore/{}.webp",
    });
    const q = r.get("proxy")!.rps / r.get(BARE)!.rps;
    target(`pass-through ≥ 0.90× ${BARE}: ${q.toFixed(2)}×`, q >= 0.9);
  }
  if (SCENARIOS.has("latency")) {
    const r = await scenario("1 connection 30 KB", cs, {
      connections: 1,
      unique: "/nostore/{}.webp",
    });
    const added = r.get("proxy")!.p50Us - r.get(BARE)!.p50Us;
    target(`1-connection p50 within 30 µs of ${BARE}: +${added.toFixed(0)} µs`, added <= 30);
  }
  await Promise.all([proxy.stop(), nginx?.proc.stop(), ...others.map((p) => p.stop())]);
}

/**
 * Room for every answer of a run in the storing proxies of the miss-and-store scenario: at a few
 * thousand misses a second the uploads fall behind the answers, and with the default 128 MiB an
 * answer found without room is skipped (neither copied nor written), which would make the
 * figures those of a mix of stored and unstored misses. 1 GiB holds the 30 KB answers of a run
 * at this rate, so each figure is a stored miss's (the note says when any was skipped anyway).
 */
const MISS_ROOM = { UPLOAD_MAX_BYTES_IN_FLIGHT: String(1 << 30) };

async function missAndStore(upstream: Proc, bare: Proc): Promise<void> {
  const cs: Contender[] = [{ name: BARE, port: bare.port, pid: bare.pid }];
  const checks: { label: string; proc: Proc; count: () => Promise<number> }[] = [];
  const stores: Proc[] = [];
  const proxies: Proc[] = [];
  // Each checkout's proxies write to stores of their own, so each count is theirs alone.
  for (const [from, suffix] of BASELINE ? [[root, ""], [BASELINE, " (baseline)"]] : [[root, ""]]) {
    const tag = suffix === "" ? "" : "-baseline";
    const store = await startHelper("nullstore");
    const pNull = await startProxy(`proxy-miss-null${tag}`, upstream, store.port, MISS_ROOM, from);
    stores.push(store);
    proxies.push(pNull);
    cs.push({
      name: `proxy + null store${suffix}`,
      port: pNull.port,
      pid: pNull.pid,
      settle: true,
    });
    checks.push({
      label: `proxy + null store${suffix}`,
      proc: pNull,
      count: () => nullStoreCount(store),
    });
    if (!VERSITYGW) continue;
    const vgw = await startVersitygw();
    const pVgw = await startProxy(
      `proxy-miss-versitygw${tag}`,
      upstream,
      vgw.port,
      MISS_ROOM,
      from,
    );
    stores.push(vgw);
    proxies.push(pVgw);
    cs.push({ name: `proxy + versitygw${suffix}`, port: pVgw.port, pid: pVgw.pid, settle: true });
    checks.push({
      label: `proxy + versitygw${suffix}`,
      proc: pVgw,
      count: () => versitygwCount(vgw.dir),
    });
  }
  const r = await scenario("miss and store 30 KB", cs, {
    connections: CONNS,
    unique: "/30k/{}.webp",
  });
  for (const { label, proc, count } of checks) await uploadNote(label, proc, count, r);
  // Proxies first (they drain their uploads), then the stores.
  await Promise.all(proxies.map((p) => p.stop()));
  await Promise.all(stores.map((p) => p.stop()));
}

async function hits(upstream: Proc, bare: Proc): Promise<void> {
  const path = "/30k/hit.webp";
  const dir = `${tmp}/local-store`;
  const local = await startProxy("proxy-hit-local", upstream, { dir }, { CACHE_MODE: "read" });
  const quiet = await startProxy("proxy-hit-local-nolog", upstream, { dir }, {
    CACHE_MODE: "read",
    ACCESS_LOG: "false",
  });
  // The baseline's local hits beside this checkout's, on the same directory.
  const localBaseline: { name: string; proc: Proc }[] = [];
  if (BASELINE) {
    for (
      const [name, env] of [["", {}], [", ACCESS_LOG=false", { ACCESS_LOG: "false" }]] as const
    ) {
      const proc = await startProxy(
        `proxy-hit-local${name === "" ? "" : "-nolog"}-baseline`,
        upstream,
        {
          dir,
        },
        { CACHE_MODE: "read", ...env },
        BASELINE,
      );
      localBaseline.push({ name: `proxy local hit${name} (baseline)`, proc });
    }
  }
  // S3 hits from versitygw, which ends every connection (Connection: close: each hit opens a
  // new one), and from the null store, which keeps them open as AWS S3, R2 or Tigris do.
  const vgw = VERSITYGW ? await startVersitygw() : null;
  const keepAlive = await startHelper("nullstore");
  const s3: { name: string; proc: Proc }[] = [];
  for (const [from, suffix] of BASELINE ? [[root, ""], [BASELINE, " (baseline)"]] : [[root, ""]]) {
    const tag = suffix === "" ? "" : "-baseline";
    const stores: [string, number][] = [["keep-alive store", keepAlive.port]];
    if (vgw) stores.unshift(["versitygw", vgw.port]);
    for (const [store, port] of stores) {
      const proc = await startProxy(`proxy-hit-${store.replace(/ /g, "-")}${tag}`, upstream, port, {
        CACHE_MODE: "read",
      }, from);
      s3.push({ name: `${S3_HIT} (${store})${suffix}`, proc });
    }
  }
  for (const p of [local, quiet, ...localBaseline.map((x) => x.proc), ...s3.map((x) => x.proc)]) {
    await warmHit(p, path);
  }
  if (vgw) await sameHit(s3[0]!.proc, s3[1]!.proc, path);
  const files = await startHelper("files", await storedFile(dir));
  const cs: Contender[] = [
    { name: FILES, port: files.port, pid: files.pid },
    { name: "proxy local hit", port: local.port, pid: local.pid },
    { name: "proxy local hit, ACCESS_LOG=false", port: quiet.port, pid: quiet.pid },
    { name: BARE, port: bare.port, pid: bare.pid, path: "/30k/bare.webp" },
    { name: BARE_WHOLE, port: bare.port, pid: bare.pid, path: "/whole/30k/bare.webp" },
  ];
  for (const { name, proc } of localBaseline) cs.push({ name, port: proc.port, pid: proc.pid });
  if (vgw) cs.push({ name: BARE_CLOSE, port: bare.port, pid: bare.pid, path: "/close/bare.webp" });
  for (const { name, proc } of s3) cs.push({ name, port: proc.port, pid: proc.pid });
  const r = await scenario("hit 30 KB", cs, { connections: CONNS, path });
  const floor = r.get(FILES)!;
  for (const name of ["proxy local hit", "proxy local hit, ACCESS_LOG=false"]) {
    const h = r.get(name)!;
    const q = h.rps / floor.rps;
    const c = cpuUs(h) / cpuUs(floor);
    target(
      `${name}: ${q.toFixed(2)}× ${FILES} req/s (≥ 0.80), ${c.toFixed(2)}× its CPU (≤ 1.25)`,
      q >= 0.8 && c <= 1.25,
    );
  }
  for (const store of ["versitygw", "keep-alive store"]) {
    const h = r.get(`${S3_HIT} (${store})`);
    if (h === undefined) continue;
    const c = cpuUs(h) / cpuUs(floor);
    target(`${S3_HIT} (${store}): ${c.toFixed(2)}× ${FILES} CPU (≤ 2.5)`, c <= 2.5);
  }
  notes.push(
    `S3 hit: ${BARE} (Deno.serve + fetch of 30 KB, no lookup, no signing) costs ${
      ratio(cpuUs(r.get(BARE)!), cpuUs(floor))
    }× ${FILES} CPU` +
      (vgw
        ? `, ${
          ratio(cpuUs(r.get(BARE_CLOSE)!), cpuUs(floor))
        }× with a new upstream connection per request as versitygw demands`
        : "") +
      `, ${
        ratio(cpuUs(r.get(BARE_WHOLE)!), cpuUs(floor))
      }× when it reads the body whole before answering, as the proxy does with a small hit: ` +
      `the runtime's own share of an S3 hit`,
  );
  await Promise.all([
    local.stop(),
    quiet.stop(),
    ...[...localBaseline, ...s3].map((x) => x.proc.stop()),
    files.stop(),
  ]);
  await Promise.all([vgw?.stop(), keepAlive.stop()]);
}

/**
 * Checks that a hit from the keep-alive store answers as one from versitygw does (status, the
 * headers a client reads, the body): the stand-in must not measure a different answer.
 */
async function sameHit(versitygw: Proc, standIn: Proc, path: string): Promise<void> {
  const read = async (p: Proc) => {
    const res = await fetch(`http://127.0.0.1:${p.port}${path}`);
    const h = res.headers;
    return JSON.stringify({
      status: res.status,
      ...Object.fromEntries(
        ["content-type", "content-length", "cache-control", "x-cache"].map((n) => [n, h.get(n)]),
      ),
      etag: /^"[^"]*"$/.test(h.get("etag") ?? ""),
      lastModified: h.has("last-modified"),
      body: Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", await res.bytes()))),
    });
  };
  const [want, got] = [await read(versitygw), await read(standIn)];
  if (got !== want) {
    throw new Error(`the keep-alive store's hit differs from versitygw's:\n${got}\n${want}`);
  }
}

async function memory(upstream: Proc): Promise<void> {
  const store = await startHelper("nullstore");
  const procs: Proc[] = [];
  const cs: Contender[] = [];
  const add = (name: string, p: Proc, settle = false) => {
    procs.push(p);
    cs.push({ name, port: p.port, pid: p.pid, settle });
  };
  // The access log on (the default) and off: with it on, an answer not stored (the budget used
  // up) is still read in JavaScript to be counted; with it off, only the stored ones are.
  for (const [from, suffix] of BASELINE ? [[root, ""], [BASELINE, " (baseline)"]] : [[root, ""]]) {
    const tag = suffix === "" ? "" : "-baseline";
    add(
      `proxy + null store${suffix}`,
      await startProxy(`proxy-memory${tag}`, upstream, store.port, {}, from),
      true,
    );
    add(
      `proxy + null store, ACCESS_LOG=false${suffix}`,
      await startProxy(`proxy-memory-nolog${tag}`, upstream, store.port, {
        ACCESS_LOG: "false",
      }, from),
      true,
    );
  }
  add(BARE, await startHelper("bare", upstream));
  add(BARE_JS, await startHelper("barejs", upstream));
  for (const p of procs) {
    for (let i = 0; i < 50; i++) await (await fetch(`http://127.0.0.1:${p.port}/health`)).text();
  }
  await sleep(500);
  const idle = new Map<string, number>();
  for (const c of cs) idle.set(c.name, (await statusKb(c.pid, "VmRSS")) / 1024);
  const r = await scenario(`${MEM_CONNS} × 1 MB misses`, cs, {
    connections: MEM_CONNS,
    unique: "/1m/{}.webp",
  });
  const growth = (name: string) => r.get(name)!.rssMb! - idle.get(name)!;
  for (const name of idle.keys()) {
    notes.push(
      `memory: ${name} idle ${idle.get(name)!.toFixed(0)} MB, peak ${
        r.get(name)!.rssMb!.toFixed(0)
      } MB, growth ${growth(name).toFixed(0)} MB`,
    );
  }
  const budgetMb = UPLOAD_MAX_BYTES_IN_FLIGHT / 1048576;
  for (const name of ["proxy + null store", "proxy + null store, ACCESS_LOG=false"]) {
    const limit = growth(BARE) + budgetMb;
    target(
      `${name}: RSS growth on the 1 MB flood ≤ ${BARE}'s + UPLOAD_MAX_BYTES_IN_FLIGHT: ${
        growth(name).toFixed(0)
      } MB against ${limit.toFixed(0)} MB`,
      growth(name) <= limit,
    );
    // The closest the runtime allows: the answers the proxy copies are read in JavaScript.
    const floor = growth(BARE_JS) + budgetMb;
    target(
      `${name}: RSS growth ≤ ${BARE_JS}'s + UPLOAD_MAX_BYTES_IN_FLIGHT: ${
        growth(name).toFixed(0)
      } MB against ${floor.toFixed(0)} MB`,
      growth(name) <= floor,
    );
  }
  await Promise.all([...procs.map((p) => p.stop()), store.stop()]);
}

/** What the proxy adds to a miss when nothing is stored: every path matches `CACHE_SKIP`. */
const NOTHING_STORED = { CACHE_SKIP: "^/" };
const PASS_ONLY = "proxy, nothing stored (CACHE_SKIP)";

/**
 * The contenders of a scenario whose every answer is stored, at the upstream's own pace: the
 * bare proxy (the runtime's floor), the proxy storing nothing, the proxy storing every answer
 * (this checkout's and the baseline's, each with a null store of its own).
 */
async function storedAtPace(
  tag: string,
  upstream: Proc,
  cs: Contender[],
): Promise<{ stop: () => Promise<unknown>; checks: { label: string; proc: Proc; store: Proc }[] }> {
  const started: Proc[] = [];
  const stores: Proc[] = [];
  const checks: { label: string; proc: Proc; store: Proc }[] = [];
  const bare = await startHelper("bare", upstream);
  started.push(bare);
  cs.push({ name: BARE, port: bare.port, pid: bare.pid });
  // Its store (one of its own) sees the bucket's check at start-up and nothing else.
  const passStore = await startHelper("nullstore");
  const pass = await startProxy(`proxy-${tag}-pass`, upstream, passStore.port, NOTHING_STORED);
  started.push(pass);
  stores.push(passStore);
  cs.push({ name: PASS_ONLY, port: pass.port, pid: pass.pid });
  for (const [from, suffix] of BASELINE ? [[root, ""], [BASELINE, " (baseline)"]] : [[root, ""]]) {
    const store = await startHelper("nullstore");
    const label = `proxy + null store${suffix}`;
    const proc = await startProxy(
      `proxy-${tag}${suffix === "" ? "" : "-baseline"}`,
      upstream,
      store.port,
      {},
      from,
    );
    started.push(proc);
    stores.push(store);
    cs.push({ name: label, port: proc.port, pid: proc.pid, settle: true });
    checks.push({ label, proc, store });
  }
  // Proxies first (they drain their uploads), then the stores.
  const stop = async () => {
    await Promise.all(started.map((p) => p.stop()));
    await Promise.all(stores.map((p) => p.stop()));
  };
  return { stop, checks };
}

/** Counts what each proxy stored after a scenario; true when nothing was skipped or failed. */
async function storedNotes(
  what: string,
  r: Map<string, Row>,
  checks: { label: string; proc: Proc; store: Proc }[],
): Promise<boolean> {
  let all = true;
  for (const { label, proc, store } of checks) {
    const lost = await uploadNote(label, proc, () => nullStoreCount(store), r, `${what}, `);
    if (label === "proxy + null store") all = lost === 0;
  }
  return all;
}

/**
 * Stops a proxy (it drains its uploads and writes the warnings it was still counting), then
 * notes what it stored, skipped and failed to store; returns skipped + failed. A skipped answer
 * is neither copied nor written, so when some were, the contender's CPU per request is below
 * what a stored miss costs: the note says by how much of the answers.
 */
async function uploadNote(
  label: string,
  proc: Proc,
  count: () => Promise<number>,
  r: Map<string, Row>,
  prefix = "",
): Promise<number> {
  await proc.stop();
  const stored = await settleCount(count);
  const skipped = await countLog(proc.name, "Upload skipped");
  const failed = await countLog(proc.name, "Upload failed");
  const share = skipped === 0
    ? ""
    : ` (${
      Math.round(100 * skipped / (stored + skipped + failed))
    }% of the answers not stored: this contender's CPU per request is below a stored miss's)`;
  notes.push(
    `${prefix}${label}: ${stored} objects stored (warm-up included) for ${
      r.get(label)!.requests
    } measured responses; skipped ${skipped}, failed ${failed}${share}`,
  );
  return skipped + failed;
}

/**
 * 30 KB misses from an upstream that takes 100 ms to answer: the proxy serves a few hundred
 * requests a second, as in front of real imgproxy, without imgproxy's CPU beside it.
 */
async function paced(upstream: Proc): Promise<void> {
  const cs: Contender[] = [];
  const { stop, checks } = await storedAtPace("paced", upstream, cs);
  const r = await scenario("miss and store 30 KB, upstream answering in 100 ms", cs, {
    connections: CONNS,
    unique: "/slow/100/{}.webp",
  });
  await storedNotes("paced misses", r, checks);
  await stop();
}

async function realImgproxy(): Promise<void> {
  const imgproxy = await startImgproxy(`${tmp}/imgproxy-sources`);
  const cs: Contender[] = [{ name: "imgproxy direct", port: imgproxy.port, pid: imgproxy.pid }];
  const { stop, checks } = await storedAtPace("imgproxy", imgproxy, cs);
  const unique = "/insecure/rs:fill:300:300/cb:{}/plain/local:///source.jpg@jpg";
  const r = await scenario("real imgproxy, 1600×1200 JPEG → 300×300", cs, {
    connections: CONNS,
    unique,
  });
  const all = await storedNotes("real imgproxy", r, checks);
  const direct = r.get("imgproxy direct")!.rps;
  const q = r.get("proxy + null store")!.rps / direct;
  target(
    `real imgproxy: proxied ${q.toFixed(2)}× direct throughput (≥ 0.95), every answer stored: ${
      all ? "yes" : "NO"
    }; in the same run ${BARE} ${ratio(r.get(BARE)!.rps, direct)}×, ${PASS_ONLY} ${
      ratio(r.get(PASS_ONLY)!.rps, direct)
    }×`,
    q >= 0.95 && all,
  );
  // With the CPUs saturated, direct × imgproxy's CPU per image / (imgproxy's + the proxy's)
  // bounds proxied throughput: the bare proxy's bound is the closest the runtime allows.
  const img = cpuUs(r.get("imgproxy direct")!);
  const bound = (name: string) => (img / (img + cpuUs(r.get(name)!))).toFixed(2);
  notes.push(
    `real imgproxy: imgproxy's CPU per image over imgproxy's and the proxy's together (the ` +
      `throughput bound once the CPUs are saturated): ${BARE} ${bound(BARE)}, ${PASS_ONLY} ${
        bound(PASS_ONLY)
      }, proxy + null store ${bound("proxy + null store")}`,
  );
  await stop();
  await imgproxy.stop();
}

async function main(): Promise<void> {
  console.error(`imgproxy-cache benchmark — temp dir ${tmp}`);
  console.error(
    `load: ${LOAD}; versitygw: ${VERSITYGW ?? "not installed"}; imgproxy: ${
      IMGPROXY ?? "not installed"
    }; nginx: ${NGINX ?? "off (BENCH_NGINX=1)"}`,
  );
  const loadBefore = (await output("cat", ["/proc/loadavg"])).split(" ")[0];
  const upstream = await startHelper("upstream");
  const nullStore = await startHelper("nullstore");
  const bare = await startHelper("bare", upstream);
  if (SCENARIOS.has("pass") || SCENARIOS.has("latency")) {
    await passThrough(upstream, nullStore, bare);
  }
  if (SCENARIOS.has("miss")) await missAndStore(upstream, bare);
  if (SCENARIOS.has("hit")) await hits(upstream, bare);
  await bare.stop();
  if (SCENARIOS.has("paced")) await paced(upstream);
  if (SCENARIOS.has("memory")) await memory(upstream);
  if (SCENARIOS.has("imgproxy") && IMGPROXY) await realImgproxy();
  const loadAfter = (await output("cat", ["/proc/loadavg"])).split(" ")[0];
  await report(loadBefore, loadAfter);
}

async function report(loadBefore?: string, loadAfter?: string): Promise<void> {
  const versions = [
    `deno ${Deno.version.deno}`,
    WRK ? (await output(WRK, ["-v"])).split("\n")[0]!.replace(/ Copyright.*/, "") : "no wrk",
    VERSITYGW
      ? "versitygw " + (await output(VERSITYGW, ["--version"])).split("\n")
        .filter((l) => /Version/.test(l)).map((l) => l.replace(/.*:\s*/, "")).join("")
      : "no versitygw",
    IMGPROXY ? (await output(IMGPROXY, ["version"])).split("\n")[0] : "no imgproxy",
    ...(NGINX ? [(await output(NGINX, ["-v"])).replace(/^nginx version: /, "")] : []),
  ];
  const lines = [
    "",
    `imgproxy-cache benchmark — ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`,
    `machine: ${navigator.hardwareConcurrency} CPUs, ${await readCpuModel()}; load average ${
      loadBefore ?? "?"
    } before, ${loadAfter ?? "?"} after (above the CPU count: shared, loaded: compare within a ` +
    `scenario, steer by CPU per request)`,
    `load: ${LOAD} (${THREADS} thread(s)); ${RUNS} runs × ${DURATION}s per contender, ` +
    `alternating; every figure the median over the runs (CPU per request and peak RSS taken ` +
    `run by run)` + (NGINX ? `; nginx ${NGINX_WORKERS} worker(s)` : "") +
    (Object.keys(PROXY_ENV).length > 0 ? `; proxy env ${JSON.stringify(PROXY_ENV)}` : ""),
    `versions: ${versions.join("; ")}`,
    "",
    "| scenario | contender | req/s | p50 | p99 | CPU µs / request | peak RSS MB |",
    "|---|---|---:|---:|---:|---:|---:|",
    ...rows.map((r) =>
      `| ${r.scenario} | ${r.contender}${r.errors ? ` (${r.errors} errors)` : ""} | ${
        r.rps.toFixed(0)
      } | ${fmtUs(r.p50Us).trim()} | ${fmtUs(r.p99Us).trim()} | ${cpuUs(r).toFixed(0)} | ${
        r.rssMb === null ? "n/a" : r.rssMb.toFixed(0)
      } |`
    ),
    "",
    "CPU is each contender's own process (its uploads included: each run waits for it to go",
    "idle); imgproxy direct is imgproxy's. The proxies run with their defaults (ACCESS_LOG on)",
    "unless named otherwise.",
    "",
    ...notes.map((n) => `- ${n}`),
    "",
    "Targets:",
    ...targets.map((t) => `- ${t}`),
  ];
  console.log(lines.join("\n"));
}

await runBench("benchmark", main, KEEP);
