/**
 * Request methods neither HTTP client can forward as the client sent them, and imgproxy's
 * answer to them.
 *
 * `fetch` refuses CONNECT, TRACE and TRACK, and upper-cases the six methods it normalises
 * (`get` goes out as `GET`); `node:http` upper-cases every method. (A method that is not a
 * token never gets here: the runtime answers 400 itself, as imgproxy does.) imgproxy routes GET, HEAD
 * and OPTIONS only, case-sensitively, and answers any other method 404 with a one-space
 * `text/plain` body (measured on 4.0.12: `get`, `TRACE`, `TRACK`, `post` alike), so the proxy
 * answers those methods itself, exactly so, instead of sending imgproxy another method or
 * reporting imgproxy unreachable.
 */

/** Methods `fetch` will not send at all. */
const FORBIDDEN = new Set(["CONNECT", "TRACE", "TRACK"]);

/**
 * True when the upstream clients send `method` to imgproxy exactly as given: upper case (the
 * clients upper-case the rest, and imgproxy routes only upper-case methods) and not forbidden.
 */
export function forwardable(method: string): boolean {
  if (method === "GET" || method === "HEAD") return true; // nearly every request
  return method === method.toUpperCase() && !FORBIDDEN.has(method);
}

/** What imgproxy answers a method it does not route. */
export function unroutedMethod(): Response {
  return new Response(" ", {
    status: 404,
    headers: { "content-type": "text/plain", "x-cache": "BYPASS; reason=method" },
  });
}
