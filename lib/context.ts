/**
 * One request's inputs, computed once where the server hands the request over, and passed
 * explicitly to every layer (store lookup, coalescing, the proxy handler): the raw target, the
 * client's address, Host and scheme, and the signal that cancels work done for the request.
 */
import { type CacheRules, ruleFor, type RuleVerdict } from "./cache_rules.ts";
import { pathOf } from "./key.ts";
import { type ForwardHeaders, upstreamRequestHeaders } from "./headers.ts";
import type { AnswerSent } from "./answer_sent.ts";

/** Connection details `Deno.serve` passes to handlers. */
export interface ConnInfo {
  remoteAddr?: { hostname?: string } | Deno.Addr;
  /** Settles when the answer has been sent: resolves when in full, rejects when not. */
  readonly completed?: Promise<void>;
}

/**
 * A request handler in `Deno.serve` shape; the proxy's own listener also says how each answer's
 * body ended (`sent`).
 */
export type Handler = (req: Request, info?: ConnInfo, sent?: AnswerSent) => Promise<Response>;

/** How a body ended: sent in full, cut because the client left, or failed. */
export type BodyEnd = "complete" | "aborted" | "error";

/**
 * A body that a layer already passes through JavaScript (the tee that copies imgproxy's answer
 * to the uploader) counts for whoever asked (the access log), so the body is not wrapped a
 * second time just to be counted: the stream that layer returned, and once it has ended, how
 * many bytes it passed on and how it ended.
 */
export class BodyMeter {
  /** The stream the counting layer returned; null until one does. */
  stream: ReadableStream<Uint8Array> | null = null;
  #ended: { bytes: number; end: BodyEnd } | null = null;
  #onEnd: ((bytes: number, end: BodyEnd) => void) | null = null;

  /** Called once by the counting layer, when `stream` ends. */
  ended(bytes: number, end: BodyEnd): void {
    if (this.#ended !== null) return;
    this.#ended = { bytes, end };
    this.#onEnd?.(bytes, end);
  }

  /** Calls `fn` once `stream` has ended (at once if it already has). */
  onEnd(fn: (bytes: number, end: BodyEnd) => void): void {
    if (this.#ended !== null) fn(this.#ended.bytes, this.#ended.end);
    else this.#onEnd = fn;
  }
}

/** A handler of the proxy's layers: takes the request's context. */
export type ContextHandler = (ctx: RequestContext) => Promise<Response>;

/**
 * The request target (path and query) exactly as the client sent it, from `req.url` and the
 * `Host` header; null when it cannot be mapped unambiguously (a `Host` containing "/").
 *
 * `Deno.serve` builds `req.url` as scheme + "://" + Host + target without normalising the
 * target, while `new URL(req.url)` would resolve dot segments and re-encode characters.
 */
function targetOf(url: string, host: string | null): string | null {
  const start = url.indexOf("://") + 3;
  if (host !== null) {
    if (host.includes("/")) return null;
    if (url.startsWith(host, start) && url.charCodeAt(start + host.length) === 47 /* / */) {
      return url.slice(start + host.length);
    }
  }
  // No Host header (HTTP/1.0) or an absolute-form target: the authority holds no "/".
  const slash = url.indexOf("/", start);
  return slash === -1 ? "/" : url.slice(slash);
}

/** {@linkcode targetOf} for a request as `Deno.serve` hands it over. */
export function rawTarget(req: Request): string | null {
  return targetOf(req.url, req.headers.get("host"));
}

/** What the proxy's layers know about one request. */
export class RequestContext {
  /** The request (its method, headers and body are forwarded). */
  readonly req: Request;
  /** The target exactly as the client sent it; null when it cannot be mapped. */
  readonly target: string | null;
  /** The `Host` header the client sent, if any. */
  readonly host: string | null;
  /** How the client reached the proxy. */
  readonly proto: "http" | "https";
  /** The client's IP address, when known. */
  readonly clientIp: string | undefined;
  /**
   * Set by a layer that wants the answer's body counted (the access log), before it hands the
   * request on; a layer that passes the body through JavaScript anyway counts it here.
   */
  meter: BodyMeter | undefined;
  #signal: AbortSignal | undefined;
  /** Aborts {@linkcode RequestContext.signal} when this context's work owns it (shared). */
  #work: AbortController | undefined;
  #info: ConnInfo | undefined;
  /**
   * From the proxy's own listener: how the answer's body ended, told by its connection (see
   * lib/answer_sent.ts). Undefined under `Deno.serve` and for a request made in-process.
   */
  sent: AnswerSent | undefined;
  /** The cache rules' verdict, once judged (undefined: not yet). */
  #rule: RuleVerdict | undefined;
  #forwarded: ForwardHeaders | undefined;

  constructor(
    req: Request,
    target: string | null,
    host: string | null,
    proto: "http" | "https",
    clientIp: string | undefined,
    signal?: AbortSignal,
    info?: ConnInfo,
    meter?: BodyMeter,
  ) {
    this.req = req;
    this.target = target;
    this.host = host;
    this.proto = proto;
    this.clientIp = clientIp;
    this.#signal = signal;
    this.#info = info;
    this.meter = meter;
  }

  /**
   * From the server: settles once the answer has been handed over, resolving when it was sent
   * in full and rejecting when not (the client left, the body failed). Undefined for a request
   * made in-process. Whoever asks for it must handle its rejection; the runtime creates it only
   * when first asked for.
   */
  get completed(): Promise<void> | undefined {
    return this.#info?.completed;
  }

  /**
   * Aborts when the work done for this request should stop: the client went away, or (for a
   * request asked on behalf of several clients) every one of them did. Taken from the request
   * only when first asked for: a store hit never needs it.
   */
  get signal(): AbortSignal {
    return this.#signal ??= this.req.signal;
  }

  /**
   * The headers imgproxy is sent for this request ({@linkcode upstreamRequestHeaders}), built
   * from the client's once, by the first layer that asks (coalescing keys on them, the proxy
   * sends them and admission judges by them).
   */
  get forwarded(): ForwardHeaders {
    return this.#forwarded ??= upstreamRequestHeaders(this.req.headers, {
      ip: this.clientIp,
      host: this.host,
      proto: this.proto,
    });
  }

