/**
 * Requests to an S3-compatible bucket, sent the way the AWS SDK's own commands would send them
 * (same addressing, path, query, signed headers, signature), but with `fetch` instead of through
 * the SDK's middleware stack and `node:http`, and signed by lib/store/s3_sign.ts with the SDK
 * client's credentials, the region and the client's clock-skew offset. The answer's body streams
 * natively. PutObject goes on connections of the store's own instead (lib/store/s3_put.ts).
 *
 * The SDK's telemetry headers (`user-agent`, `x-amz-user-agent`, `amz-sdk-invocation-id`,
 * `amz-sdk-request`) are not sent. tests/s3_wire_test.ts proves every other byte equal to what
 * the SDK sends, on a real socket.
 */
import type { S3Client } from "@aws-sdk/client-s3";
import type { S3StoreConfig } from "../config.ts";
import { PERMANENT_ERROR_NAMES, StoreError } from "./store.ts";
import {
  canonicalQuery,
  EMPTY_SHA256,
  escapeUri,
  type S3Credentials,
  sha256Hex,
  SigV4Signer,
} from "./s3_sign.ts";
import { ownPut, s3PutOrigin, sendPut } from "./s3_put.ts";
import { type Connect, ConnectFailed, type Http1Origin } from "./http1.ts";

/** S3 error names that mean "slow down" or a transient server problem. */
const TRANSIENT_NAMES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
  "RequestTimeout",
  "RequestTimeoutException",
  "InternalError",
  "ServiceUnavailable",
  "ConditionalRequestConflict",
  "OperationAborted",
  "TimeoutError",
  // The clock offset is corrected from the server's Date before the retry.
  "RequestTimeTooSkewed",
]);

/** Error names no retry can fix: the shared ones, missing credentials, a missing feature. */
const PERMANENT_NAMES = new Set([
  ...PERMANENT_ERROR_NAMES,
  "CredentialsProviderError",
  "NotImplemented",
]);

/** The SDK's error shape: S3's error code as `name`, the HTTP status in `$metadata`. */
export interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  /** The region a store expects (AuthorizationHeaderMalformed). */
  Region?: string;
  $metadata?: { httpStatusCode?: number };
}

/** Classifies an error: retryable when the network, the server or contention failed. */
export function classifyS3Error(err: unknown, what: string): StoreError {
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? "Error";
  let retryable: boolean;
  // Missing credentials, a cancelled call, a denied permission or a feature the store does
  // not have will not fix themselves on a retry.
  if (PERMANENT_NAMES.has(name)) retryable = false;
  else if (status === undefined) retryable = true; // no answer at all: network trouble
  else if (status === 501 || status === 505) retryable = false;
  else if (status >= 500 || status === 409 || status === 429 || status === 408) retryable = true;
  else retryable = TRANSIENT_NAMES.has(name);
  let detail = status === undefined ? name : `${name} (HTTP ${status})`;
  if (status === 501 && /PutObject/.test(what)) {
    detail +=
      " (a store that does not implement conditional writes: set S3_CONDITIONAL_WRITE=false)";
  }
  return new StoreError(`${what}: ${detail}: ${e.message ?? String(err)}`, retryable, name, {
    cause: err,
  });
}

/** A signing clock this far from the store's `Date` is corrected (the SDK's threshold). */
const MAX_SKEW_MS = 5 * 60_000;

/** Where one bucket's objects are: the SDK's addressing for a custom endpoint. */
export interface S3Address {
  origin: string;
  host: string;
  path(key: string): string;
}

/** Characters a path segment never escapes, and `/`. */
const UNRESERVED = /^[A-Za-z0-9\-._~/]*$/;

const HOST_LABEL = /^(?!.*-$)(?!-)[a-zA-Z0-9-]{1,63}$/;
const IPV4 =
  /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)){3}$/;

/**
 * The SDK's rule for a custom endpoint: the bucket goes in the host only when it is a valid
 * lowercase DNS label of 3 to 63 characters (so no dots) and the endpoint is not an IP address;
 * otherwise (and with path-style forced) it is the path's first segment.
 */
export function virtualHosted(config: S3StoreConfig): boolean {
  if (config.forcePathStyle) return false;
  const b = config.bucket;
  const hostname = new URL(config.endpoint).hostname;
  return HOST_LABEL.test(b) && b.length >= 3 && b === b.toLowerCase() && !IPV4.test(b) &&
    !IPV4.test(hostname) && !hostname.startsWith("[");
}

/** The address of `config`'s bucket. */
export function s3Address(config: S3StoreConfig): S3Address {
  const u = new URL(config.endpoint);
  const base = u.pathname.replace(/\/+$/, "");
  const virtual = virtualHosted(config);
  const hostname = virtual ? `${config.bucket}.${u.hostname}` : u.hostname;
  const host = u.port === "" ? hostname : `${hostname}:${u.port}`;
  const prefix = virtual ? `${base}/` : `${base}/${escapeUri(config.bucket)}/`;
  return {
    origin: `${u.protocol}//${host}`,
    host,
    // Keys of unreserved characters (the proxy's own: hex digests, folders) need no escaping.
    path: (key) => prefix + (UNRESERVED.test(key) ? key : key.split("/").map(escapeUri).join("/")),
  };
}

