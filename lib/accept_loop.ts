/**
 * A listener's accept loop: takes connections while there is room, waits for a slot (or has one
 * made) at the connection cap, and rides out accept errors that more descriptors or memory can
 * fix, pausing the way Go's net/http does; any other accept error ends it with a
 * {@linkcode ListenError}. What becomes of each connection is the caller's (lib/server.ts).
 */
import type { Logger } from "./log.ts";
import { sleep } from "./timers.ts";
import { ListenError, reasonOf, transientAcceptError } from "./accept_errors.ts";

const MAX_ACCEPT_PAUSE_MS = 1000;

export interface AcceptLoopOptions {
  listener: Deno.Listener;
  /** The variable that names the address, and the address, for messages. */
  variable: string;
  address: string;
  logger: Logger;
  maxConnections: number;
  /** Connections open now. */
  open(): number;
  /**
   * At the cap: closes an idle connection and returns 0, or returns how long until one may be
   * closed (Infinity: every connection is busy).
   */
  evictIdle(): number;
  /** A connection was accepted. */
  serve(conn: Deno.Conn): void;
  /** Counts accept errors retried. */
  stats: { acceptErrors: number };
}

/** A running accept loop. */
export interface AcceptLoop {
  /** Settles when the loop ends: resolves after {@linkcode stop}, rejects with a ListenError. */
  readonly done: Promise<void>;
  /** A connection ended: a loop waiting for a slot or pausing looks again. */
  wake(): void;
  /** Ends the loop (the caller closes the listener, which ends a pending accept). */
  stop(): void;
}

export function acceptLoop(options: AcceptLoopOptions): AcceptLoop {
  const { listener, logger, address, stats } = options;
  let stopping = false;
  let slotFreed: (() => void) | null = null;
  const wake = () => {
    const w = slotFreed;
    slotFreed = null;
    w?.();
  };

  const waitForSlot = () => new Promise<void>((resolve) => (slotFreed = resolve));

  let pause = 0;
  /** Waits `ms`, or less when a connection ends or stop() is called (both wake the loop). */
  const pauseFor = async (ms: number): Promise<void> => {
    const woken = new AbortController();
    slotFreed = () => woken.abort();
    // Ref'd: no accept is pending meanwhile, and the loop must come back to accept.
    await sleep(ms, { ref: true, signal: woken.signal });
    slotFreed = null;
  };

  const run = async (): Promise<void> => {
    while (!stopping) {
      if (options.open() >= options.maxConnections) {
        const wait = options.evictIdle();
        // An evicted connection wakes the loop when it is gone, as does any that ends.
        await (wait === 0 || wait === Infinity ? waitForSlot() : pauseFor(Math.ceil(wait)));
        continue;
      }
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (stopping) return;
        if (!transientAcceptError(err)) throw new ListenError(options.variable, address, err);
        stats.acceptErrors++;
        if (pause === 0) {
          logger.log("WARN", "Cannot accept connections, retrying", {
            address,
            reason: reasonOf(err),
            open: options.open(),
          });
        }
        // Go's net/http pauses the same way: 5 ms, doubling up to a second.
        pause = Math.min(MAX_ACCEPT_PAUSE_MS, pause === 0 ? 5 : pause * 2);
        await pauseFor(pause);
        continue;
      }
      if (pause !== 0) {
        logger.log("INFO", "Accepting connections again", {
          address,
          failedAccepts: stats.acceptErrors,
        });
        pause = 0;
      }
      options.serve(conn);
    }
  };

  const done = run();
  return {
    done,
    wake,
    stop() {
      stopping = true;
      wake();
    },
  };
}