  /**
   * The controller of {@linkcode RequestContext.signal} for a request asked on behalf of
   * several clients (the coalescer's, which aborts it once every client has gone): the layer
   * that does the work may abort it too (the proxy, when imgproxy does not answer in time),
   * instead of making a controller of its own that follows the signal. Undefined when the
   * signal is the client's own (it cannot be aborted from here).
   */
  get work(): AbortController | undefined {
    return this.#work;
  }

  /**
   * The cache rules' verdict on the target's path (null: cached), judged by the first layer
   * that asks (the store lookup, else the proxy) and kept for the layers after it: every layer
   * applies the same `CACHE_ONLY` and `CACHE_SKIP`. Only asked when rules are set.
   */
  ruleVerdict(rules: CacheRules): RuleVerdict {
    if (this.#rule !== undefined) return this.#rule;
    return this.#rule = this.target === null ? null : ruleFor(rules, pathOf(this.target));
  }

  /**
   * The same request, asked on behalf of several clients: its work is cancelled by `work`'s
   * signal. The meter and the rules' verdict go along: whoever reads the meter checks the body
   * it got is the metered stream (an answer shared with others is not).
   */
  shared(work: AbortController): RequestContext {
    const copy = new RequestContext(
      this.req,
      this.target,
      this.host,
      this.proto,
      this.clientIp,
      work.signal,
      undefined,
      this.meter,
    );
    copy.#work = work;
    copy.#rule = this.#rule;
    copy.#forwarded = this.#forwarded;
    return copy;
  }
}

/** The context of a request as `Deno.serve` (or the proxy's listener) hands it over. */
export function contextOf(req: Request, info?: ConnInfo, sent?: AnswerSent): RequestContext {
  const url = req.url;
  const host = req.headers.get("host");
  const remote = info?.remoteAddr as { hostname?: string } | undefined;
  const ctx = new RequestContext(
    req,
    targetOf(url, host),
    host,
    url.startsWith("https:") ? "https" : "http",
    remote?.hostname,
    undefined,
    info,
  );
  ctx.sent = sent;
  return ctx;
}

/**
 * The context of a request made in-process (the warm command) for exactly `target`, whatever
 * `req.url` says: `new Request()` normalises its URL.
 */
export function contextFor(req: Request, target: string): RequestContext {
  const host = req.headers.get("host");
  return new RequestContext(
    req,
    target,
    host,
    req.url.startsWith("https:") ? "https" : "http",
    undefined,
  );
}

/** A `Deno.serve` handler that computes each request's context once and hands it to `inner`. */
export function serveContexts(inner: ContextHandler): Handler {
  return (req, info, sent) => inner(contextOf(req, info, sent));
}
