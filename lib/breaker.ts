/**
 * A circuit breaker for the store: after `failures` failures in a row (errors that may pass,
 * and calls with no answer in time), calls are not made for `coolDownMs`; then one call is let
 * through as a probe, whose outcome closes the breaker or opens it for another cool-down.
 *
 * No timer: the state is worked out from the clock when asked. The opening and the closing are
 * logged once each; failed probes in between are not (the store is still down, as logged).
 */
import type { Logger } from "./log.ts";

/** `closed`: calls go through; `open`: none do; `half-open`: one probe may. */
export type BreakerState = "closed" | "open" | "half-open";

/** The breaker's settings. */
export interface BreakerOptions {
  /** Which calls it guards, for the log: "lookups" or "uploads". */
  name: string;
  /** Failures in a row that open it (0: never opens). */
  failures: number;
  /** How long it stays open before a probe. */
  coolDownMs: number;
  /** Injected for tests: the clock (ms). */
  now?: () => number;
}

/** Guards calls to the store; see the module comment. */
export class Breaker {
  readonly #options: BreakerOptions;
  readonly #logger: Logger;
  readonly #now: () => number;
  #failures = 0;
  /** When it opened (or re-opened after a failed probe); null while closed. */
  #openedAt: number | null = null;
  /** When the probe in flight was let through; null when none is. */
  #probeAt: number | null = null;
  /** Calls not made because it was open. */
  skipped = 0;

  constructor(options: BreakerOptions, logger: Logger) {
    this.#options = options;
    this.#logger = logger;
    this.#now = options.now ?? (() => performance.now());
  }

  /** The state now (a cool-down that has passed makes an open breaker half-open). */
  get state(): BreakerState {
    if (this.#openedAt === null) return "closed";
    return this.#now() - this.#openedAt < this.#options.coolDownMs ? "open" : "half-open";
  }

  /** True while calls are refused without a probe being possible (the cool-down). */
  isOpen(): boolean {
    return this.state === "open";
  }

  /**
   * Asks to make one call: true when it may go (closed, or the probe of a half-open breaker),
   * false when it must not (counted in {@linkcode skipped}). A call let through must be
   * followed by {@linkcode success} or {@linkcode failure}.
   */
  allow(): boolean {
    const state = this.state;
    if (state === "closed") return true;
    // A probe that never reported (its caller was cancelled) does not block the next one.
    if (
      state === "half-open" &&
      (this.#probeAt === null || this.#now() - this.#probeAt >= this.#options.coolDownMs)
    ) {
      this.#probeAt = this.#now();
      return true;
    }
    this.skipped++;
    return false;
  }

  /** The store answered (found, not found, or refused: it is up). */
  success(): void {
    this.#failures = 0;
    if (this.#openedAt === null) return;
    this.#openedAt = null;
    this.#probeAt = null;
    this.#logger.log("INFO", "Store answers again: breaker closed", { calls: this.#options.name });
  }

  /** The call failed in a way that says the store is unwell (an error that may pass, a timeout). */
  failure(reason: string): void {
    if (this.#options.failures === 0) return;
    if (this.#openedAt !== null) {
      // A failed probe (or a call let through before the breaker opened): another cool-down.
      if (this.state === "half-open") this.#openedAt = this.#now();
      this.#probeAt = null;
      return;
    }
    if (++this.#failures < this.#options.failures) return;
    this.#openedAt = this.#now();
    this.#logger.log("WARN", "Store failing: breaker open, calls skipped during the cool-down", {
      calls: this.#options.name,
      failures: this.#failures,
      coolDownSec: this.#options.coolDownMs / 1000,
      reason,
    });
  }
}

/**
 * Whether a failed store call says the store is unwell: no answer in time, or an error that may
 * pass (network, 5xx, throttling). An error the store answered with (403, a missing bucket)
 * shows it is up: that is for the logs and the start-up check, not for the breaker.
 */
export function isOutage(err: unknown, timedOut: boolean): boolean {
  if (timedOut) return true;
  const retryable = (err as { retryable?: unknown })?.retryable;
  return typeof retryable === "boolean" ? retryable : true;
}
