/**
 * The HTTP listener: accepts connections itself and hands each one to the runtime's HTTP
 * server, so it can bound what `Deno.serve` leaves unbounded.
 *
 * `Deno.serve` (2.9) has no request-header timeout, no idle keep-alive timeout and no cap on
 * connections, and its accept loop ends for good on the first accept error (EMFILE when
 * descriptors run out), leaving a process that refuses every connection. Here:
 *
 * - a connection that has not delivered a complete request head within `headerTimeoutMs` of
 *   being accepted is closed (slowloris, idle sockets);
 * - a connection with no request in flight for `idleTimeoutMs` is closed. The runtime says
 *   when a request's head is complete, not when its first byte arrives, so this also bounds
 *   how long the head of a later request may take on a kept-alive connection;
 * - a connection whose answer is not sent within `sendTimeoutMs` plus its declared length at
 *   `minSendBytesPerSec` is closed (a client that stops reading: lib/send_limit.ts);
 * - at most `maxConnections` are open: at the cap the oldest connection with no request in
 *   flight (for a quarter of a second at least) is closed to make room, and when every one is
 *   busy accepting waits for a slot;
 * - an accept error that more descriptors or memory can fix (EMFILE, ENFILE, ENOBUFS, ENOMEM,
 *   a connection reset before it was accepted) is retried with a growing pause; any other ends
 *   the server with a {@linkcode ListenError}, which the caller turns into a non-zero exit
 *   (lib/accept_loop.ts);
 * - while shutting down, every answer carries `Connection: close`, so a client never sends
 *   another request on a connection that is about to close; a connection is handed to the
 *   runtime's graceful shutdown once it has no answer in flight (until then the send limit may
 *   still cut it: the runtime cannot abort a connection it is shutting down).
 *
 * Each connection is served by the runtime's own HTTP/1.1 server (`serveHttpOnConnection`,
 * the function `Deno.serve` itself is built on): parsing, bodies and writes cost what they
 * cost with `Deno.serve`.
 */
import { bindHostPort } from "./config_types.ts";
import type { Logger } from "./log.ts";
import { Deadlines, StallWatch, type Watched } from "./timers.ts";
import { type AnswerSent, ConnectionAnswers, SETTLE_MS } from "./answer_sent.ts";
import { ListenError } from "./accept_errors.ts";
import { acceptLoop } from "./accept_loop.ts";
import { serveOnConnection } from "./serve_connection.ts";
import { type ConnectionSend, SendLimits } from "./send_limit.ts";

/** Limits of one listener. */
export interface ServerOptions {
  /** The variable that names the address, for messages (`IMGPROXY_BIND`, `METRICS_BIND`). */
  variable: string;
  hostname: string;
  port: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  /** Time every answer gets to be sent, whatever its length. */
  sendTimeoutMs: number;
  /** The slowest reading a declared length is given time for (0: none). */
  minSendBytesPerSec: number;
  logger: Logger;
}

/**
 * A handler in `Deno.serve` shape; the listener also says how each answer's body ended, from
 * what became of its connection (`sent`).
 */
export type ServeHandler = (
  req: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  sent?: AnswerSent,
) => Response | Promise<Response>;

/** Counters of one listener (also exported as metrics). */
export interface ServerStats {
  /** Connections open now. */
  open: number;
  accepted: number;
  /** Closed for not delivering a request head in time. */
  headerTimeouts: number;
  /** Closed after `idleTimeoutMs` without a request. */
  idleTimeouts: number;
  /** Closed for not taking an answer within its send limit. */
  sendTimeouts: number;
  /** Idle connections closed to make room at the cap. */
  evicted: number;
  /** Accept errors retried (descriptors or memory ran out). */
  acceptErrors: number;
  /**
   * Ended before any request reached the handler, not closed by a timeout or to make room: the
   * client sent none, or the runtime refused what it sent (it answers a malformed or oversized
   * request head 400 itself and ends the connection without an error, so the two look alike).
   */
  withoutRequest: number;
}

export { ListenError };

