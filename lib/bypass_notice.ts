/**
 * Says it once when caching is systematically off: the first time an answer is not stored for
 * a reason the configuration causes (and so will recur for every image), one WARN says what to
 * change. Each bypass is also counted by reason in the metrics (`imgproxy_cache_bypasses_total`).
 */
import type { AdmissionRules, BypassReason } from "./admission.ts";
import type { Logger } from "./log.ts";

/** What to say about one reason: the message and its fields. */
interface Advice {
  /** Said once per topic (the two kinds of `vary` are separate topics). */
  topic: string;
  msg: string;
  fields?: Record<string, string | number>;
}

/** The advice for a bypass the configuration causes, or null for one it does not. */
export function adviceFor(
  reason: BypassReason,
  response: Headers,
  rules: AdmissionRules,
): Advice | null {
  switch (reason) {
    case "vary": {
      const vary = response.get("vary") ?? "";
      const onlyAccept = vary.split(",").every((t) => t.trim().toLowerCase() === "accept");
      if (onlyAccept && rules.cacheVariants === "off") {
        return {
          topic: "vary-accept",
          msg:
            "imgproxy negotiates formats (Vary: Accept) and CACHE_VARIANTS=off: no such answer is stored; set CACHE_VARIANTS=accept to store one object per format",
        };
      }
      return {
        topic: "vary-other",
        msg:
          "imgproxy's answers vary on more than Accept, so they are not stored; to store them, turn off what adds the headers (IMGPROXY_ENABLE_CLIENT_HINTS adds DPR and Width)",
        fields: { vary },
      };
    }
    case "too-large":
      return {
        topic: reason,
        msg:
          "An image over UPLOAD_MAX_OBJECT_BYTES was served but not stored; raise UPLOAD_MAX_OBJECT_BYTES to store such images",
        fields: {
          contentLength: response.get("content-length") ?? "?",
          maxObjectBytes: rules.maxObjectBytes,
        },
      };
    case "fallback-image":
      return {
        topic: reason,
        msg:
          "An answer with a max-age at or below IMGPROXY_FALLBACK_IMAGE_TTL was taken for imgproxy's fallback image and not stored; if real images get such short lifetimes, set IMGPROXY_FALLBACK_IMAGE_HTTP_CODE to a non-200 code instead",
        fields: {
          cacheControl: response.get("cache-control") ?? "",
          fallbackTtl: rules.fallbackMaxAge ?? "",
        },
      };
    case "cache-control":
      return {
        topic: reason,
        msg:
          "imgproxy marked an answer not storable (no-store, private or no-cache), so it was not stored; IMGPROXY_TTL=0 does this for every image",
        fields: { cacheControl: response.get("cache-control") ?? "" },
      };
    case "cookie":
      return {
        topic: reason,
        msg:
          "IMGPROXY_COOKIE_PASSTHROUGH is on: answers to requests that carry cookies are not stored",
      };
    default:
      // A method, status, type, encoding, Set-Cookie, Authorization or cache rule is about one
      // request or answer, or is what the configuration asked for.
      return null;
  }
}

/** Remembers what has been said; one per app. */
export class BypassNotices {
  readonly #said = new Set<string>();
  /** Reasons that need no (more) advice: checked first, so the usual case is one lookup. */
  readonly #quiet = new Set<BypassReason>();

  constructor(private readonly logger: Logger, private readonly rules: AdmissionRules) {}

  /** Called for every answer not stored; logs the advice the first time its topic comes up. */
  note(reason: BypassReason, response: Headers): void {
    if (this.#quiet.has(reason)) return;
    const advice = adviceFor(reason, response, this.rules);
    if (advice === null) {
      this.#quiet.add(reason);
      return;
    }
    // `vary` has two topics; every other reason has one, said once.
    if (reason !== "vary") this.#quiet.add(reason);
    if (this.#said.has(advice.topic)) return;
    this.#said.add(advice.topic);
    this.logger.log("WARN", advice.msg, advice.fields);
  }
}
