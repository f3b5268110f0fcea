/**
 * Per-key upload outcomes, as the uploader's `onSettled` hook reports them, for a caller that
 * waits for how the upload of one key ended (the warm-up waits on each path it requested).
 */
import { after } from "./timers.ts";
import type { UploadOutcome } from "./upload_types.ts";

interface Watch {
  outcomes: UploadOutcome[];
  wake: (() => void) | null;
}

/**
 * Per-key upload outcomes, as the uploader reports them: pass {@linkcode record} to `createApp`
 * as `onUploadSettled`, {@linkcode watch} a key before its request, then wait with
 * {@linkcode next}. Outcomes for keys nobody watches are dropped.
 */
export class UploadOutcomes {
  readonly #watched = new Map<string, Watch>();

  /** The uploader's `onSettled` hook. */
  readonly record = (key: string, outcome: UploadOutcome): void => {
    const w = this.#watched.get(key);
    if (w === undefined) return;
    w.outcomes.push(outcome);
    w.wake?.();
  };

  /** Starts collecting outcomes for `key` (call before the request). */
  watch(key: string): void {
    if (!this.#watched.has(key)) this.#watched.set(key, { outcomes: [], wake: null });
  }

  /** Stops watching `key` (a pending {@linkcode next} resolves with null). */
  unwatch(key: string): void {
    const w = this.#watched.get(key);
    this.#watched.delete(key);
    w?.wake?.();
  }

  /** The next outcome reported for `key`, or null when none arrives within `ms`. */
  next(key: string, ms: number): Promise<UploadOutcome | null> {
    const w = this.#watched.get(key);
    if (w === undefined) return Promise.resolve(null);
    const ready = w.outcomes.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve) => {
      const done = () => {
        cancel();
        if (w.wake === done) w.wake = null;
        resolve(w.outcomes.shift() ?? null);
      };
      // Ref'd: the warm run awaits the outcome.
      const cancel = after(ms, done, { ref: true });
      w.wake = done;
    });
  }
}
