/**
 * A small closed-loop HTTP load generator, used by the benchmark when wrk is not installed.
 *
 * Usage: deno run --allow-net=127.0.0.1 bench/load.ts URL CONNECTIONS SECONDS [TEMPLATE RUN]
 * With TEMPLATE (a path with `{}`), each request goes to `URL-origin + TEMPLATE` with `{}`
 * replaced by `RUN-conn-n` (a unique path).
 * Prints one JSON line: { requests, errors, non2xx, seconds, rps, p50Us, p99Us }.
 */
const [url, connArg, secArg, template, run] = Deno.args;
if (url === undefined) {
  console.error("usage: load.ts URL CONNECTIONS SECONDS [TEMPLATE RUN]");
  Deno.exit(2);
}
const connections = Number(connArg ?? 32);
const seconds = Number(secArg ?? 5);
const origin = new URL(url).origin;
const latencies: number[] = [];
let errors = 0;
let non2xx = 0;
const start = performance.now();
const end = start + seconds * 1000;

async function loop(id: number): Promise<void> {
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: 1 });
  let n = 0;
  try {
    while (performance.now() < end) {
      n++;
      const target = template === undefined
        ? url!
        : origin + template.replace("{}", `${run}-${id}-${n}`);
      const t0 = performance.now();
      try {
        const res = await fetch(target, { client, signal: AbortSignal.timeout(30_000) });
        await res.arrayBuffer();
        if (res.status < 200 || res.status > 399) non2xx++;
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  } finally {
    client.close();
  }
}

await Promise.all(Array.from({ length: connections }, (_, i) => loop(i + 1)));
const elapsed = (performance.now() - start) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies.length === 0
    ? 0
    : latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! * 1000;
console.log(JSON.stringify({
  requests: latencies.length,
  errors,
  non2xx,
  seconds: elapsed,
  rps: latencies.length / elapsed,
  p50Us: pct(0.5),
  p99Us: pct(0.99),
}));
