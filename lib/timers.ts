/**
 * The timer mechanisms: every wait in the program goes through this module. Per-request and
 * per-connection deadlines share a few timers ({@linkcode Deadlines}, {@linkcode StallWatch}:
 * never one timer per request), shutdown has one monotonic {@linkcode Deadline}, and the few
 * other waits (back-offs, retries, flushes, progress, time limits on requests) use
 * {@linkcode after}, {@linkcode sleep}, {@linkcode every} and {@linkcode timeLimit}, each
 * saying whether it keeps the process alive; {@linkcode afterTurn} defers work to the end of
 * the event loop's turn; {@linkcode withDeadline} stops waiting for work once a signal aborts.
 */
import { setImmediate } from "node:timers";

/**
 * Whether a wait keeps the process alive. Every caller decides, with a one-line why:
 * `ref: true` when something awaits its end (a request, shutdown, a command's run: the wait
 * must fire even if nothing else holds the event loop); `ref: false` for background
 * bookkeeping that alone must not keep a finished process up. An awaited unref'd wait with
 * nothing else pending ends the program with Deno's "event loop has already resolved" error.
 */
export interface WaitOptions {
  ref: boolean;
}

/** Calls `fn` once after `ms`; returns the function that cancels it (any number of times). */
export function after(ms: number, fn: () => void, options: WaitOptions): () => void {
  const timer = setTimeout(fn, Math.max(0, ms));
  if (!options.ref) Deno.unrefTimer(timer);
  return () => clearTimeout(timer);
}

/**
 * Waits `ms`; resolves true when the time has passed, false as soon as `signal` aborts (at once
 * when it already has), the timer cleared either way. Never rejects.
 */
export function sleep(
  ms: number,
  options: WaitOptions & { signal?: AbortSignal },
): Promise<boolean> {
  const { signal } = options;
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const end = (elapsed: boolean) => {
      cancel();
      signal?.removeEventListener("abort", woken);
      resolve(elapsed);
    };
    const woken = () => end(false);
    const cancel = after(ms, () => end(true), options);
    signal?.addEventListener("abort", woken, { once: true });
  });
}

/**
 * Calls `fn` once the current turn of the event loop has run its callbacks: the I/O completions
 * that arrived together and everything they set off (Node's `setImmediate`, the "check" phase).
 * Keeps the process alive until it has run, as pending output should.
 */
export function afterTurn(fn: () => void): void {
  setImmediate(fn);
}

/** Calls `fn` every `ms` until the returned function is called (any number of times). */
export function every(ms: number, fn: () => void, options: WaitOptions): () => void {
  const timer = setInterval(fn, Math.max(1, ms));
  if (!options.ref) Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}

/**
 * Calls back after a fixed delay, for many requests at once: deadlines are grouped into slots
 * of `slotMs`, and one timer at a time waits for the earliest slot that still has a call back
 * (never one per request, nor one per slot: in Deno 2.9 each pending timer of its own duration
 * makes the next `setTimeout` dearer, 85 µs a call measured inside the proxy with a 30 s
 * delay's three thousand slots pending). A callback runs at most `slotMs` late, never early.
 * The timer is unref'd: a pending deadline alone keeps no process up.
 */
export class Deadlines {
  readonly #delayMs: number;
  readonly #slotMs: number;
  /**
   * Slots with calls back pending, by number, in the order they were added, which is the order
   * they fall due (the delay is fixed and the clock monotonic). A slot whose calls are all
   * cancelled is dropped, unless the timer waits for it.
   */
  readonly #slots = new Map<number, Set<() => void>>();
  /** The slot the timer waits for; null when no timer is pending. */
  #armed: number | null = null;
  #firing = false;

  constructor(delayMs: number, slotMs = 10) {
    this.#delayMs = delayMs;
    this.#slotMs = slotMs;
  }