/** A running listener. */
export interface Server {
  readonly addr: Deno.NetAddr;
  readonly stats: Readonly<ServerStats>;
  /**
   * Settles when the server stops: resolves once {@linkcode Server.shutdown} has run, rejects
   * with a {@linkcode ListenError} when the listener fails.
   */
  readonly finished: Promise<void>;
  /**
   * Stops accepting, closes idle connections, lets requests in flight finish (their answers
   * carry `Connection: close`) and resolves when every connection is closed and every answer
   * is done with (its access line written).
   */
  shutdown(): Promise<void>;
  /**
   * Cuts every connection with an answer still in flight, as if its client had left (the
   * shutdown deadline has passed): each request ends, and its access line is written.
   */
  cutInFlight(): void;
}

/** One accepted connection. */
interface Connection extends Watched {
  /** Requests whose answer is not yet fully sent. */
  active: number;
  /** Requests seen (0: still waiting for the first head). */
  requests: number;
  abort: AbortController;
  answers: ConnectionAnswers;
  send: ConnectionSend;
  server: { finished: Promise<void>; shutdown(): Promise<void> } | null;
  closing: boolean;
  /**
   * The runtime is shutting it down: aborting it now fails inside the runtime (Deno 2.9: an
   * uncaught BadResource), so no timeout may cut it. Asked only once no answer is in flight.
   */
  released: boolean;
}

/** At the cap, a connection without a request for this long may be closed to make room. */
const EVICT_AFTER_MS = 250;

/**
 * Listens on `options.hostname:options.port` and serves `handler`. Throws a
 * {@linkcode ListenError} when the address cannot be listened on (taken, not on this host,
 * not permitted).
 */
