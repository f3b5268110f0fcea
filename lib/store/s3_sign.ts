/**
 * AWS Signature Version 4 (an `Authorization` header) for S3 requests, computed synchronously
 * with `node:crypto`: the AWS SDK's signer costs about 100 µs of CPU per request through its
 * promise chains and copies, this about 5 µs. The rules are the SDK's for S3 (its path sent
 * as given, not escaped again; the payload's hash sent as `x-amz-content-sha256`; the same
 * headers left unsigned); tests/s3_wire_test.ts proves the requests equal the SDK's, signature
 * included.
 *
 * The day's signing key is derived once per day, region, service and secret, with the HMAC
 * pads of the request signature computed from it once too.
 */
import { createHash, createHmac } from "node:crypto";

/** What signing needs of an identity (the SDK's credential providers return this shape). */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** SHA-256 of zero bytes, hex: the payload hash of a bodiless request. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Headers SigV4 leaves out of the signature (the SDK's list, and `proxy-*`, `sec-*`). */
const UNSIGNABLE = new Set([
  "authorization",
  "cache-control",
  "connection",
  "expect",
  "from",
  "keep-alive",
  "max-forwards",
  "pragma",
  "referer",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "user-agent",
  "x-amzn-trace-id",
]);

/** SHA-256 of `data`, hex. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** RFC 3986 escaping as SigV4 wants it: `encodeURIComponent` plus `!'()*`. */
export function escapeUri(s: string): string {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase(),
  );
}

/** A query's canonical form (keys and values escaped, sorted by key): `a=1&b=2`. */
export function canonicalQuery(query: Record<string, string>): string {
  return Object.entries(query).map(([k, v]) => [escapeUri(k), escapeUri(v)])
    .sort(([a], [b]) => a! < b! ? -1 : a! > b! ? 1 : 0).map(([k, v]) => `${k}=${v}`).join("&");
}

/** A header value as signed: line breaks as spaces, runs of blanks as one, no blank at the ends. */
function canonicalValue(value: string): string {
  return /[\r\n\t]| {2}|^ | $/.test(value)
    ? value.replace(/[\r\n]/g, " ").replace(/[ \t]+/g, " ").replace(/^ | $/g, "")
    : value;
}

/** The HMAC-SHA256 pads of a 32-byte key, so each signature takes two plain hashes. */
class DayKey {
  readonly #inner: Uint8Array;
  readonly #outer: Uint8Array;

  constructor(
    readonly secret: string,
    readonly day: string,
    readonly region: string,
    readonly service: string,
  ) {
    let key: Uint8Array = createHmac("sha256", `AWS4${secret}`).update(day).digest();
    for (const part of [region, service, "aws4_request"]) {
      key = createHmac("sha256", key).update(part).digest();
    }
    this.#inner = new Uint8Array(64).fill(0x36);
    this.#outer = new Uint8Array(64).fill(0x5c);
    for (let i = 0; i < key.length; i++) {
      this.#inner[i]! ^= key[i]!;
      this.#outer[i]! ^= key[i]!;
    }
  }

  /** HMAC-SHA256 of `text` with this key, hex. */
  sign(text: string): string {
    const inner = createHash("sha256").update(this.#inner).update(text).digest();
    return createHash("sha256").update(this.#outer).update(inner).digest("hex");
  }
}

/** One request to sign: `path` as sent (already escaped), `query` in canonical form. */
export interface SignableRequest {
  method: string;
  path: string;
  query: string;
  /** Lower-case names; `host` included. Signing adds its own headers here. */
  headers: Record<string, string>;
  /** The payload's SHA-256, hex ({@linkcode EMPTY_SHA256} without a body). */
  payloadHash: string;
}

/** Signs requests for one service; keeps the last day's key. */
export class SigV4Signer {
  #key: DayKey | undefined;
  #second = NaN;
  #stamp = "";

  constructor(readonly service: string) {}

  /**
   * Adds `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (with a session
   * token) and `authorization` to `request.headers`, signed for `region` at `timeMs`.
   */
  sign(request: SignableRequest, credentials: S3Credentials, region: string, timeMs: number) {
    const h = request.headers;
    const stamp = this.#timestamp(timeMs);
    const day = stamp.slice(0, 8);
    h["x-amz-date"] = stamp;
    if (credentials.sessionToken) h["x-amz-security-token"] = credentials.sessionToken;
    h["x-amz-content-sha256"] = request.payloadHash;
    const names = Object.keys(h).filter((n) =>
      !UNSIGNABLE.has(n) && !n.startsWith("proxy-") && !n.startsWith("sec-")
    ).sort();
    let canonical = `${request.method}\n${request.path}\n${request.query}\n`;
    for (const n of names) canonical += `${n}:${canonicalValue(h[n]!)}\n`;
    const signed = names.join(";");
    canonical += `\n${signed}\n${request.payloadHash}`;
    const scope = `${day}/${region}/${this.service}/aws4_request`;
    let key = this.#key;
    if (
      key === undefined || key.day !== day || key.region !== region ||
      key.secret !== credentials.secretAccessKey
    ) {
      key = this.#key = new DayKey(credentials.secretAccessKey, day, region, this.service);
    }
    const signature = key.sign(
      `AWS4-HMAC-SHA256\n${stamp}\n${scope}\n${sha256Hex(canonical)}`,
    );
    h.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, ` +
      `SignedHeaders=${signed}, Signature=${signature}`;
  }

  /** `YYYYMMDDTHHMMSSZ` of `timeMs` (the same string for every request in one second). */
  #timestamp(timeMs: number): string {
    const second = Math.floor(timeMs / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#stamp = new Date(second * 1000).toISOString().replace(/[-:]|\.\d{3}/g, "");
    }
    return this.#stamp;
  }
}
