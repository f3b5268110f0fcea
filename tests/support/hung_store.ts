/**
 * A store that is hung: a real TCP server that accepts connections, reads the requests and
 * never answers (a wedged gateway), with an S3 store pointed at it.
 */
import type { S3Store } from "../../lib/store/s3.ts";
import { serveRaw } from "./net_fs.ts";
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
  const server = serveRaw(async (conn) => {
    const buf = new Uint8Array(65536);
    try {
      while ((await conn.read(buf)) !== null) { /* never answer */ }
    } catch { /* closed */ }
  });
  const store = s3StoreAt(`http://127.0.0.1:${server.port}`, "b", true);
  return {
    store,
    get connections() {
      return server.connections;
    },
    async close() {
      await server.close();
      store.client.destroy();
    },
  };
}
