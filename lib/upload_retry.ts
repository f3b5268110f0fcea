/**
 * The uploader's retry policy: how long to wait before the next attempt, and waits that
 * shutdown can cut short.
 */
import { after } from "./timers.ts";

/** The retry settings. */
export interface RetryPolicy {
  retries: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
}

/** Delay before retry `attempt` (0-based): full jitter over an exponential ceiling. */
export function backoff(policy: RetryPolicy, attempt: number, random: () => number): number {
  const ceiling = Math.min(policy.retryMaxDelayMs, policy.retryBaseDelayMs * 2 ** attempt);
  return Math.round(random() * ceiling);
}

/** Waits between attempts, all woken at once when `stop` aborts (shutdown's deadline). */
export class RetryWaits {
  readonly #wakes = new Set<() => void>();

  constructor(private readonly stop: AbortSignal) {}

  /** Resolves after `ms`, at once if stopped already, or when {@linkcode wakeAll} is called. */
  sleep(ms: number): Promise<void> {
    if (this.stop.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        cancel();
        this.#wakes.delete(done);
        resolve();
      };
      // Ref'd: a body waits in it to be stored, and shutdown's drain wakes it (wakeAll()).
      const cancel = after(ms, done, { ref: true });
      this.#wakes.add(done);
    });
  }

  /** Ends every wait under way. */
  wakeAll(): void {
    for (const wake of [...this.#wakes]) wake();
  }
}
