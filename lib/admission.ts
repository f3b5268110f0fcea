/**
 * Admission: is an answer from imgproxy safe to store, and if not, why not. Pure and
 * table-tested; the proxy asks it once the response headers are in.
 */
import { answerVariant } from "./negotiation.ts";
import { maxAgeOf } from "./config.ts";
import { declaredLength, type HeaderLookup } from "./headers.ts";

/** Why an answer is not stored (also the `X-Cache: BYPASS` reason and a metrics label). */
export type BypassReason =
  | "method"
  | "status"
  | "content-type"
  | "content-encoding"
  | "cache-control"
  | "set-cookie"
  | "cookie"
  | "authorization"
  | "vary"
  | "fallback-image"
  | "too-large"
  | "rule"; // CACHE_ONLY / CACHE_SKIP left the path out (decided before admission)

/** The verdict for one answer. */
export type Admission =
  | { store: true; variant: string; contentLength: number | null }
  | { store: false; reason: BypassReason };

/** The settings admission depends on. */
export interface AdmissionRules {
  cacheVariants: "off" | "accept";
  fallbackMaxAge: number | null;
  /** imgproxy passes the client's cookies to the source (IMGPROXY_COOKIE_PASSTHROUGH). */
  cookiePassthrough?: boolean;
  maxObjectBytes: number;
}

/** Splits a comma-separated header value into lowercase tokens. */
function tokens(value: string | null): string[] {
  if (value === null) return [];
  return value.split(",").map((t) => t.trim().toLowerCase()).filter((t) => t !== "");
}

/**
 * The directive names of the last `Cache-Control` value seen: imgproxy sends the same value
 * with nearly every image, so parsing it once per distinct value is enough.
 */
let lastCacheControl: string | null = null;
let lastDirectives: string[] = [];

function directivesOf(cacheControl: string | null): string[] {
  if (cacheControl !== lastCacheControl) {
    lastDirectives = tokens(cacheControl).map((d) => d.split("=")[0]!.trim());
    lastCacheControl = cacheControl;
  }
  return lastDirectives;
}

/** Decides whether the answer to a request may be stored, and under which variant. */
export function admit(
  method: string,
  requestHeaders: HeaderLookup,
  status: number,
  responseHeaders: Headers,
  rules: AdmissionRules,
): Admission {
  // HEAD and OPTIONS get an empty 200 from imgproxy without any processing: only a GET
  // can carry an image.
  if (method !== "GET") return { store: false, reason: "method" };
  // 304s have no body; errors and partial content are not the image.
  if (status !== 200) return { store: false, reason: "status" };
  const type = (responseHeaders.get("content-type") ?? "").trim().toLowerCase();
  if (!type.startsWith("image/")) return { store: false, reason: "content-type" };
  const encoding = tokens(responseHeaders.get("content-encoding"));
  if (encoding.some((e) => e !== "identity")) return { store: false, reason: "content-encoding" };
  const cacheControl = responseHeaders.get("cache-control");
  const directives = directivesOf(cacheControl);
  if (directives.some((d) => d === "no-store" || d === "private" || d === "no-cache")) {
    return { store: false, reason: "cache-control" };
  }
  if (responseHeaders.has("set-cookie")) return { store: false, reason: "set-cookie" };
  // With cookie passthrough imgproxy fetched the source with this client's cookies: the image
  // may be theirs alone, and imgproxy does not mark it private.
  if (rules.cookiePassthrough && requestHeaders.has("cookie")) {
    return { store: false, reason: "cookie" };
  }
  // A shared cache may only keep an answer to an authorised request when the answer says so
  // (RFC 9111 §3.5); imgproxy marks its images `public`.
  if (
    requestHeaders.has("authorization") &&
    !directives.some((d) => d === "public" || d === "s-maxage" || d === "must-revalidate")
  ) {
    return { store: false, reason: "authorization" };
  }
  let variant = "";
  const vary = tokens(responseHeaders.get("vary"));
  if (vary.length > 0) {
    // Only Accept is understood (imgproxy's format negotiation); client hints and `*` are not.
    if (rules.cacheVariants !== "accept" || vary.some((v) => v !== "accept")) {
      return { store: false, reason: "vary" };
    }
    // Named by the format imgproxy decided on, which its Content-Type says: clients that get
    // the same format share one object, and no format is ever stored under another's key.
    variant = answerVariant(requestHeaders.get("accept"), responseHeaders.get("content-type"));
  }
  if (rules.fallbackMaxAge !== null) {
    // The placeholder carries the fallback TTL, or less when an `expires:` option shortens it;
    // a real image that expires that soon is not worth storing either.
    const maxAge = maxAgeOf(cacheControl);
    if (maxAge !== null && maxAge <= rules.fallbackMaxAge) {
      return { store: false, reason: "fallback-image" };
    }
  }
  const contentLength = declaredLength(responseHeaders);
  if (contentLength !== null && contentLength > rules.maxObjectBytes) {
    return { store: false, reason: "too-large" };
  }
  return { store: true, variant, contentLength };
}
