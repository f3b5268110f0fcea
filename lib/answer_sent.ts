/**
 * Whether an answer's body was written to the client in full, told by the connection it went
 * out on: the proxy's listener accepts connections itself, so it sees what the runtime does with
 * each one after an answer.
 *
 * Deno 2.9's HTTP/1.1 server resolves an answer's `completed` once it stops writing the body,
 * whether it wrote all of it or the write failed (the client reset the connection: the failure is
 * not passed on), and the request's signal aborts only when the client closed its side cleanly
 * mid-body. For a body the runtime streams natively (a fetched body, a file) JavaScript sees no
 * byte of it, so nothing else tells the two apart. The connection does: after an answer written
 * in full the runtime goes on to read the next request on it; after a failed write, or a body
 * that failed, the connection ends at once with that error. So, once `completed` has resolved,
 * the answer was written in full when:
 *
 * - a later request arrived on the connection (the runtime reads the next request only once the
 *   answer before it is written);
 * - the connection ended without an error;
 * - the connection is still open {@linkcode SETTLE_MS} later. The error of a failed write ends
 *   the connection within the same turn of the runtime's event loop, well under a millisecond
 *   after `completed` (measured on Deno 2.9.6); the wait only bounds how long a line may be held
 *   for a client that keeps its connection open and sends nothing more;
 *
 * and it was not when the connection ended with an error before any of these: `aborted` for the
 * client's side of the connection failing (reset, broken pipe), `error` for anything else (the
 * body itself failed mid-way).
 */
import type { BodyEnd } from "./context.ts";
import type { Deadlines } from "./timers.ts";

/** What schedules the settling wait: a {@linkcode Deadlines} of {@linkcode SETTLE_MS}. */
export type SettleTimer = Pick<Deadlines, "add">;

/** How long after `completed` an answer on a connection still open counts as written in full. */
export const SETTLE_MS = 1000;

/** Connection errors that mean the client's side went away, not that the body failed. */
const CLIENT_GONE = /\b(?:BrokenPipe|ConnectionReset|ConnectionAborted|NotConnected)\b/;

/** How an answer ended, from how its connection ended (`null`: without an error). */
export function endOf(connectionError: unknown): BodyEnd {
  if (connectionError === null) return "complete";
  const e = connectionError as { name?: string; message?: string };
  return CLIENT_GONE.test(`${e?.name ?? ""} ${e?.message ?? ""}`) ? "aborted" : "error";
}

const nothing = () => {};

interface Waiting {
  index: number;
  fn: (end: BodyEnd) => void;
  cancel: () => void;
}

/** The answers of one connection, in the order their requests arrived. */
export class ConnectionAnswers {
  #dispatched = 0;
  /** Set once the connection has ended: how an answer still unsettled then ended. */
  #ended: BodyEnd | null = null;
  #waiting: Waiting[] = [];
  readonly #settle: SettleTimer;

  /** `settle`: deadlines of {@linkcode SETTLE_MS}, shared by every connection of a listener. */
  constructor(settle: SettleTimer) {
    this.#settle = settle;
  }

  /** A request arrived: every answer before it was written in full. Returns its answer. */
  next(): AnswerSent {
    const index = this.#dispatched++;
    if (this.#waiting.length > 0) this.#release(index, "complete");
    return new AnswerSent(this, index);
  }

  /** The connection ended, with an error or not (`null`). */
  ended(error: unknown): void {
    if (this.#ended !== null) return;
    this.#ended = endOf(error);
    this.#release(Infinity, this.#ended);
  }

  /** @internal {@linkcode AnswerSent.known} */
  known(index: number, fn: (end: BodyEnd) => void): void {
    if (index < this.#dispatched - 1) return fn("complete");
    if (this.#ended !== null) return fn(this.#ended);
    const w: Waiting = { index, fn, cancel: nothing };
    w.cancel = this.#settle.add(() => {
      this.#waiting = this.#waiting.filter((x) => x !== w);
      fn("complete");
    });
    this.#waiting.push(w);
  }

  #release(before: number, end: BodyEnd): void {
    const waiting = this.#waiting;
    if (waiting.length === 1) {
      // One connection, one answer at a time (HTTP/1.1): nothing to sort out.
      const w = waiting[0]!;
      if (w.index >= before) return;
      waiting.pop();
      w.cancel();
      w.fn(end);
      return;
    }
    const done = waiting.filter((w) => w.index < before);
    if (done.length === 0) return;
    this.#waiting = this.#waiting.filter((w) => w.index >= before);
    for (const w of done) {
      w.cancel();
      w.fn(end);
    }
  }
}

/** One answer on a connection of the proxy's listener. */
export class AnswerSent {
  readonly #conn: ConnectionAnswers;
  readonly #index: number;

  constructor(conn: ConnectionAnswers, index: number) {
    this.#conn = conn;
    this.#index = index;
  }

  /**
   * Calls `fn` once the connection shows how the answer's body ended; to be asked once its
   * `completed` has resolved (and the request's signal has not aborted).
   */
  known(fn: (end: BodyEnd) => void): void {
    this.#conn.known(this.#index, fn);
  }
}
