/**
 * Rules that follow imgproxy's own settings, read from the same environment: how to recognise
 * its fallback image, and which formats it negotiates from `Accept`.
 */
import { type NegotiatedFormat, PREFERENCE } from "./negotiation.ts";
import type { Parser } from "./config_parse.ts";
import type { VariableName } from "./config_variables.ts";

/** Parses `max-age=N` out of a Cache-Control value; null when absent. */
export function maxAgeOf(cacheControl: string | null): number | null {
  if (cacheControl === null) return null;
  const m = /(?:^|[,\s])max-age\s*=\s*"?(\d+)"?/i.exec(cacheControl);
  return m ? Number(m[1]) : null;
}

/**
 * Works out how to recognise imgproxy's fallback image (a placeholder that imgproxy answers
 * with status 200 by default when the source cannot be fetched).
 */
export function fallbackRule(p: Parser): number | null {
  const configured = p.raw("IMGPROXY_FALLBACK_IMAGE_DATA") ??
    p.raw("IMGPROXY_FALLBACK_IMAGE_PATH") ??
    p.raw("IMGPROXY_FALLBACK_IMAGE_URL");
  if (configured === undefined) return null;
  const code = p.int("IMGPROXY_FALLBACK_IMAGE_HTTP_CODE", 200, 0, 599);
  if (code !== 200) return null; // never a 200, so never stored
  const ttl = p.raw("IMGPROXY_FALLBACK_IMAGE_TTL");
  if (ttl === undefined) {
    p.problems.push(
      "IMGPROXY_FALLBACK_IMAGE_HTTP_CODE: a fallback image is configured and answers 200, so it " +
        "cannot be told from a real image and would be stored under the real image's key; set " +
        "IMGPROXY_FALLBACK_IMAGE_HTTP_CODE to a non-200 code (e.g. 404) or set " +
        "IMGPROXY_FALLBACK_IMAGE_TTL to a value different from IMGPROXY_TTL",
    );
    return null;
  }
  // imgproxy applies the fallback TTL only when it is above 0.
  const fallbackTtl = p.int("IMGPROXY_FALLBACK_IMAGE_TTL", 0, 1);
  const ttlAll = p.int("IMGPROXY_TTL", 31536000, 0);
  if (fallbackTtl >= ttlAll) {
    // Answers with a max-age up to the fallback TTL are taken for placeholders: a TTL at or
    // above IMGPROXY_TTL would take every real image for one.
    p.problems.push(
      `IMGPROXY_FALLBACK_IMAGE_TTL: must be below IMGPROXY_TTL (${ttlAll}) so fallback images ` +
        `can be told from real ones, got ${fallbackTtl}`,
    );
  }
  return fallbackTtl;
}

/**
 * The formats imgproxy's own settings make it negotiate, when the proxy sees them (one
 * environment in the Docker image): a format is on with `IMGPROXY_AUTO_<F>` or
 * `IMGPROXY_ENFORCE_<F>` (v3's `IMGPROXY_ENABLE_WEBP_DETECTION` is its older AUTO_WEBP).
 * Null when none of them is set: imgproxy may run elsewhere, its answers tell.
 */
export function negotiatedFormats(p: Parser): NegotiatedFormat[] | null {
  const names = {
    webp: ["IMGPROXY_AUTO_WEBP", "IMGPROXY_ENFORCE_WEBP", "IMGPROXY_ENABLE_WEBP_DETECTION"],
    avif: ["IMGPROXY_AUTO_AVIF", "IMGPROXY_ENFORCE_AVIF"],
    jxl: ["IMGPROXY_AUTO_JXL", "IMGPROXY_ENFORCE_JXL"],
  } as const satisfies Record<NegotiatedFormat, readonly VariableName[]>;
  let seen = false;
  const formats: NegotiatedFormat[] = [];
  for (const format of PREFERENCE) {
    let on = false;
    for (const name of names[format]) {
      if (p.raw(name) === undefined) continue;
      seen = true;
      if (p.bool(name, false)) on = true;
    }
    if (on) formats.push(format);
  }
  return seen ? formats : null;
}
