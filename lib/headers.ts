/**
 * Header rules for a reverse proxy, in both directions.
 */

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones proxies still meet): they describe
 * one connection, so a proxy never forwards them. Headers named in `Connection` are dropped too.
 */
export const HOP_BY_HOP = [
  "connection",
  "proxy-connection", // non-standard, still sent by some clients
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
] as const;

/** An HTTP field name (RFC 9110 §5.1 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Client-sent forwarding headers that are replaced, never trusted. */
const FORWARDING = ["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];

/** Deletes hop-by-hop headers and every header that `Connection` names, in place. */
export function removeHopByHop(headers: Headers): Headers {
  const connection = headers.get("connection");
  if (connection !== null) {
    for (const name of connection.split(",")) {
      const n = name.trim();
      // Only valid field names can be headers; anything else names nothing to remove.
      if (TOKEN.test(n)) headers.delete(n);
    }
  }
  for (const name of HOP_BY_HOP) headers.delete(name);
  return headers;
}

/** What the proxy knows about the client connection. */
export interface ClientInfo {
  /** The client's IP address, when known. */
  ip?: string;
  /** The Host header the client sent, when any. */
  host?: string | null;
  /** "http" or "https": how the client reached the proxy. */
  proto: string;
}

/**
 * Builds the headers sent upstream: the client's, less hop-by-hop ones, with the
 * `X-Forwarded-*` set from what the proxy itself saw and `Host` left to the HTTP client.
 */
export function upstreamRequestHeaders(incoming: Headers, client: ClientInfo): Headers {
  const headers = removeHopByHop(new Headers(incoming));
  for (const name of FORWARDING) headers.delete(name);
  headers.delete("host");
  if (client.ip !== undefined) headers.set("x-forwarded-for", client.ip);
  headers.set("x-forwarded-proto", client.proto);
  if (client.host) headers.set("x-forwarded-host", client.host);
  return headers;
}

/** Builds the headers sent back to the client: upstream's, less hop-by-hop ones. */
export function clientResponseHeaders(upstream: Headers): Headers {
  return removeHopByHop(new Headers(upstream));
}
