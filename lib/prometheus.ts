/**
 * A small Prometheus registry: counters, gauges and histograms, rendered in the text exposition
 * format 0.0.4.
 *
 * Why not `npm:prom-client` (15.1.3, checked under Deno 2): it does run with no permissions as
 * long as its default process metrics are not collected, but importing it loads `node:cluster`
 * (its cluster aggregator), `node:http`/`node:https`/`node:zlib` (the Pushgateway client),
 * `node:fs` readers of `/proc` and `perf_hooks` (default metrics), plus `@opentelemetry/api`,
 * `tdigest` and `bintrees` (4 packages, about 3 MB) for three metric types, and its rendering
 * is asynchronous. This module does the part we use — counters, gauges, histograms, label
 * escaping — in a page of code, synchronously, with no dependency to fetch on a fresh machine.
 *
 * Format reference: https://prometheus.io/docs/instrumenting/exposition_formats/ (text 0.0.4).
 */

/** Label values of one series, by label name. */
export type Labels = Record<string, string>;

/** The `Content-Type` of the text exposition format. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** Escapes `# HELP` text: backslash and line feed. */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

/** Formats a sample value or bucket bound as Prometheus parses it (`+Inf`, `-Inf`, `NaN`). */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

function formatLabels(names: readonly string[], values: readonly string[], extra = ""): string {
  const parts = names.map((n, i) => `${n}="${escapeLabelValue(values[i]!)}"`);
  if (extra !== "") parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** What every metric family has. */
interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  /** Sample lines, without the trailing newline. */
  samples(): string[];
}

/** Options shared by all instruments. */
export interface MetricOptions {
  /** Label names every series must set, in the order they are rendered. */
  labelNames?: readonly string[];
}

/** Base of the labelled instruments: one series per distinct label set. */
abstract class Labelled<S> {
  readonly labelNames: readonly string[];
  /** Series by their joined label values, in creation order. */
  protected readonly series = new Map<string, { values: string[]; state: S }>();

  constructor(readonly name: string, readonly help: string, options: MetricOptions) {
    if (!METRIC_NAME.test(name)) throw new TypeError(`Invalid metric name ${JSON.stringify(name)}`);
    this.labelNames = [...(options.labelNames ?? [])];
    for (const l of this.labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith("__")) {
        throw new TypeError(`Invalid label name ${JSON.stringify(l)} for ${name}`);
      }
    }
    if (new Set(this.labelNames).size !== this.labelNames.length) {
      throw new TypeError(`Duplicate label name for ${name}`);
    }
  }

  protected abstract initial(): S;

  /** The state of the series for `labels`, created on first use. */
  protected state(labels: Labels = {}): S {
    const given = Object.keys(labels);
    for (const k of given) {
      if (!this.labelNames.includes(k)) {
        throw new TypeError(`Unknown label ${JSON.stringify(k)} for ${this.name}`);
      }
    }
    const values = this.labelNames.map((n) => {
      const v = labels[n];
      if (v === undefined) {
        throw new TypeError(`Missing label ${JSON.stringify(n)} for ${this.name}`);
      }
      return String(v);
    });
    // \u0000 cannot be confused with label text in practice; JSON keeps it unambiguous anyway.
    const id = JSON.stringify(values);
    let entry = this.series.get(id);
    if (entry === undefined) {
      entry = { values, state: this.initial() };
      this.series.set(id, entry);
    }
    return entry.state;
  }
}

/**
 * Base of the one-number instruments (counter, gauge): one value per series, optionally
 * refreshed by a `collect` callback at scrape time.
 */
abstract class Scalar<T extends Scalar<T>> extends Labelled<{ value: number }> {
  readonly #collect: ((m: T) => void) | undefined;

  constructor(
    name: string,
    help: string,
    options: MetricOptions & { collect?: (m: T) => void } = {},
  ) {
    super(name, help, options);
    this.#collect = options.collect;
  }

  protected initial() {
    return { value: 0 };
  }

  /** The current value of one series (0 when it does not exist). */
  get(labels: Labels = {}): number {
    return this.state(labels).value;
  }

  samples(): string[] {
    this.#collect?.(this as unknown as T);
    if (this.labelNames.length === 0) this.state();
    return [...this.series.values()].map(({ values, state }) =>
      `${this.name}${formatLabels(this.labelNames, values)} ${formatNumber(state.value)}`
    );
  }
}

/** A value that only goes up (or is mirrored from a counter kept elsewhere). */
export class Counter extends Scalar<Counter> implements Family {
  readonly type = "counter";

  /** Adds `value` (≥ 0) to the series for `labels`. */
  inc(labels: Labels = {}, value = 1): void {
    if (!(value >= 0)) throw new RangeError(`A counter cannot go down (${this.name}: ${value})`);
    this.state(labels).value += value;
  }

