/**
 * Conditional requests on hits (RFC 9110 §13): whether the client's copy is still current, so
 * the hit can be a 304 without a body (and without asking imgproxy).
 */

/** The entity tags an `If-None-Match` lists (`*` as itself). */
function listedTags(value: string): string[] {
  if (value.trim() === "*") return ["*"];
  return value.match(/(?:W\/)?"[^"]*"/g) ?? [];
}

/** An entity tag without its weakness marker (If-None-Match compares weakly: §13.1.2). */
const opaque = (tag: string) => (tag.startsWith("W/") ? tag.slice(2) : tag);

/**
 * True when the request's `If-None-Match` matches `etag`, or, without `If-None-Match`, when its
 * `If-Modified-Since` is not before `lastModified` (§13.2.2's order: the date is ignored when
 * a tag list is sent).
 */
export function notModified(
  request: Headers,
  etag: string | undefined,
  lastModified: string | undefined,
): boolean {
  const ifNoneMatch = request.get("if-none-match");
  if (ifNoneMatch !== null) {
    if (etag === undefined) return false;
    return listedTags(ifNoneMatch).some((t) => t === "*" || opaque(t) === opaque(etag));
  }
  const since = request.get("if-modified-since");
  if (since === null || lastModified === undefined) return false;
  const sinceMs = Date.parse(since);
  const modifiedMs = Date.parse(lastModified);
  return !Number.isNaN(sinceMs) && !Number.isNaN(modifiedMs) && modifiedMs <= sinceMs;
}