export function listen(options: ServerOptions, handler: ServeHandler): Server {
  const address = bindHostPort(options);
  const serveConn = serveOnConnection();
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: options.hostname, port: options.port });
  } catch (err) {
    throw new ListenError(options.variable, address, err);
  }
  const { logger } = options;
  const stats: ServerStats = {
    open: 0,
    accepted: 0,
    headerTimeouts: 0,
    idleTimeouts: 0,
    sendTimeouts: 0,
    evicted: 0,
    acceptErrors: 0,
    withoutRequest: 0,
  };
  const conns = new Set<Connection>();
  const headerWatch = new StallWatch(options.headerTimeoutMs);
  const idleWatch = new StallWatch(options.idleTimeoutMs);
  const sendLimits = new SendLimits({
    graceMs: options.sendTimeoutMs,
    minBytesPerSec: options.minSendBytesPerSec,
  });
  const settle = new Deadlines(SETTLE_MS);
  let draining = false;
  /** Requests whose answer is not yet done with, on every connection. */
  let inFlight = 0;
  let noneInFlight: (() => void) | null = null;

  /** No timeout may act on `c` any more (it is closing). */
  const unwatch = (c: Connection) => {
    c.closing = true;
    headerWatch.unwatch(c);
    idleWatch.unwatch(c);
    c.send.close();
  };

  const cut = (c: Connection) => {
    if (c.closing || c.released) return;
    unwatch(c);
    c.abort.abort();
  };

  /**
   * Cuts `c` while an answer is in flight. The runtime ends a connection closed this way
   * without an error: the answer was not taken, whatever that end says.
   */
  const abandon = (c: Connection, why: string) => {
    if (c.closing || c.released) return;
    c.answers.ended(new Deno.errors.ConnectionAborted(why));
    cut(c);
  };

  /** Lets the runtime close `c` gracefully (shutting down; `c` has no answer in flight). */
  const release = (c: Connection) => {
    if (c.released) return;
    c.released = true;
    c.server?.shutdown().catch(() => {});
  };

  const markClose = (res: Response): Response => {
    if (!draining) return res;
    try {
      res.headers.set("connection", "close");
      return res;
    } catch {
      // Immutable headers (a fetched or redirect Response): copy them.
      const headers = new Headers(res.headers);
      headers.set("connection", "close");
      return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
    }
  };

  // Also told of a response body that failed mid-way (whoever failed it has logged why): one
  // line, no stack.
  const onError = (err: unknown): Response => {
    logger.log("ERROR", "Request failed", { reason: String(err) });
    return new Response("Internal Server Error\n", {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  };

  const serve = (conn: Deno.Conn) => {
    stats.accepted++;
    stats.open++;
    const c: Connection = {
      since: performance.now(),
      active: 0,
      requests: 0,
      abort: new AbortController(),
      answers: new ConnectionAnswers(settle),
      send: sendLimits.connection((owedBytes) => {
        if (c.closing || c.released) return;
        stats.sendTimeouts++;
        logger.log("WARN", "Client did not take its answer in time, connection closed", {
          client: (conn.remoteAddr as Deno.NetAddr).hostname,
          owedBytes,
          graceSec: options.sendTimeoutMs / 1000,
          minSendBytesPerSec: options.minSendBytesPerSec,
        });
        abandon(c, "answer not taken in time");
      }),
      server: null,
      closing: false,
      released: false,
      stall() {
        if (c.requests === 0) stats.headerTimeouts++;
        else stats.idleTimeouts++;
        cut(c);
      },
    };
    const settled = () => {
      // Runs before the access log's own wait on `completed` (registered first), so whoever
      // awaits `noneInFlight` resumes after the line is written.
      if (--inFlight === 0) noneInFlight?.();
      if (--c.active !== 0) return;
      c.since = performance.now();
      c.send.idle();
      if (draining) release(c);
    };
    const onRequest: ServeHandler = (req, info) => {
      if (c.requests++ === 0) {
        headerWatch.unwatch(c);
        if (!c.closing) idleWatch.watch(c);
      }
      c.active++;
      inFlight++;
      c.since = -1;
      info.completed.then(settled, settled);
      const handOver = (res: Response): Response => {
        c.send.handedOver(req, res);
        return markClose(res);
      };
      const res = handler(req, info, c.answers.next());
      return res instanceof Response ? handOver(res) : res.then(handOver);
    };
    conns.add(c);
    headerWatch.watch(c);
    try {
      c.server = serveConn(conn, c.abort.signal, onRequest, onError, () => {});
    } catch (err) {
      // The runtime refused the connection (it closed at once): nothing to serve.
      try {
        conn.close();
      } catch {
        // already closed
      }
      c.server = { finished: Promise.reject(err), shutdown: () => Promise.resolve() };
    }
    c.server.finished.then(() => c.answers.ended(null), (err) => c.answers.ended(err)).finally(
      () => {
        if (c.requests === 0 && !c.closing) stats.withoutRequest++;
        unwatch(c);
        conns.delete(c);
        stats.open--;
        accepting.wake();
      },
    );
  };

  /**
   * Closes the oldest connection with no request in flight for at least `EVICT_AFTER_MS` (one
   * just accepted may not have sent its head yet); returns 0 when it did, else how long until
   * one qualifies (Infinity: every connection is busy).
   */
  const evictIdle = (): number => {
    const now = performance.now();
    let soonest = Infinity;
    for (const c of conns) {
      if (c.closing || c.since < 0) continue;
      const idleMs = now - c.since;
      if (idleMs >= EVICT_AFTER_MS) {
        stats.evicted++;
        cut(c);
        return 0;
      }
      soonest = Math.min(soonest, EVICT_AFTER_MS - idleMs);
    }
    return soonest;
  };

  const accepting = acceptLoop({
    listener,
    variable: options.variable,
    address,
    logger,
    maxConnections: options.maxConnections,
    open: () => conns.size,
    evictIdle,
    serve,
    stats,
  });
  const loop = accepting.done;
  const addr = listener.addr as Deno.NetAddr;
  let shutdownPromise: Promise<void> | null = null;
  const finished = loop.then(
    () => shutdownPromise ?? undefined,
    (err) => {
      // The listener failed: stop everything, then report.
      accepting.stop();
      try {
        listener.close();
      } catch {
        // already closed
      }
      for (const c of conns) cut(c);
      throw err;
    },
  );
  // The caller may race `finished` against other events: no unhandled rejection in between.
  finished.catch(() => {});

  return {
    addr,
    stats,
    finished,
    shutdown() {
      shutdownPromise ??= (async () => {
        accepting.stop();
        draining = true;
        try {
          listener.close();
        } catch {
          // already closed
        }
        await loop.catch(() => {});
        await Promise.all(
          [...conns].map(async (c) => {
            // One with an answer in flight is released once it settles: until then the
            // send limit may still cut it.
            if (c.active === 0) release(c);
            await c.server?.finished.catch(() => {});
          }),
        );
        if (inFlight > 0) await new Promise<void>((resolve) => (noneInFlight = resolve));
      })();
      return shutdownPromise;
    },
    cutInFlight() {
      for (const c of conns) if (c.active > 0) abandon(c, "cut at the shutdown deadline");
    },
  };
}
