/**
 * The timer mechanisms, shared by every per-request and per-connection deadline (a few timers
 * for many waits, never one timer per request) and by shutdown's one deadline.
 */

/**
 * Calls back after a fixed delay, for many requests at once: deadlines are grouped into slots
 * of `slotMs`, with one timer per slot instead of one per request. A callback runs at most
 * `slotMs` late, never early. Timers are unref'd: a pending deadline alone keeps no process up.
 */
export class Deadlines {
  readonly #delayMs: number;
  readonly #slotMs: number;
  readonly #slots = new Map<number, Set<() => void>>();

  constructor(delayMs: number, slotMs = 10) {
    this.#delayMs = delayMs;
    this.#slotMs = slotMs;
  }

  /** Calls `fn` once the delay has passed; returns the function that cancels it. */
  add(fn: () => void): () => void {
    // The monotonic clock, like the timers: a wall-clock step must not fire a deadline early.
    const slot = Math.ceil((performance.now() + this.#delayMs) / this.#slotMs);
    let calls = this.#slots.get(slot);
    if (calls === undefined) {
      const due = new Set<() => void>();
      // Left armed when its calls are cancelled: at most one timer per slot, however many
      // requests come and go.
      setTimeout(() => {
        this.#slots.delete(slot);
        for (const call of due) call();
      }, Math.max(0, slot * this.#slotMs - performance.now())).unref();
      this.#slots.set(slot, calls = due);
    }
    calls.add(fn);
    return () => void calls.delete(fn);
  }
}

/** Something that may wait too long: waiting since when (performance.now()), or -1 when not. */
export interface Watched {
  since: number;
  stall(): void;
}

/**
 * Finds things (streams, idle connections) that have waited longer than `limitMs`: one timer for all of
 * them, checking a few times per limit (so a stall is seen at most `checkMs` late), and
 * nothing allocated per chunk. The timer runs only while something is watched.
 */
export class StallWatch {
  readonly #watched = new Set<Watched>();
  readonly #checkMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly limitMs: number) {
    this.#checkMs = Math.max(10, Math.min(1000, Math.floor(limitMs / 4)));
  }

  watch(w: Watched): void {
    this.#watched.add(w);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#check(), this.#checkMs);
      Deno.unrefTimer(this.#timer);
    }
  }

  unwatch(w: Watched): void {
    this.#watched.delete(w);
    if (this.#watched.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #check(): void {
    const now = performance.now();
    for (const w of this.#watched) {
      if (w.since >= 0 && now - w.since >= this.limitMs) {
        this.unwatch(w);
        w.stall();
      }
    }
  }
}

/**
 * One deadline for several steps taken in turn (shutdown): each step gets what is left of it,
 * on the monotonic clock. Unlike {@linkcode Deadlines} (many waits, unref'd timers left armed),
 * its one wait at a time keeps the process up until the deadline and leaves no timer behind:
 * work the process waits on need not hold the event loop itself.
 */
export class Deadline {
  readonly #at: number;

  constructor(ms: number) {
    this.#at = performance.now() + ms;
  }

  /** What is left (0 once the deadline has passed). */
  get remainingMs(): number {
    return Math.max(0, this.#at - performance.now());
  }

  /**
   * Waits for `work` until the deadline: true when it settled first, false when the deadline
   * came first (the work goes on). Rejects when `work` does, before the deadline.
   */
  within(work: Promise<unknown>): Promise<boolean> {
    return new Promise((resolve, reject) => {
      // Never early: a timer that fires a little before the deadline waits out the rest.
      const wait = () => {
        const left = this.remainingMs;
        if (left === 0) resolve(false);
        else timer = setTimeout(wait, Math.ceil(left));
      };
      let timer = setTimeout(wait, Math.ceil(this.remainingMs));
      work.then(() => {
        clearTimeout(timer);
        resolve(true);
      }, (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }
}