/** The most of an error answer's body read: S3's error documents are a few hundred bytes. */
const ERROR_BODY_MAX = 65536;

/**
 * The first `max` bytes of `res`'s body as text; the rest is never read (a store answering an
 * error with an endless or huge body must not hold the request or its memory).
 */
export async function errorBodyText(res: Response, max = ERROR_BODY_MAX): Promise<string> {
  if (res.body === null) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    while (length < max) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      length += value.byteLength;
    }
  } catch {
    /* the body is optional */
  } finally {
    reader.cancel().catch(() => {});
  }
  const bytes = new Uint8Array(Math.min(length, max));
  let at = 0;
  for (const c of chunks) {
    if (at >= bytes.byteLength) break;
    const part = c.subarray(0, bytes.byteLength - at);
    bytes.set(part, at);
    at += part.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

/** Reads an S3 error response into the SDK's error shape. */
async function s3ErrorFrom(res: Response): Promise<Error & SdkError> {
  const text = await errorBodyText(res);
  const tag = (name: string) => {
    const raw = new RegExp(`<${name}>([^<]*)</${name}>`).exec(text)?.[1];
    return raw === undefined ? undefined : decodeXmlText(raw);
  };
  const name = tag("Code") ?? (res.status === 404 ? "NotFound" : "UnknownError");
  const err = new Error(tag("Message") ?? (res.statusText || `HTTP ${res.status}`)) as
    & Error
    & SdkError;
  err.name = name;
  err.$metadata = { httpStatusCode: res.status };
  // AuthorizationHeaderMalformed names the region the store expects, as the SDK reads it.
  const region = tag("Region");
  if (region !== undefined) err.Region = region;
  return err;
}

const NAMED_ENTITIES: Record<string, string> = {
  lt: "<",
  gt: ">",
  amp: "&",
  quot: '"',
  apos: "'",
};

/**
 * Decodes XML character references in S3 error text: the five named entities and numeric
 * ones (`&#34;`, `&#x22;`), which Go-based stores (versitygw, MinIO) use for quotes.
 */
export function decodeXmlText(text: string): string {
  return text.replace(
    /&(?:(lt|gt|amp|quot|apos)|#(\d{1,7})|#x([0-9a-fA-F]{1,6}));/g,
    (whole, named?: string, dec?: string, hex?: string) => {
      if (named !== undefined) return NAMED_ENTITIES[named]!;
      const code = dec !== undefined ? Number(dec) : parseInt(hex!, 16);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    },
  );
}

/** An S3 operation's method and query, as the SDK's command sends them. */
interface Operation {
  method: string;
  /** The query in canonical form, as signed. */
  query: string;
  /** The query as sent: `?` and the query, or nothing. */
  search: string;
}

function operation(method: string, query: Record<string, string>): Operation {
  const q = canonicalQuery(query);
  return { method, query: q, search: q === "" ? "" : `?${q}` };
}

/** The S3 operations sent here. */
const OPERATIONS: Record<S3Operation, Operation> = {
  PutObject: operation("PUT", { "x-id": "PutObject" }),
  GetObject: operation("GET", { "x-id": "GetObject" }),
  HeadObject: operation("HEAD", {}),
  DeleteObject: operation("DELETE", { "x-id": "DeleteObject" }),
};

/** One S3 operation's name. */
export type S3Operation = "PutObject" | "GetObject" | "HeadObject" | "DeleteObject";

/** Signs and sends requests for one bucket. */
export class S3Requester {
  readonly address: S3Address;
  readonly #client: S3Client;
  #region: string;
  readonly #fetch: typeof fetch;
  readonly #signer = new SigV4Signer("s3");
  /** Where PutObject is sent over connections of our own; null: over `fetch`. */
  #put: Http1Origin | null;
  readonly #onPutFallback: ((reason: string) => void) | undefined;

  /**
   * `fetchFn` replaces `fetch`, `connect` how PutObject's connections are opened (tests route
   * requests to a local socket); `onPutFallback` hears, once, why PutObject went over to `fetch`.
   */
  constructor(
    config: S3StoreConfig,
    client: S3Client,
    fetchFn: typeof fetch = fetch,
    connect?: Connect,
    onPutFallback?: (reason: string) => void,
  ) {
    this.address = s3Address(config);
    this.#client = client;
    this.#region = config.region;
    this.#fetch = fetchFn;
    this.#put = s3PutOrigin(this.address, connect);
    this.#onPutFallback = onPutFallback;
  }

  /** Closes the connections kept for PutObject. */
  close(): void {
    this.#put?.close();
  }

  /**
   * Sends `operation` on `key` with `headers` (lowercase names) and `body`; resolves with
   * whatever S3 answered (see {@linkcode fail} for answers that are errors). Network failures,
   * aborts and missing credentials reject with a classified {@linkcode StoreError}.
   */
  async send(
    operation: S3Operation,
    key: string,
    headers: Record<string, string>,
    body?: Uint8Array,
    signal?: AbortSignal,
  ): Promise<Response> {
    const op = OPERATIONS[operation];
    try {
      const known = this.#credentials();
      const credentials = known instanceof Promise ? await known : known;
      const a = this.address;
      const path = a.path(key);
      const config = this.#client.config as unknown as { systemClockOffset?: number };
      headers.host = a.host;
      if (body !== undefined) headers["content-length"] = String(body.byteLength);
      this.#signer.sign(
        {
          method: op.method,
          path,
          query: op.query,
          headers,
          payloadHash: body === undefined ? EMPTY_SHA256 : sha256Hex(body),
        },
        credentials,
        this.#region,
        Date.now() + (config.systemClockOffset ?? 0),
      );
      const own = this.#put;
      let ownFailed: ConnectFailed | null = null;
      if (own !== null && operation === "PutObject" && body !== undefined && ownPut(body)) {
        try {
          return await sendPut(own, path + op.search, headers, body, signal);
        } catch (err) {
          // Nothing was sent: fetch, which tries every address of the name, gets its turn.
          if (!(err instanceof ConnectFailed) || signal?.aborted) throw err;
          ownFailed = err;
        }
      }
      // A record, not a Headers object: fetch copies a record without iterating it.
      const sent: Record<string, string> = {};
      for (const name in headers) {
        // fetch sets Host and Content-Length itself (to the same values).
        if (name !== "host" && name !== "content-length") sent[name] = headers[name]!;
      }
      const res = await this.#fetch(a.origin + path + op.search, {
        method: op.method,
        headers: sent,
        body: body as Uint8Array<ArrayBuffer> | undefined,
        signal,
        // A redirect (another region, a moved bucket) is an error, as in the SDK.
        redirect: "manual",
      }).catch((err) => {
        // fetch fared no better: our connection's error says more (a certificate by name).
        throw ownFailed === null || signal?.aborted ? err : ownFailed.cause;
      });
      if (ownFailed !== null && this.#put === own) {
        // fetch reached the store where our own connection could not (a name whose first
        // address is unreachable from here, as IPv6 often is): PUTs go over fetch from now on.
        this.#put = null;
        own!.close();
        this.#onPutFallback?.(ownFailed.message);
      }
      return res;
    } catch (err) {
      throw classifyS3Error(err, `${operation} ${key}`);
    }
  }

  /**
   * The classified error for an answer that is not a success. A `RequestTimeTooSkewed`, or a
   * 403 whose `Date` is more than {@linkcode MAX_SKEW_MS} from the signing clock (a HEAD's
   * error has no body to name it), corrects the clock offset from that `Date` first, as the
   * SDK does.
   */
  async fail(res: Response, operation: S3Operation, key: string): Promise<StoreError> {
    const err = await s3ErrorFrom(res);
    const config = this.#client.config as unknown as { systemClockOffset?: number };
    const serverTime = Date.parse(res.headers.get("date") ?? "");
    const offset = config.systemClockOffset ?? 0;
    if (
      !Number.isNaN(serverTime) &&
      (err.name === "RequestTimeTooSkewed" ||
        (res.status === 403 && Math.abs(serverTime - (Date.now() + offset)) > MAX_SKEW_MS))
    ) {
      config.systemClockOffset = serverTime - Date.now();
      // Named for what it is, so it is retried (signed with the corrected clock).
      err.name = "RequestTimeTooSkewed";
    }
    // A store that names the region it expects (AWS in x-amz-bucket-region, MinIO and
    // versitygw in AuthorizationHeaderMalformed) gets it from now on, as the SDK's region
    // redirects do: the retry is signed for it.
    const hinted = res.headers.get("x-amz-bucket-region") ??
      (err.name === "AuthorizationHeaderMalformed" ? err.Region : undefined);
    if (hinted && hinted !== this.#region && /^[a-z0-9-]{1,40}$/.test(hinted)) {
      const moved = this.#region;
      this.#region = hinted;
      const classified = classifyS3Error(err, `${operation} ${key}`);
      return new StoreError(
        `${classified.message} (signing for region ${hinted} instead of ${moved} from now on: set S3_REGION=${hinted})`,
        true,
        classified.code,
        { cause: err },
      );
    }
    return classifyS3Error(err, `${operation} ${key}`);
  }

  /**
   * The client's credentials: its provider (the SDK's chain, memoized, refreshed before they
   * expire) is asked on every request, as the SDK's own signer does, until it gives credentials
   * without an expiry: the SDK's provider then answers those for good, and so does this, without
   * a call into the provider.
   */
  #credentials(): S3Credentials | Promise<S3Credentials> {
    return this.#lasting ?? this.#askCredentials();
  }

  #lasting: S3Credentials | null = null;

  async #askCredentials(): Promise<S3Credentials> {
    const provider = this.#client.config.credentials as unknown as () => Promise<
      S3Credentials & { expiration?: Date }
    >;
    const c = await provider();
    if (typeof c?.accessKeyId !== "string" || typeof c.secretAccessKey !== "string") {
      throw new Error("Resolved credential object is not valid");
    }
    if (c.expiration === undefined) this.#lasting = c;
    return c;
  }
}
