/**
 * Process-level behaviour shared by the two entry points (`main.ts` for `deno run`, `serve.ts`
 * for `deno serve` and Deploy): what a stray rejection does, how shutdown signals count, and
 * which requests shutdown waits for where the runtime owns the listener.
 */
import type { Logger } from "./log.ts";

/**
 * Logs a promise rejection nobody handled instead of letting it end the process: a library
 * promise left unawaited (the AWS SDK has left such rejections behind under restricted
 * permissions) must not take the proxy down.
 */
export function logUnhandledRejections(logger: Logger): void {
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    logger.log("ERROR", "Unhandled rejection", { reason: String(e.reason?.stack ?? e.reason) });
  });
}

/** The exit status a shell reports for a process a signal ended: 128 + its number. */
export function signalExitCode(signal: Deno.Signal): number {
  return signal === "SIGINT" ? 130 : signal === "SIGTERM" ? 143 : 1;
}

/**
 * Calls `onFirst` at the first SIGINT or SIGTERM. A later one exits at once (130 or 143), but
 * only more than `debounceMs` after the first: `deno task` and terminals can deliver one
 * Ctrl-C twice. Returns the function that removes the listeners.
 */
export function onShutdownSignal(
  logger: Logger,
  onFirst: (signal: Deno.Signal) => void,
  debounceMs = 1000,
): () => void {
  let firstAt: number | null = null;
  const listeners: [Deno.Signal, () => void][] = [];
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const listener = () => {
      if (firstAt !== null) {
        if (performance.now() - firstAt < debounceMs) return;
        logger.log("WARN", "Second signal: exiting without waiting", { signal });
        Deno.exit(signalExitCode(signal));
      }
      // The monotonic clock: a wall-clock step must not turn one Ctrl-C into two.
      firstAt = performance.now();
      logger.log("INFO", "Shutting down", { signal });
      onFirst(signal);
    };
    try {
      Deno.addSignalListener(signal, listener);
      listeners.push([signal, listener]);
    } catch {
      // A platform without this signal (SIGTERM on Windows): nothing to listen for.
    }
  }
  return () => {
    for (const [s, l] of listeners) Deno.removeSignalListener(s, l);
  };
}

/**
 * Requests whose answer the runtime is not done with (their `completed` has not settled), for
 * the entry point whose listener the runtime owns (`deno serve`): shutdown waits for them.
 */
export class RequestsInFlight {
  #count = 0;
  #idle: (() => void)[] = [];

  get count(): number {
    return this.#count;
  }

  /**
   * Counts a request until `completed` settles. Call it before the handler: settling runs this
   * first, so whoever awaits {@linkcode idle} resumes after the handler's own reactions to it
   * (the access line).
   */
  track(completed: Promise<void>): void {
    this.#count++;
    const done = () => {
      if (--this.#count !== 0) return;
      const waiting = this.#idle;
      this.#idle = [];
      for (const resolve of waiting) resolve();
    };
    completed.then(done, done);
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    if (this.#count === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }
}
