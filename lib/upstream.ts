/**
 * The HTTP client that talks to imgproxy, sending the request target byte-for-byte as the
 * client sent it.
 *
 * `fetch` parses its URL with the WHATWG rules, which resolve `..` and `%2e%2e`, turn `\` into
 * `/` and percent-encode some characters, so it can send imgproxy another path than the client
 * asked for. When the URL survives that parse unchanged, `fetch` is used (it is the fast path);
 * otherwise the request goes through `node:http`, which writes the path as given.
 */
import http from "node:http";
import https from "node:https";
import { pipeline, Readable } from "node:stream";
import { ForwardHeaders } from "./headers.ts";

/** One request to imgproxy. */
export interface UpstreamRequest {
  method: string;
  /** The raw request target (path and query) exactly as received. */
  target: string;
  /** Sent as they are: built by `upstreamRequestHeaders` (which asks for identity). */
  headers: ForwardHeaders | Headers;
  body: ReadableStream<Uint8Array> | null;
  signal: AbortSignal;
}

/** Sends a request to imgproxy; rejects on network failure or abort. */
export type Upstream = (req: UpstreamRequest) => Promise<Response>;

/** True when `fetch` would send exactly `base + target`. */
export function fetchPreservesTarget(url: string): boolean {
  // A fragment survives the URL parse but is never sent.
  if (url.includes("#")) return false;
  try {
    return new URL(url).href === url;
  } catch {
    return false;
  }
}

/**
 * Targets made only of characters the WHATWG URL parser leaves alone anywhere in a path or
 * query, with no dot segment (no "/." and no "%2e"): such a target survives the parse as it is.
 */
const PLAIN_TARGET = /^\/(?:[A-Za-z0-9\-._~!$&()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$/;
const ENCODED_DOT = /%2e/i;

/** A cheap, conservative check: true only when `target` cannot change under the URL parser. */
function plainTarget(target: string): boolean {
  return PLAIN_TARGET.test(target) && !target.includes("/.") && !ENCODED_DOT.test(target);
}

/** Encodes a string's UTF-8 bytes one byte per char, which `node:http` writes unchanged. */
function bytesAsLatin1(text: string): string {
  // deno-lint-ignore no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return text;
  let out = "";
  for (const b of new TextEncoder().encode(text)) out += String.fromCharCode(b);
  return out;
}

/**
 * The error for a status no Response may carry (outside 200–599), else null: imgproxy failing,
 * which the client sees as a 502 on either path.
 */
function statusError(status: number): TypeError | null {
  return status < 200 || status > 599
    ? new TypeError(`imgproxy answered with status ${status}`)
    : null;
}

/** Response statuses that never have a body. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

function viaNodeHttp(base: URL, req: UpstreamRequest): Promise<Response> {
  const client = base.protocol === "https:" ? https : http;
  const prefix = base.pathname === "/" ? "" : base.pathname.replace(/\/+$/, "");
  const headers: Record<string, string> = {};
  for (const [k, v] of req.headers) headers[k] = v;
  if (req.body === null) {
    // No body goes up (Deno.serve gives a GET none, whatever it declared): a Content-Length
    // left in would make imgproxy wait for bytes that never come.
    delete headers["content-length"];
    delete headers["transfer-encoding"];
  }
  return new Promise((resolve, reject) => {
    const outgoing = client.request({
      host: base.hostname.replace(/^\[|\]$/g, ""),
      port: base.port === "" ? undefined : Number(base.port),
      method: req.method,
      path: bytesAsLatin1(prefix + req.target),
      headers,
      signal: req.signal,
    }, (incoming) => {
      // An answer no Response can carry (a status outside 200–599, a control character in a
      // header) is imgproxy failing: reject (the client gets 502), never throw here, where
      // nothing would catch it.
      try {
        const status = incoming.statusCode ?? 0;
        const bad = statusError(status);
        if (bad !== null) throw bad;
        const out = new Headers();
        const raw = incoming.rawHeaders;
        for (let i = 0; i + 1 < raw.length; i += 2) out.append(raw[i]!, raw[i + 1]!);
        // A reason phrase is informative only: drop one a Response would refuse.
        const statusText = /^[\t\x20-\x7e\x80-\xff]*$/.test(incoming.statusMessage ?? "")
          ? incoming.statusMessage
          : "";
        const noBody = NULL_BODY.has(status) || req.method === "HEAD";
        if (noBody) incoming.resume();
        const body = noBody ? null : Readable.toWeb(incoming) as ReadableStream<Uint8Array>;
        resolve(new Response(body, { status, statusText, headers: out }));
      } catch (err) {
        incoming.destroy();
        outgoing.destroy();
        reject(err);
      }
    });
    outgoing.on("error", reject);
    if (req.body === null) {
      outgoing.end();
    } else {
      // pipeline(), not pipe(): a client body that fails (the client went away mid-upload)
      // must fail this request, not throw an uncaught error that ends the process.
      pipeline(
        Readable.fromWeb(req.body as import("node:stream/web").ReadableStream),
        outgoing,
        (err) => {
          if (err) {
            outgoing.destroy(err);
            reject(err);
          }
        },
      );
    }
  });
}

/** Creates the upstream client for imgproxy at `baseUrl` (no trailing slash). */
export function createUpstream(baseUrl: string): Upstream {
  const base = new URL(baseUrl + "/");
  // When the base itself survives the parse, a plain target appended to it does too.
  const plainBase = fetchPreservesTarget(baseUrl + "/x");
  return (req) => {
    const url = baseUrl + req.target;
    if (!(plainBase && plainTarget(req.target)) && !fetchPreservesTarget(url)) {
      return viaNodeHttp(base, req);
    }
    return fetch(url, {
      method: req.method,
      headers: req.headers instanceof ForwardHeaders ? req.headers.pairs : req.headers,
      body: req.body,
      redirect: "manual",
      signal: req.signal,
      // @ts-ignore: Deno and browsers need this to stream a request body.
      duplex: req.body === null ? undefined : "half",
    }).then((res) => {
      // fetch lets a status no Response may be built with through: treat it as the failure
      // it is (the client gets 502), like the node:http path.
      const bad = statusError(res.status);
      if (bad !== null) {
        res.body?.cancel().catch(() => {});
        throw bad;
      }
      // Asked for identity (the headers say so: upstreamRequestHeaders), fetch decodes
      // nothing: the body and its Content-Encoding pass through as imgproxy sent them.
      return res;
    });
  };
}
