/**
 * The bench's figures are what its report says they are: the median over the runs, CPU per
 * request and peak RSS included (one slow or bloated run moves none of them).
 */
import assert from "node:assert/strict";
import { type RunSample, summarize } from "../bench/summary.ts";

const run = (o: Partial<RunSample>): RunSample => ({
  rps: 1000,
  p50Us: 500,
  p99Us: 900,
  requests: 1000,
  errors: 0,
  cpuTicks: 30,
  peakRssKb: 100 * 1024,
  ...o,
});

Deno.test("bench summary: CPU per request is the median of each run's, not a pool the longest run dominates", () => {
  // 300 µs, 300 µs, then a run that served 10× the requests at 1000 µs each: pooled over all
  // runs that would be (30 + 30 + 1000) ticks / 12,000 requests = 883 µs.
  const s = summarize([
    run({ cpuTicks: 30 }),
    run({ cpuTicks: 30 }),
    run({ requests: 10_000, cpuTicks: 1000 }),
  ], 100);
  assert.equal(Math.round(s.cpuPer1k * 1000), 300);
  assert.equal(s.requests, 12_000);
});

Deno.test("bench summary: peak RSS is the median of each run's peak, not the highest", () => {
  const s = summarize([
    run({ peakRssKb: 200 * 1024 }),
    run({ peakRssKb: 900 * 1024 }),
    run({ peakRssKb: 210 * 1024 }),
  ], 100);
  assert.equal(s.rssMb, 210);
  assert.equal(summarize([run({ peakRssKb: null })], 100).rssMb, null);
});

Deno.test("bench summary: throughput and latency are medians; errors and requests are totals; a run that served nothing has no CPU per request", () => {
  const s = summarize([
    run({ rps: 10, p50Us: 1, p99Us: 5, errors: 2 }),
    run({ rps: 30, p50Us: 3, p99Us: 7, requests: 0, cpuTicks: 50 }),
    run({ rps: 20, p50Us: 2, p99Us: 6, errors: 1 }),
  ], 100);
  assert.deepEqual([s.rps, s.p50Us, s.p99Us, s.errors], [20, 2, 6, 3]);
  assert.equal(Math.round(s.cpuPer1k * 1000), 300);
});
