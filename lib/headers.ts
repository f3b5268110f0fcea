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

/** The (lowercase) header names a `Connection` header lists; null when there is none. */
function namedByConnection(headers: Headers): Set<string> | null {
  const connection = headers.get("connection");
  if (connection === null) return null;
  const named = new Set<string>();
  for (const name of connection.split(",")) {
    const n = name.trim();
    // Only valid field names can be headers; anything else names nothing to remove.
    if (TOKEN.test(n)) named.add(n.toLowerCase());
  }
  return named;
}

/** Deletes hop-by-hop headers and every header that `Connection` names, in place. */
export function removeHopByHop(headers: Headers): Headers {
  for (const name of namedByConnection(headers) ?? []) headers.delete(name);
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
 * Hop-by-hop headers plus the client's forwarding headers, `Host`, and `Accept-Encoding`
 * (replaced: see {@linkcode upstreamRequestHeaders}).
 */
const NOT_FORWARDED = new Set<string>([...HOP_BY_HOP, ...FORWARDING, "host", "accept-encoding"]);
const HOP_BY_HOP_SET = new Set<string>(HOP_BY_HOP);

/**
 * Copies `from` less the names in `drop` and those its `Connection` header names, in one pass
 * (the same result as copying, then {@linkcode removeHopByHop} and deletes, at less cost).
 */
function copyWithout(from: Headers, drop: Set<string>): Headers {
  const named = namedByConnection(from);
  const out = new Headers();
  // Yields what iteration yields (lowercase names, each Set-Cookie apart), as a copy would;
  // forEach, not for…of: Deno's header iterator costs about four times as much per request.
  from.forEach((v, k) => {
    if (!drop.has(k) && (named === null || !named.has(k))) out.append(k, v);
  });
  return out;
}

/** Looks headers up by lowercase name: a `Headers`, or {@linkcode ForwardHeaders}. */
export interface HeaderLookup {
  get(name: string): string | null;
  has(name: string): boolean;
}

/**
 * The headers sent to imgproxy, as name/value pairs in the order `fetch` sends them: lowercase
 * names, sorted, the values of a repeated name joined (each Set-Cookie apart), exactly what
 * iterating a `Headers` of them yields. Handed to `fetch` as pairs: given a `Headers`, `fetch`
 * iterates it (sorting and joining again) and converts each entry through the generic iterable
 * path, which costs two to three times as much per request. Looked up by lowercase name (the
 * coalescing key, admission): a linear scan, cheaper than a `Headers` look-up for the dozen
 * headers a request carries.
 */
export class ForwardHeaders implements HeaderLookup {
  constructor(readonly pairs: [string, string][]) {}

  /** The value of `name` (lowercase); null when absent (a repeated Set-Cookie: the first). */
  get(name: string): string | null {
    for (const [k, v] of this.pairs) if (k === name) return v;
    return null;
  }

  has(name: string): boolean {
    return this.get(name) !== null;
  }

  [Symbol.iterator](): Iterator<[string, string]> {
    return this.pairs[Symbol.iterator]();
  }
}

/**
 * Builds the headers sent upstream (all that imgproxy receives): the client's, less hop-by-hop
 * ones, with the `X-Forwarded-*` set from what the proxy itself saw, `Host` left to the HTTP
 * client, and `Accept-Encoding: identity`.
 *
 * Identity, whatever the client accepts: `fetch` decodes some codings itself (exactly `gzip` or
 * `br`) unless the request's Accept-Encoding is exactly `identity`, and says nowhere that it
 * did; and it asks for `gzip,br` on its own when the client named nothing. Asked for identity,
 * nothing between imgproxy and the proxy should encode (imgproxy itself never does; its `raw`
 * streams pass the header on to the source), so what arrives is the image itself; whatever
 * arrives encoded anyway passes through untouched and labelled, and admission never stores it.
 * Identity is acceptable to every client.
 */
export function upstreamRequestHeaders(incoming: Headers, client: ClientInfo): ForwardHeaders {
  // The proxy's own, in name order: merged into the client's (which come sorted) where they
  // sort, as a `Headers` would iterate them. None of these names is kept from the client.
  const own: [string, string][] = [["accept-encoding", "identity"]];
  if (client.ip !== undefined) own.push(["x-forwarded-for", client.ip]);
  if (client.host) own.push(["x-forwarded-host", client.host]);
  own.push(["x-forwarded-proto", client.proto]);
  const named = namedByConnection(incoming);
  const pairs: [string, string][] = [];
  let next = 0;
  // forEach, not for…of: Deno's header iterator costs about four times as much per request.
  incoming.forEach((v, k) => {
    if (NOT_FORWARDED.has(k) || (named !== null && named.has(k))) return;
    while (next < own.length && own[next]![0] < k) pairs.push(own[next++]!);
    pairs.push([k, v]);
  });
  while (next < own.length) pairs.push(own[next++]!);
  return new ForwardHeaders(pairs);
}

/** Builds the headers sent back to the client: upstream's, less hop-by-hop ones. */
export function clientResponseHeaders(upstream: Headers): Headers {
  return copyWithout(upstream, HOP_BY_HOP_SET);
}

/** The length a `Content-Length` declares: digits only (a list or a sign is no length), else null. */
export function declaredLength(headers: Headers): number | null {
  const value = headers.get("content-length")?.trim();
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : null;
}
