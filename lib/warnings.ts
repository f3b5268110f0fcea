/**
 * Repeated warnings, aggregated: under load one cause can produce a warning per request (an
 * upload skipped for want of room, a store that stalls), and a line per event would flood the
 * log and cost more than the event itself.
 *
 * The first WARN or ERROR of a kind (its message, plus its `reason` field when it has one) in an
 * interval is written in full, at once; the repeats are only counted, and when the interval ends
 * one line says how many there were (`repeated=N intervalSec=10`). Exact numbers are in the
 * counters (metrics); the log shows that it happens, an example, and how often.
 */
import type { Fields, Level, Logger } from "./log.ts";
import { after } from "./timers.ts";

interface Repeats {
  level: Level;
  msg: string;
  reason: string | undefined;
  count: number;
}

/** A {@linkcode Logger} that aggregates repeated warnings and errors. */
export class AggregatingLogger implements Logger {
  readonly #inner: Logger;
  readonly #intervalMs: number;
  /** Kinds seen in the current interval, with the repeats not yet written. */
  readonly #seen = new Map<string, Repeats>();
  #cancelFlush: (() => void) | undefined;

  constructor(inner: Logger, intervalMs = 10_000) {
    this.#inner = inner;
    this.#intervalMs = intervalMs;
  }

  log(level: Level, msg: string, fields?: Fields): void {
    if (level !== "WARN" && level !== "ERROR") {
      this.#inner.log(level, msg, fields);
      return;
    }
    const reason = typeof fields?.reason === "string" && fields.reason.length <= 40
      ? fields.reason
      : undefined;
    const kind = reason === undefined ? `${level} ${msg}` : `${level} ${msg}\u0000${reason}`;
    const seen = this.#seen.get(kind);
    if (seen !== undefined) {
      seen.count++;
      return;
    }
    this.#seen.set(kind, { level, msg, reason, count: 0 });
    // One timer for the whole interval, only while something was logged in it; unref'd: a
    // pending summary alone keeps no process up (shutdown calls flush()).
    this.#cancelFlush ??= after(this.#intervalMs, () => {
      this.#cancelFlush = undefined;
      this.flush();
    }, { ref: false });
    this.#inner.log(level, msg, fields);
  }

  /** Writes the counts of the interval so far and starts a new one. */
  flush(): void {
    this.#cancelFlush?.();
    this.#cancelFlush = undefined;
    const seen = [...this.#seen.values()];
    this.#seen.clear();
    for (const r of seen) {
      if (r.count === 0) continue;
      this.#inner.log(r.level, r.msg, {
        reason: r.reason,
        repeated: r.count,
        intervalSec: this.#intervalMs / 1000,
      });
    }
  }
}