  /**
   * Sets the series to a total kept elsewhere (a `collect` callback mirroring, say, the
   * uploader's own counters). The caller guarantees the total never goes down.
   */
  setTotal(labels: Labels, value: number): void {
    this.state(labels).value = value;
  }

  /** Creates the series at 0 so it is exported before anything happens. */
  init(labels: Labels = {}): void {
    this.state(labels);
  }
}

/** A value that goes up and down; may be read at scrape time by a `collect` callback. */
export class Gauge extends Scalar<Gauge> implements Family {
  readonly type = "gauge";

  /** Sets the series for `labels`. */
  set(value: number, labels: Labels = {}): void {
    this.state(labels).value = value;
  }

  /** Adds `value` (may be negative) to the series for `labels`. */
  inc(labels: Labels = {}, value = 1): void {
    this.state(labels).value += value;
  }

  /** Subtracts `value` from the series for `labels`. */
  dec(labels: Labels = {}, value = 1): void {
    this.state(labels).value -= value;
  }
}

interface HistogramState {
  /** Observations per bucket (not cumulative; the last slot is above the largest bound). */
  counts: number[];
  sum: number;
  count: number;
}

/** Seconds buckets suited to HTTP latency (Prometheus client defaults, plus 30 s). */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Observations counted into buckets; rendered as cumulative `_bucket`, `_sum`, `_count`. */
export class Histogram extends Labelled<HistogramState> implements Family {
  readonly type = "histogram";
  readonly buckets: readonly number[];

  constructor(
    name: string,
    help: string,
    options: MetricOptions & { buckets?: readonly number[] } = {},
  ) {
    super(name, help, options);
    if (this.labelNames.includes("le")) throw new TypeError(`${name}: "le" is reserved`);
    const buckets = [...(options.buckets ?? LATENCY_BUCKETS)].filter((b) => b !== Infinity);
    if (buckets.length === 0) throw new TypeError(`${name}: at least one bucket is needed`);
    for (let i = 0; i < buckets.length; i++) {
      if (!Number.isFinite(buckets[i]!) || (i > 0 && buckets[i]! <= buckets[i - 1]!)) {
        throw new TypeError(`${name}: buckets must be finite and strictly increasing`);
      }
    }
    this.buckets = buckets;
  }

  protected initial(): HistogramState {
    return { counts: new Array(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  /** Records one observation. */
  observe(value: number, labels: Labels = {}): void {
    const s = this.state(labels);
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]!) i++;
    s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  /** Starts a timer; calling the result observes the elapsed seconds and returns them. */
  startTimer(labels: Labels = {}): (more?: Labels) => number {
    const start = performance.now();
    return (more = {}) => {
      const seconds = (performance.now() - start) / 1000;
      this.observe(seconds, { ...labels, ...more });
      return seconds;
    };
  }

  samples(): string[] {
    if (this.labelNames.length === 0) this.state();
    const lines: string[] = [];
    for (const { values, state } of this.series.values()) {
      let cumulative = 0;
      const bounds = [...this.buckets, Infinity];
      bounds.forEach((bound, i) => {
        cumulative += state.counts[i]!;
        const le = `le="${formatNumber(bound)}"`;
        lines.push(`${this.name}_bucket${formatLabels(this.labelNames, values, le)} ${cumulative}`);
      });
      const l = formatLabels(this.labelNames, values);
      lines.push(`${this.name}_sum${l} ${formatNumber(state.sum)}`);
      lines.push(`${this.name}_count${l} ${state.count}`);
    }
    return lines;
  }
}

/** A set of metric families rendered together. */
export class Registry {
  readonly #families = new Map<string, Family>();

  /** Adds an instrument; names must be unique. */
  register<T extends Family>(metric: T): T {
    if (this.#families.has(metric.name)) {
      throw new TypeError(`Metric ${metric.name} is already registered`);
    }
    this.#families.set(metric.name, metric);
    return metric;
  }

  counter(
    name: string,
    help: string,
    options?: MetricOptions & { collect?: (c: Counter) => void },
  ): Counter {
    return this.register(new Counter(name, help, options));
  }

  gauge(
    name: string,
    help: string,
    options?: MetricOptions & { collect?: (g: Gauge) => void },
  ): Gauge {
    return this.register(new Gauge(name, help, options));
  }

  histogram(
    name: string,
    help: string,
    options?: MetricOptions & { buckets?: readonly number[] },
  ): Histogram {
    return this.register(new Histogram(name, help, options));
  }

  /** The text exposition (format 0.0.4) of every family, in registration order. */
  render(): string {
    let out = "";
    for (const f of this.#families.values()) {
      out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
      for (const line of f.samples()) out += line + "\n";
    }
    return out;
  }
}
