/**
 * URL helper for applications: builds a signed imgproxy path, the URL that asks the caching
 * proxy for it, and the URL of the object the proxy stores for it in the bucket.
 *
 * The cache key comes from {@linkcode objectKey} in `key.ts`, the function the proxy itself
 * uses, so a page can point `<img src>` at the bucket and fall back to the proxy URL on a miss.
 * That only works if the path built here is byte-for-byte the path the proxy receives, which is
 * why sources are escaped so that browsers send them unchanged (see
 * {@linkcode escapePlainSource}).
 *
 * Base64 sources use the URL-safe alphabet ("-" and "_") without padding, which is what imgproxy
 * decodes (`RawURLEncoding`, after joining the "/"-split parts and trimming "="). The Phoenix
 * (Elixir) component in the Go imgproxy-cache program's README used standard base64 (`Base.encode64`): a source whose encoding contains "+" or
 * "/" breaks there, because imgproxy reads "/" as a segment separator and "+" is not in its
 * alphabet (403). Its padding "=" is accepted by imgproxy but makes a different path, hence a
 * different cache key, than the unpadded form built here.
 *
 * @module
 */
import { createHmac } from "node:crypto";
import { Buffer } from "node:buffer";
import { normalizeFolder, objectKey } from "./key.ts";
import { type NegotiatedFormat, predictVariant, PREFERENCE } from "./negotiation.ts";

/** One hex string, several comma-separated ones, or a list, as imgproxy's env vars allow. */
export type HexList = string | readonly string[];

/** What {@linkcode signPath} needs: key/salt pairs in hex and the signature's length. */
export interface Signer {
  /** `IMGPROXY_KEY`: hex, comma-separated or an array for several keys. */
  key?: HexList;
  /** `IMGPROXY_SALT`: hex, paired with `key` by position. */
  salt?: HexList;
  /** `IMGPROXY_SIGNATURE_SIZE`: bytes of the HMAC kept, 1..32 (default 32). */
  signatureSize?: number;
  /** Signature segment used when no key/salt is configured (default "insecure"). */
  insecureSignature?: string;
}

/** How the source URL is put in the path. */
export type SourceEncoding = "base64" | "plain";

/** How {@linkcode encodeSource} writes the source part of the path. */
export interface SourceOptions {
  /** "base64" (default, URL-safe, unpadded) or "plain" (percent-escaped, readable). */
  encoding?: SourceEncoding;
  /** Output format such as "png" or ".png"; `.png` after base64, `@png` after plain. */
  extension?: string;
  /** Base64 only: split the encoding into "/"-separated segments of this many characters. */
  segmentLength?: number;
}

/** Everything needed to build a path: processing options, source and signer. */
export interface PathParams extends Signer, SourceOptions {
  /** Processing options: `["rs:fill:300:300:1", "g:sm"]` or `"rs:fill:300:300:1/g:sm"`. */
  options?: string | readonly string[];
  /** The source image URL, unencoded. */
  source: string;
}

/** Everything {@linkcode buildImageUrls} needs. */
export interface ImageUrlParams extends PathParams {
  /**
   * Base URL of the caching proxy (or imgproxy), trailing slash optional. It may have a path
   * (imgproxy's `IMGPROXY_PATH_PREFIX` behind it): that prefix is not signed, but it is part of
   * the path the proxy receives and hashes, so the key includes it.
   */
  imgproxyBaseUrl: string;
  /** PUBLIC base URL of the bucket, trailing slash optional. */
  cacheBaseUrl: string;
  /** The proxy's `S3_FOLDER` (normalised here, as the proxy does). */
  folder?: string;
  /** `Accept` header the image will be requested with, when imgproxy negotiates formats. */
  accept?: string | null;
  /**
   * The formats imgproxy negotiates (`IMGPROXY_AUTO_*` / `IMGPROXY_ENFORCE_*`); default all
   * three. The key names the first of jxl, avif, webp that is here and in `accept`, as the
   * proxy does. (A URL with an extension gets that format unless an `ENFORCE_*` applies: pass
   * `accept: null` for those.)
   */
  formats?: readonly NegotiatedFormat[];
}

/** The path and the three URLs derived from it. */
export interface ImageUrls {
  /** "/" + signature + "/" + options + "/" + source part: what is signed. */
  path: string;
  /** Proxy base URL + path: ask the proxy (fills the cache on a miss). */
  proxyUrl: string;
  /** Object key in the bucket, exactly as the proxy computes it (base URL's path included). */
  cacheKey: string;
  /** Cache base URL + "/" + cacheKey: the stored object, once the proxy has uploaded it. */
  cacheUrl: string;
}

