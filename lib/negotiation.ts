/**
 * imgproxy's format negotiation, as the variant keys need it.
 *
 * How imgproxy decides (4.0.12, `clientfeatures/detector.go`, `processing/processing.go`
 * `determineOutputFormat`): a format F of jxl, avif, webp is *preferred* for a request when
 * `IMGPROXY_AUTO_F` or `IMGPROXY_ENFORCE_F` is on and `Accept` contains `image/F` (a plain,
 * case-sensitive substring test). Then:
 * - when the URL names no format (no extension, no `format` option): the first preferred of
 *   jxl, avif, webp (jxl and avif only for still images), else the source's format or
 *   imgproxy's preferred formats;
 * - when the URL names one: the first *enforced* of jxl, avif, webp (same rule), else the URL's.
 *
 * So every answer in a negotiated format F to a client whose `Accept` names F may be shared by
 * every client that gets F: the variant suffix is `-F`, the format imgproxy decided on, read
 * from the answer's `Content-Type` (never one format under another's key). Every other answer
 * (a client that names none of the formats imgproxy chose from, a URL's own format, an animated
 * source) is the answer imgproxy gives without negotiating, identical for all clients: it goes
 * under the suffix-less key.
 *
 * A lookup must name the key before imgproxy answers: {@linkcode FormatNegotiation.predict}
 * takes the first of jxl, avif, webp that the client accepts and imgproxy is known to produce
 * (from its settings when the proxy sees them, else learnt from its answers).
 */

/** The formats imgproxy negotiates, in the order it prefers them. */
export const PREFERENCE = ["jxl", "avif", "webp"] as const;

/** A format imgproxy negotiates from `Accept`. */
export type NegotiatedFormat = (typeof PREFERENCE)[number];

/** The negotiated format of a `Content-Type`, or null for any other type. */
export function formatOf(contentType: string | null): NegotiatedFormat | null {
  if (contentType === null) return null;
  const type = contentType.split(";", 1)[0]!.trim().toLowerCase();
  switch (type) {
    case "image/jxl":
      return "jxl";
    case "image/avif":
      return "avif";
    case "image/webp":
      return "webp";
    default:
      return null;
  }
}

/** Whether `Accept` names `format` the way imgproxy tests it. */
export function accepts(accept: string | null, format: NegotiatedFormat): boolean {
  // Case-sensitive on purpose: imgproxy uses a plain substring test.
  return accept !== null && accept.includes(`image/${format}`);
}

/**
 * The variant suffix of an answer: `-<format>` when imgproxy answered in a negotiated format
 * the client's `Accept` names, else "" (the answer every client gets without negotiation).
 */
export function answerVariant(accept: string | null, contentType: string | null): string {
  const format = formatOf(contentType);
  return format !== null && accepts(accept, format) ? `-${format}` : "";
}

/**
 * The variant suffix imgproxy's answer will have, predicted from `Accept` and the formats it
 * is known to negotiate: the first of jxl, avif, webp in both, else "".
 */
export function predictVariant(
  accept: string | null,
  formats: ReadonlySet<NegotiatedFormat>,
): string {
  if (accept === null || formats.size === 0) return "";
  for (const format of PREFERENCE) {
    if (formats.has(format) && accepts(accept, format)) return `-${format}`;
  }
  return "";
}

/**
 * What the proxy knows about imgproxy's negotiation: whether it negotiates at all (its `Vary`,
 * fixed at its start-up) and which formats it produces. Known from imgproxy's settings when
 * they are in the proxy's environment, and learnt from the answers that pass through.
 */
export class FormatNegotiation {
  /** True once an answer said `Vary: Accept`, false once one said otherwise; null before. */
  variesOnAccept: boolean | null;
  readonly #formats: Set<NegotiatedFormat>;

  /** `configured`: the formats imgproxy's settings enable (null: not known). */
  constructor(configured: readonly NegotiatedFormat[] | null) {
    this.#formats = new Set(configured ?? []);
    this.variesOnAccept = configured === null ? null : configured.length > 0;
  }

  /** The formats imgproxy is known to negotiate. */
  get formats(): ReadonlySet<NegotiatedFormat> {
    return this.#formats;
  }

  /** Learns from an answer to a request with `accept`: only 200 images tell anything. */
  observe(accept: string | null, res: Response): void {
    if (res.status !== 200) return;
    const type = res.headers.get("content-type");
    if (!(type ?? "").toLowerCase().startsWith("image/")) return;
    const vary = (res.headers.get("vary") ?? "").toLowerCase();
    this.variesOnAccept = vary.split(",").some((t) => t.trim() === "accept");
    if (!this.variesOnAccept) return;
    // An answer in a format the client accepts is what it will get again (its key says so).
    const format = formatOf(type);
    if (format !== null && accepts(accept, format)) this.#formats.add(format);
  }

  /** The suffix to look up for a request with `accept` ("" while imgproxy is not known to negotiate). */
  predict(accept: string | null): string {
    return this.variesOnAccept === true ? predictVariant(accept, this.#formats) : "";
  }
}
