/**
 * What a scenario's runs come to for one contender: the median of each figure over the runs.
 * CPU per request is taken run by run (the CPU a run used over the requests it served) and
 * peak RSS is each run's own high-water mark, so a single slow or bloated run moves neither.
 */

/** One measured run of one contender. */
export interface RunSample {
  rps: number;
  p50Us: number;
  p99Us: number;
  requests: number;
  /** Socket errors and non-2xx/3xx answers. */
  errors: number;
  /** CPU the contender's processes used during the run, in clock ticks. */
  cpuTicks: number;
  /** The contender's peak RSS during the run (kB); null when it could not be measured. */
  peakRssKb: number | null;
}

/** The median of `xs` (NaN for none). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** What a contender's runs come to. */
export interface Summary {
  rps: number;
  p50Us: number;
  p99Us: number;
  /** CPU ms per request (CPU seconds per thousand requests). */
  cpuPer1k: number;
  /** Median of the runs' peak RSS (MB); null when no run's could be measured. */
  rssMb: number | null;
  /** Over all runs. */
  requests: number;
  /** Over all runs. */
  errors: number;
}

/** Medians over `runs`; `clkTck`: clock ticks per second. */
export function summarize(runs: RunSample[], clkTck: number): Summary {
  const served = runs.filter((r) => r.requests > 0);
  const peaks = runs.flatMap((r) => r.peakRssKb === null ? [] : [r.peakRssKb / 1024]);
  return {
    rps: median(runs.map((r) => r.rps)),
    p50Us: median(runs.map((r) => r.p50Us)),
    p99Us: median(runs.map((r) => r.p99Us)),
    cpuPer1k: median(served.map((r) => r.cpuTicks / clkTck / r.requests * 1000)),
    rssMb: peaks.length === 0 ? null : median(peaks),
    requests: runs.reduce((a, r) => a + r.requests, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
  };
}