const HEX_DIGITS = /^[0-9a-fA-F]*$/;

/** Decodes hex to bytes; messages name the entry but never its value, which is a secret. */
function decodeHex(hex: string, what: string): Uint8Array {
  if (hex === "") throw new TypeError(`${what} is empty`);
  if (!HEX_DIGITS.test(hex)) throw new TypeError(`${what} is not hex: it has a non-hex character`);
  if (hex.length % 2 !== 0) throw new TypeError(`${what} is not hex: it has an odd length`);
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** Splits a key or salt setting into decoded entries; blank means unset, as in imgproxy. */
export function parseHexList(value: HexList | undefined, name: string): Uint8Array[] {
  if (value === undefined) return [];
  const entries = typeof value === "string"
    ? (value.trim() === "" ? [] : value.split(","))
    : [...value];
  return entries.map((entry, i) => decodeHex(entry.trim(), `${name} #${i + 1}`));
}

/** Validates IMGPROXY_SIGNATURE_SIZE: an integer 1..32 (an HMAC-SHA256 has 32 bytes). */
function checkSignatureSize(size: number): number {
  if (!Number.isInteger(size) || size < 1 || size > 32) {
    throw new RangeError(`signatureSize must be an integer from 1 to 32, got ${size}`);
  }
  return size;
}

/**
 * Returns the signature segment for a path (leading "/" included, no query): the first key/salt
 * pair's HMAC-SHA256, truncated, URL-safe base64 without padding. imgproxy accepts a signature
 * made with any configured pair, so the first is as good as any and keeps the output stable.
 */
export function signPath(path: string, signer: Signer = {}): string {
  const size = checkSignatureSize(signer.signatureSize ?? 32);
  const keys = parseHexList(signer.key, "key");
  const salts = parseHexList(signer.salt, "salt");
  if (keys.length !== salts.length) {
    throw new RangeError(
      `key and salt must come in pairs: got ${keys.length} key(s) and ${salts.length} salt(s)`,
    );
  }
  const key = keys[0];
  const salt = salts[0];
  if (key === undefined || salt === undefined) {
    // Without a key imgproxy accepts any non-empty segment; v4 refuses one containing ":".
    const insecure = signer.insecureSignature ?? "insecure";
    if (insecure === "" || /[/:?#]/.test(insecure)) {
      throw new TypeError(`insecureSignature must be a non-empty path segment without ":"`);
    }
    return insecure;
  }
  const mac = createHmac("sha256", key).update(salt).update(path, "utf8").digest();
  return Buffer.from(mac.subarray(0, size)).toString("base64url");
}

/** Returns the URL-safe, unpadded base64 of a string's UTF-8 bytes (imgproxy's alphabet). */
export function encodeBase64Url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}

// Characters escaped in plain sources, beyond controls, space and non-ASCII:
// "%" because imgproxy percent-decodes the source; "?" and "#" because they end the path;
// "@" because imgproxy splits the format off at "@" and refuses two of them;
// "'" so a URL can sit in a quoted JavaScript string (the README's onerror fallback) without
// ending it; the rest because browsers (WHATWG URL parser) or older clients re-encode or rewrite
// them ("\" becomes "/"), which would change the path the proxy hashes and imgproxy verifies.
const PLAIN_UNSAFE = new Set([
  "%",
  "?",
  "#",
  "@",
  "'",
  '"',
  "<",
  ">",
  "`",
  "{",
  "}",
  "\\",
  "^",
  "|",
]);

/** Tells whether a character would not reach the proxy verbatim inside a URL path. */
function breaksPath(ch: string, extra: ReadonlySet<string>): boolean {
  const code = ch.codePointAt(0) ?? 0;
  return code <= 0x20 || code >= 0x7f || extra.has(ch);
}

/**
 * Percent-escapes a plain source so it survives as one path: "%", "?", "#", "@", space,
 * controls, non-ASCII and characters browsers re-encode; ":" and "/" stay so it stays readable.
 */
export function escapePlainSource(source: string): string {
  let out = "";
  for (const ch of source) {
    if (!breaksPath(ch, PLAIN_UNSAFE)) {
      out += ch;
      continue;
    }
    try {
      const escaped = encodeURIComponent(ch);
      // encodeURIComponent leaves "'" as it is: escape such ASCII by hand.
      out += escaped === ch ? `%${ch.charCodeAt(0).toString(16).toUpperCase()}` : escaped;
    } catch {
      throw new TypeError("source contains a lone UTF-16 surrogate and cannot be encoded");
    }
  }
  return out;
}

/** Normalises an extension ("png", ".png" → "png"); "" means none. */
function checkExtension(extension: string | undefined): string {
  const ext = (extension ?? "").replace(/^[.@]/, "");
  if (ext !== "" && !/^[A-Za-z0-9]+$/.test(ext)) {
    throw new TypeError(`extension must be letters and digits, got ${JSON.stringify(extension)}`);
  }
  return ext;
}

/** Returns the source part of the path: `base64[.ext]` or `plain/escaped[@ext]`. */
export function encodeSource(source: string, opts: SourceOptions = {}): string {
  if (source === "") throw new TypeError("source must not be empty");
  const ext = checkExtension(opts.extension);
  const encoding = opts.encoding ?? "base64";
  if (encoding === "plain") {
    // Browsers resolve "." and ".." segments before sending (and would do so for "%2E" too),
    // so the proxy would receive, hash and verify another path: only base64 carries them.
    if (source.split("/").some((s) => s === "." || s === "..")) {
      throw new TypeError('a plain source cannot contain "." or ".." segments; use base64');
    }
    return `plain/${escapePlainSource(source)}${ext === "" ? "" : `@${ext}`}`;
  }
  if (encoding !== "base64") {
    throw new TypeError(`encoding must be "base64" or "plain", got ${JSON.stringify(encoding)}`);
  }
  let encoded = encodeBase64Url(source);
  const every = opts.segmentLength;
  if (every !== undefined) {
    if (!Number.isInteger(every) || every < 1) {
      throw new RangeError(`segmentLength must be a positive integer, got ${every}`);
    }
    const parts: string[] = [];
    for (let i = 0; i < encoded.length; i += every) parts.push(encoded.slice(i, i + every));
    encoded = parts.join("/");
  }
  return ext === "" ? encoded : `${encoded}.${ext}`;
}

// Characters refused in options: they end the path or are re-encoded by clients.
const OPTION_UNSAFE = new Set(["?", "#", '"', "<", ">", "`", "{", "}", "\\", "^", "|"]);

/**
 * Joins processing options with "/", dropping empty segments. Each must contain ":" because
 * imgproxy takes the first segment without one as the start of the source.
 */
export function joinOptions(options: string | readonly string[] = []): string {
  const list = typeof options === "string" ? [options] : options;
  const segments = list.flatMap((o) => o.split("/")).filter((s) => s !== "");
  for (const segment of segments) {
    if (!segment.includes(":")) {
      throw new TypeError(`option ${JSON.stringify(segment)} has no ":" (name:args expected)`);
    }
    if ([...segment].some((ch) => breaksPath(ch, OPTION_UNSAFE))) {
      throw new TypeError(`option ${JSON.stringify(segment)} has a character unsafe in a path`);
    }
  }
  return segments.join("/");
}

/** Returns the signed path: "/" + signature + "/" + options + "/" + source part. */
export function buildPath(params: PathParams): string {
  const options = joinOptions(params.options);
  const unsigned = (options === "" ? "" : `/${options}`) + "/" +
    encodeSource(params.source, params);
  return `/${signPath(unsigned, params)}${unsigned}`;
}

/** Returns the bucket key the proxy stores a path's answer under (same code as the proxy). */
export function cacheKeyFor(
  path: string,
  folder = "",
  accept: string | null = null,
  formats: readonly NegotiatedFormat[] = PREFERENCE,
): string {
  return objectKey(path, normalizeFolder(folder), predictVariant(accept, new Set(formats)));
}

/** Builds the signed path, the proxy URL and the matching cached-object key and URL. */
export function buildImageUrls(params: ImageUrlParams): ImageUrls {
  const path = buildPath(params);
  const base = trimTrailingSlashes(params.imgproxyBaseUrl);
  // The base URL's own path, as a browser sends it (the URL parser's form).
  const prefix = new URL(base + "/").pathname.replace(/\/+$/, "");
  const cacheKey = cacheKeyFor(
    prefix + path,
    params.folder ?? "",
    params.accept ?? null,
    params.formats,
  );
  return {
    path,
    proxyUrl: base + path,
    cacheKey,
    cacheUrl: `${trimTrailingSlashes(params.cacheBaseUrl)}/${cacheKey}`,
  };
}

/** Drops trailing slashes so joining with a path never makes "//" (which changes the key). */
function trimTrailingSlashes(url: string): string {
  return url.replace(/\/+$/, "");
}
