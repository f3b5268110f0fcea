/**
 * A time limit on sending answers: a client that asks and then stops reading must not hold its
 * connection (and, for a pass-through, imgproxy's body) for ever.
 *
 * The runtime writes most bodies itself (bytes, files, fetched bodies) and tells JavaScript
 * nothing until the write has ended, so the rate a client reads at cannot be followed as it
 * goes (as Kestrel's `MinResponseDataRate` does). What can be bounded is the whole send: from
 * the moment an answer is handed to the runtime until it settles, a connection may take
 * `graceMs` plus the declared length of what it owes at `minBytesPerSec`. A big image for a
 * slow but real client gets the time its size needs; a socket that never reads is closed once
 * that time is up. An answer without a declared length adds nothing beyond the grace (the
 * proxy's own answers are small, imgproxy declares the length of its images). With
 * `minBytesPerSec` 0 every answer must be sent within the grace.
 *
 * A body held whole (bytes: a small hit, the proxy's own answers) settles as soon as the runtime
 * has taken it, before it is written: its connection then counts as idle, and the idle timeout
 * bounds it.
 *
 * One {@linkcode StallWatch} for all connections of a listener: handing an answer over costs
 * two clock reads and a look at its body (or, for a stream, its headers), no timer.
 */
import { bodyKind } from "./body_kind.ts";
import { declaredLength } from "./headers.ts";
import { StallWatch, type Watched } from "./timers.ts";

/** The limit, as configured. */
export interface SendLimitOptions {
  /** Time every answer gets, whatever its length. */
  graceMs: number;
  /** The slowest reading the length of an answer is given time for (0: none). */
  minBytesPerSec: number;
}

/** The send limits of one listener's connections. */
export class SendLimits {
  readonly #watch: StallWatch;
  readonly #msPerByte: number;

  constructor(readonly options: SendLimitOptions) {
    this.#watch = new StallWatch(options.graceMs);
    this.#msPerByte = options.minBytesPerSec > 0 ? 1000 / options.minBytesPerSec : 0;
  }

  /** The send deadline of one connection; `late` is called when it passes. */
  connection(late: (owedBytes: number) => void): ConnectionSend {
    return new ConnectionSend(this.#watch, this.#msPerByte, late);
  }
}

/**
 * One connection's send deadline. `since` is when the grace starts counting: the moment the
 * first unsettled answer was handed over, pushed later by the time the bytes owed may take.
 */
export class ConnectionSend implements Watched {
  since = -1;
  /** Declared bytes of the answers not yet settled (for the message). */
  #owed = 0;
  readonly #watch: StallWatch;
  readonly #msPerByte: number;
  readonly #late: (owedBytes: number) => void;

  constructor(watch: StallWatch, msPerByte: number, late: (owedBytes: number) => void) {
    this.#watch = watch;
    this.#msPerByte = msPerByte;
    this.#late = late;
  }

  /**
   * An answer was handed to the runtime. Several unsettled at once (HTTP/2) share one deadline,
   * each adding the time its length may take: more requests never buy time for nothing.
   */
  handedOver(req: Request, res: Response): void {
    // Never `res.body`: reading it turns a body held whole into a stream the runtime then
    // sends chunked, through JavaScript. A length declared where no body goes only adds time.
    const bytes = req.method === "HEAD" ? 0 : owedBytes(res);
    this.#owed += bytes;
    const extra = bytes * this.#msPerByte;
    this.since = (this.since < 0 ? performance.now() : this.since) + extra;
    this.#watch.watch(this);
  }

  /** Every answer handed over has settled: no deadline until the next. */
  idle(): void {
    this.since = -1;
    this.#owed = 0;
  }

  /** The connection is closing or closed. */
  close(): void {
    this.#watch.unwatch(this);
  }

  stall(): void {
    this.#late(this.#owed);
  }
}

/**
 * The bytes an answer owes: a body held whole, its length; any other, its declared length, when
 * it is one a deadline can add. A whole body's headers are not read: the runtime prepares such
 * an answer for sending when it is built, and reading `res.headers` makes it throw that away
 * and prepare it again (about 10 µs of a 30 KB hit's CPU).
 */
function owedBytes(res: Response): number {
  const held = bodyKind(res);
  if (held.kind === "whole" && held.length !== null) return held.length;
  const n = declaredLength(res.headers) ?? 0;
  return Number.isSafeInteger(n) ? n : 0;
}
