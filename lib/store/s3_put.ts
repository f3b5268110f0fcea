/**
 * PutObject of up to {@linkcode OWN_PUT_MAX} bytes over HTTP/1.1 connections of the store's own
 * ({@linkcode Http1Origin}), TLS for an https endpoint, instead of `fetch`: a stored miss's
 * largest cost in the runtime (docs/performance.md). PutObject goes over `fetch` still when
 * `fetch` would send it through a proxy named in the environment (lib/store/env_proxy.ts), and
 * from the first time `fetch` reaches the store where these connections could not be opened
 * (lib/store/s3_request.ts).
 */
import { STATUS_CODES } from "node:http";
import type { S3Address } from "./s3_request.ts";
import { type Connect, Http1Origin, ONE_WRITE_MAX } from "./http1.ts";
import { type EnvGet, proxiedByEnv } from "./env_proxy.ts";

/** Room left for a signed PutObject's head (about 1 KB) in one write. */
const HEAD_ROOM = 4096;

/**
 * The largest body sent on the store's own connections, in one write with its head; a larger
 * one goes over `fetch`. Measured cheaper from 30 KB to 200 KB in the proxy and alone; a flood of
 * 1 MB misses cost the proxy more CPU per request this way in one run (docs/performance.md).
 */
export const OWN_PUT_MAX = ONE_WRITE_MAX - HEAD_ROOM;

/** Whether `body` is sent on the store's own connections. */
export function ownPut(body: Uint8Array): boolean {
  return body.byteLength <= OWN_PUT_MAX;
}

/** The most of an answer's body read: S3's error documents are a few hundred bytes. */
const ANSWER_BODY_MAX = 65536;

/** The environment as the program may read it; a variable it may not read counts as set. */
function denoEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return "(unreadable)";
  }
}

/**
 * The connections PutObject uses for `address`, or null when it goes over `fetch`. `connect`
 * replaces how they are opened (tests route them to a local socket).
 */
export function s3PutOrigin(
  address: S3Address,
  connect?: Connect,
  env: EnvGet = denoEnv,
): Http1Origin | null {
  if (connect !== undefined) return new Http1Origin(connect);
  const u = new URL(address.origin);
  if (proxiedByEnv(u, env)) return null;
  const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  if (u.protocol === "https:") {
    const port = Number(u.port || 443);
    // The runtime's trust store, as fetch's: its roots, plus DENO_CERT or --cert.
    return new Http1Origin(async () => {
      const conn = await Deno.connectTls({ hostname, port });
      try {
        // Now, so a certificate the runtime does not trust fails the connection, by name.
        await conn.handshake();
      } catch (err) {
        conn.close();
        throw err;
      }
      return conn;
    });
  }
  const port = Number(u.port || 80);
  return new Http1Origin(async () => {
    const conn = await Deno.connect({ hostname, port });
    // A body too large to leave with its head is a second write: no wait for the first's ACK.
    conn.setNoDelay(true);
    return conn;
  });
}

/**
 * Sends a signed PutObject (`headers` as signed, with host and content-length); the answer as a
 * `Response`, its status text the standard one, as `fetch` gives it.
 */
export async function sendPut(
  origin: Http1Origin,
  target: string,
  headers: Record<string, string>,
  body: Uint8Array,
  signal?: AbortSignal,
): Promise<Response> {
  const a = await origin.request("PUT", target, headers, body, ANSWER_BODY_MAX, signal);
  if (a.status < 200 || a.status > 599) throw new Error(`unexpected answer: HTTP ${a.status}`);
  const nullBody = a.body.byteLength === 0 || a.status === 204 || a.status === 304;
  return new Response(nullBody ? null : a.body as Uint8Array<ArrayBuffer>, {
    status: a.status,
    statusText: STATUS_CODES[a.status] ?? "",
    headers: a.headers,
  });
}
