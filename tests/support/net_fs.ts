/** Small helpers the test suites and the e2e harness share. */

/** A loopback port free a moment ago: bound, noted, closed (nothing listens on it after). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Runs `fn` with a new temporary directory (named with `prefix`), removed after. */
export async function withTempDir(
  prefix: string,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** True when something exists at `path` (a dangling link included). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** How the peer ended a connection read to its end. */
export type Ending =
  /** It closed the connection (end of stream). */
  | "eof"
  /** It reset the connection. */
  | "reset"
  /** It left the connection open until the guard closed it. */
  | "open";

/**
 * Reads `conn` until the peer closes it; after `ms` (a generous guard, so a broken server fails
 * the test instead of hanging it) closes it ourselves. Always closes `conn`. `text` is every byte
 * read, one character per byte; `closed` is true when the peer ended it (`eof` or `reset`).
 */
export async function readUntilClosed(
  conn: Deno.Conn,
  ms = 15_000,
): Promise<{ text: string; received: number; ending: Ending; closed: boolean }> {
  const decoder = new TextDecoder("latin1");
  let text = "";
  let received = 0;
  let ending: Ending = "open";
  const guard = setTimeout(() => conn.close(), ms);
  const buf = new Uint8Array(65536);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) {
        ending = "eof";
        break;
      }
      received += n;
      text += decoder.decode(buf.subarray(0, n));
    }
  } catch (err) {
    // Our own guard's close ends the read with one of these; anything else is the peer's reset.
    if (!(err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted)) {
      ending = "reset";
    }
  } finally {
    clearTimeout(guard);
    try {
      conn.close();
    } catch {
      // closed by the guard
    }
  }
  return { text, received, ending, closed: ending !== "open" };
}

/** A loopback TCP server that hands each connection to a handler of its own. */
export interface RawServer {
  port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Stops accepting and closes every connection it accepted. */
  close(): Promise<void>;
}

/**
 * Listens on a free loopback port and runs `handle` on each connection it accepts (not awaited:
 * a handler may stall for ever); close() ends them all.
 */
export function serveRaw(handle: (conn: Deno.Conn) => Promise<void>): RawServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      handle(conn).catch(() => {});
    }
  })();
  return {
    port: listener.addr.port,
    get connections() {
      return conns.length;
    },
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await accepting.catch(() => {});
    },
  };
}