  /** Calls `fn` once the delay has passed; returns the function that cancels it. */
  add(fn: () => void): () => void {
    // The monotonic clock, like the timers: a wall-clock step must not fire a deadline early.
    const slot = Math.ceil((performance.now() + this.#delayMs) / this.#slotMs);
    let calls = this.#slots.get(slot);
    if (calls === undefined) this.#slots.set(slot, calls = new Set());
    calls.add(fn);
    if (this.#armed === null && !this.#firing) this.#arm(slot);
    return () => {
      calls.delete(fn);
      if (calls.size === 0 && slot !== this.#armed && this.#slots.get(slot) === calls) {
        this.#slots.delete(slot);
      }
    };
  }

  #arm(slot: number): void {
    this.#armed = slot;
    // Unref'd: a pending deadline alone keeps no process up (its request's socket does).
    after(slot * this.#slotMs - performance.now(), () => this.#fire(), { ref: false });
  }

  #fire(): void {
    this.#armed = null;
    this.#firing = true;
    try {
      const now = performance.now();
      for (const [slot, calls] of this.#slots) {
        if (slot * this.#slotMs > now) break;
        this.#slots.delete(slot);
        for (const call of calls) call();
      }
    } finally {
      this.#firing = false;
    }
    // The earliest slot left with a call back (emptied ones go as they are met).
    for (const [slot, calls] of this.#slots) {
      if (calls.size > 0) return this.#arm(slot);
      this.#slots.delete(slot);
    }
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
  #stop: (() => void) | undefined;

  constructor(readonly limitMs: number) {
    this.#checkMs = Math.max(10, Math.min(1000, Math.floor(limitMs / 4)));
  }

  watch(w: Watched): void {
    this.#watched.add(w);
    // Unref'd: what is watched (a stream, a connection) holds the process up, not the watch.
    this.#stop ??= every(this.#checkMs, () => this.#check(), { ref: false });
  }

  unwatch(w: Watched): void {
    this.#watched.delete(w);
    if (this.#watched.size === 0 && this.#stop !== undefined) {
      this.#stop();
      this.#stop = undefined;
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
      // Ref'd: shutdown awaits it, and the work it waits on need not hold the event loop.
      const wait = () => {
        const left = this.remainingMs;
        if (left === 0) resolve(false);
        else cancel = after(Math.ceil(left), wait, { ref: true });
      };
      let cancel = after(Math.ceil(this.remainingMs), wait, { ref: true });
      work.then(() => {
        cancel();
        resolve(true);
      }, (err) => {
        cancel();
        reject(err);
      });
    });
  }
}

/** A time limit on one piece of work: see {@linkcode timeLimit}. */
export interface TimeLimit {
  /** Aborts when the limit passes (a "TimeoutError") or the caller's signal aborts. */
  readonly signal: AbortSignal;
  /** True when the limit, not the caller's signal, aborted it. */
  readonly timedOut: boolean;
  /** The work has ended: cancels the timer and stops following the caller's signal. */
  clear(): void;
}

/**
 * A signal for work that may take at most `ms`: it aborts with a "TimeoutError" DOMException
 * saying `message` when the time passes, or with the reason of `options.signal` when that aborts
 * first. Unlike `AbortSignal.timeout()`, its timer is gone as soon as {@linkcode TimeLimit.clear}
 * is called.
 */
export function timeLimit(
  ms: number,
  message: string,
  options: WaitOptions & { signal?: AbortSignal },
): TimeLimit {
  const controller = new AbortController();
  const outer = options.signal;
  let timedOut = false;
  const follow = () => {
    cancel();
    controller.abort(outer?.reason);
  };
  const cancel = after(ms, () => {
    timedOut = true;
    controller.abort(new DOMException(message, "TimeoutError"));
  }, options);
  if (outer?.aborted) follow();
  else outer?.addEventListener("abort", follow, { once: true });
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    clear() {
      cancel();
      outer?.removeEventListener("abort", follow);
    },
  };
}

/**
 * Settles with `work`, or rejects with the signal's reason once it aborts, whichever comes first
 * (work that ignores the signal, like a read from a stalled local disk, must not hold its caller).
 * A result that arrives too late (or once the signal has already aborted) goes to `onLate`.
 */
export function withDeadline<T>(
  work: Promise<T>,
  signal: AbortSignal,
  onLate?: (value: T) => unknown,
): Promise<T> {
  if (signal.aborted) {
    // Already too late: the work's result still goes to onLate, and its failure is no one's.
    work.then((value) => onLate?.(value), () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then((value) => {
      signal.removeEventListener("abort", onAbort);
      if (signal.aborted) onLate?.(value);
      else resolve(value);
    }, (err) => {
      signal.removeEventListener("abort", onAbort);
      reject(err);
    });
  });
}
