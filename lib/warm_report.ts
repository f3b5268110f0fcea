/**
 * What a warm run prints: the tally, a progress bar on a terminal or periodic progress lines
 * otherwise ({@linkcode Reporter}), and the final summary.
 */
import { every } from "./timers.ts";
import type { WarmCounts } from "./warm_run.ts";

/** `40 stored, 3 already present, 2 failed`. */
export function tally(c: WarmCounts): string {
  return `${c.stored} stored, ${c.present} already present, ${c.failed} failed`;
}

/** A one-line progress bar (without control characters). */
export function progressBar(c: WarmCounts, width = 30): string {
  const ratio = c.total === 0 ? 1 : c.done / c.total;
  const full = Math.round(ratio * width);
  const pct = String(Math.floor(ratio * 100)).padStart(3);
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${pct}% ${c.done}/${c.total} ` +
    `(${tally(c)})`;
}

/** The final lines: counts, then each failure reason with its count (most frequent first). */
export function formatSummary(c: WarmCounts, seconds: number): string {
  const head = c.interrupted
    ? `Warm-up interrupted after ${c.done} of ${c.total} paths`
    : `Warm-up finished: ${c.total} paths`;
  let out = `${head} in ${seconds.toFixed(1)} s: ${tally(c)}`;
  if (c.duplicates > 0) out += `; ${c.duplicates} duplicate lines skipped`;
  if (c.excluded > 0) out += `; ${c.excluded} lines skipped by CACHE_ONLY/CACHE_SKIP`;
  out += "\n";
  const reasons = [...c.reasons].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  for (const [reason, n] of reasons) out += `  failed ${n} × ${reason}\n`;
  if (c.interrupted) out += "Run the same command again to continue: stored paths are skipped.\n";
  return out;
}

/** Where a run writes. */
export interface WarmOutput {
  /** Progress and the summary. */
  stdout: (text: string) => void;
  /** Failures and warnings. */
  stderr: (text: string) => void;
  /** True on a terminal: a redrawn progress bar instead of summary lines. */
  isTerminal: boolean;
}

const CLEAR = "\r\x1b[2K";

/** Progress output: a bar on a terminal, periodic summary lines otherwise. */
export class Reporter {
  #shown = false;
  #lastDraw = -Infinity;
  #lastLineDone = 0;
  #stopLines: (() => void) | undefined;

  constructor(
    readonly out: WarmOutput,
    readonly counts: WarmCounts,
    /** Non-terminal: a line every `every` paths … */
    readonly every: number,
    /** … or every `intervalMs`, whichever comes first. */
    readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.out.isTerminal) this.#draw(true);
    // Unref'd: the run's own work keeps the command up; progress lines alone must not.
    else if (this.intervalMs > 0) {
      this.#stopLines = every(this.intervalMs, () => this.#line(), { ref: false });
    }
  }

  /** After each path. */
  update(): void {
    if (this.out.isTerminal) this.#draw(false);
    else if (this.counts.done - this.#lastLineDone >= this.every) this.#line();
  }

  /** Prints a message line without garbling the bar. */
  message(text: string): void {
    if (this.out.isTerminal && this.#shown) this.out.stdout(CLEAR);
    this.out.stderr(text + "\n");
    if (this.out.isTerminal && this.#shown) this.#draw(true);
  }

  /** Removes the bar (leaving its final state) and stops the timer. */
  stop(): void {
    this.#stopLines?.();
    this.#stopLines = undefined;
    if (this.out.isTerminal && this.#shown) {
      this.#draw(true);
      this.out.stdout("\n");
      this.#shown = false;
    }
  }

  #draw(force: boolean): void {
    // The monotonic clock: a wall-clock step back must not freeze the bar.
    const now = performance.now();
    if (!force && now - this.#lastDraw < 100 && this.counts.done < this.counts.total) return;
    this.#lastDraw = now;
    this.#shown = true;
    this.out.stdout(CLEAR + progressBar(this.counts));
  }

  #line(): void {
    if (this.counts.done === this.#lastLineDone && this.counts.done > 0) return;
    this.#lastLineDone = this.counts.done;
    const c = this.counts;
    this.out.stdout(`progress ${c.done}/${c.total}: ${tally(c)}\n`);
  }
}
