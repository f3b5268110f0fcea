/**
 * The headers imgproxy sends with a processed image that describe that image (read from
 * imgproxy 4.0.12's `server/responsewriter` and `handlers/processing`), kept with the stored
 * object so a hit answers with them as imgproxy did:
 *
 * - `Content-Disposition`: inline or attachment, with the file name (`filename:`,
 *   `return_attachment:` options);
 * - `Content-Security-Policy`: `script-src 'none'` (an SVG must not run scripts);
 * - `Link`: the canonical URL (`IMGPROXY_SET_CANONICAL_HEADER`);
 * - `X-Origin-Width`, `X-Origin-Height`, `X-Result-Width`, `X-Result-Height`,
 *   `X-Origin-Content-Length`: the debug headers (`IMGPROXY_ENABLE_DEBUG_HEADERS`).
 *
 * Not kept: `Content-Type`, `Content-Length` and `Cache-Control` (stored on their own),
 * `Expires` (an absolute time `Cache-Control` already carries), `Vary` (decided per lookup),
 * `X-Request-ID` and `Server` (about one answer, not the image), and the names
 * `IMGPROXY_CUSTOM_RESPONSE_HEADERS` adds, which the proxy cannot know.
 */

/** The headers kept, by lower-case name. */
export const IMAGE_HEADERS: readonly string[] = [
  "content-disposition",
  "content-security-policy",
  "link",
  "x-origin-width",
  "x-origin-height",
  "x-result-width",
  "x-result-height",
  "x-origin-content-length",
];

/** The kept headers of an answer; undefined when it has none. */
export function imageHeaders(headers: Headers): Record<string, string> | undefined {
  let kept: Record<string, string> | undefined;
  for (const name of IMAGE_HEADERS) {
    const value = headers.get(name);
    if (value !== null) (kept ??= {})[name] = value;
  }
  return kept;
}

/** The S3 user metadata that holds them (S3 allows only US-ASCII there: see the encoding). */
export const IMAGE_HEADERS_META = "x-amz-meta-imgproxy-headers";

/** JSON, percent-encoded: header values may hold bytes S3 metadata cannot. */
export function encodeImageHeaders(headers: Record<string, string>): string {
  return encodeURIComponent(JSON.stringify(headers));
}

/** The headers back from {@linkcode encodeImageHeaders}; undefined for anything else. */
export function decodeImageHeaders(value: string | null): Record<string, string> | undefined {
  if (value === null) return undefined;
  try {
    const parsed: unknown = JSON.parse(decodeURIComponent(value));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
    const kept: Record<string, string> = {};
    for (const [name, v] of Object.entries(parsed)) {
      // Only names the proxy keeps: the metadata is not trusted to add others.
      if (IMAGE_HEADERS.includes(name) && typeof v === "string") kept[name] = v;
    }
    return kept;
  } catch {
    return undefined;
  }
}
