/**
 * A store that is hung: a real TCP server that accepts connections, reads the requests and
 * never answers (a wedged gateway), with an S3 store pointed at it.
 */
import type { S3Store } from "../../lib/store/s3.ts";
import { s3StoreAt } from "./s3.ts";

/** The hung server and a store using it. */
export interface HungStore {
  store: S3Store;
  /** Connections accepted so far (each never answered). */
  readonly connections: number;
  close(): Promise<void>;
}

/** Starts a server that never answers and an S3 store pointed at it. */
export function startHungStore(): HungStore {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      (async () => {
        const buf = new Uint8Array(65536);
        try {
          while ((await conn.read(buf)) !== null) { /* never answer */ }
        } catch { /* closed */ }
      })();
    }
  })();
  const store = s3StoreAt(`http://127.0.0.1:${listener.addr.port}`, "b", true);
  return {
    store,
    get connections() {
      return conns.length;
    },
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await accepting.catch(() => {});
      store.client.destroy();
    },
  };
}
