/**
 * A STAND-IN for imgproxy, used by the end-to-end suite only when no real imgproxy binary is
 * available. It is not imgproxy and processes nothing: a processing request answers with the
 * source's bytes unchanged (no resize, no transcoding), marked `X-Imgproxy-Stand-In`.
 *
 * What it does reproduce is imgproxy's HTTP behaviour the proxy depends on (held to real
 * imgproxy by e2e/differential_test.ts): it binds `IMGPROXY_BIND`; `/health` answers 200
 * `imgproxy is running`; HEAD and OPTIONS answer 200 `text/plain` " " with a public
 * Cache-Control, checking nothing (what imgproxy 4.0.12 really sends); other methods 404; `IMGPROXY_KEY`/`IMGPROXY_SALT` signatures are checked (403);
 * `Vary: Accept` is sent when `IMGPROXY_AUTO_*`/`IMGPROXY_ENFORCE_*` asks for it; a source that
 * cannot be fetched (or a loopback one without `IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES`) gives
 * 404, a source's 4xx is passed on and its 5xx is 502; images carry `Content-Length` and
 * `Cache-Control: max-age=IMGPROXY_TTL, public`, shortened by `exp:` (expired: 404), copied from
 * the source with `IMGPROXY_CACHE_CONTROL_PASSTHROUGH`; `IMGPROXY_FALLBACK_IMAGE_DATA` answers a
 * failed download with that image (`IMGPROXY_FALLBACK_IMAGE_HTTP_CODE`, `..._TTL`); only images
 * carry `Vary`; `If-None-Match`/`If-Modified-Since` go to the source, whose `ETag`,
 * `Last-Modified` and 304 are passed on. e2e/differential_test.ts holds all of this to real
 * imgproxy.
 * `version` prints `stand-in` and `health` probes `IMGPROXY_BIND` like `imgproxy health`.
 * SIGTERM/SIGINT stop it gracefully with status 0.
 *
 * Run: `deno run --allow-net --allow-env e2e/support/stand_in_imgproxy.ts [version|health]`
 * (the executable `e2e/support/imgproxy-stand-in` does exactly that).
 */
import { createHmac } from "node:crypto";
import { Buffer } from "node:buffer";

/** What the stand-in reads from the environment. */
export interface StandInOptions {
  keys: Uint8Array[];
  salts: Uint8Array[];
  signatureSize: number;
  varyAccept: boolean;
  ttl: number;
  allowLoopback: boolean;
  cacheControlPassthrough: boolean;
  /** IMGPROXY_FALLBACK_IMAGE_DATA, decoded (PATH and URL are not modelled). */
  fallback: Uint8Array<ArrayBuffer> | null;
  fallbackStatus: number;
  /** IMGPROXY_FALLBACK_IMAGE_TTL; 0 when unset. */
  fallbackTtl: number;
}

const truthy = (v: string | undefined) => v !== undefined && /^(1|t|true|yes|on)$/i.test(v.trim());

function hexList(v: string | undefined): Uint8Array[] {
  if (v === undefined || v.trim() === "") return [];
  return v.split(",").map((h) => new Uint8Array(Buffer.from(h.trim(), "hex")));
}

/** Reads the options from an environment reader. */
export function standInOptions(env: (name: string) => string | undefined): StandInOptions {
  const negotiates = ["AUTO_WEBP", "AUTO_AVIF", "AUTO_JXL", "ENFORCE_WEBP", "ENFORCE_AVIF"]
    .concat(["ENFORCE_JXL", "ENABLE_WEBP_DETECTION"])
    .some((n) => truthy(env(`IMGPROXY_${n}`)));
  return {
    keys: hexList(env("IMGPROXY_KEY")),
    salts: hexList(env("IMGPROXY_SALT")),
    signatureSize: Number(env("IMGPROXY_SIGNATURE_SIZE") ?? "32") || 32,
    varyAccept: negotiates,
    ttl: Number(env("IMGPROXY_TTL") ?? "31536000"),
    allowLoopback: truthy(env("IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES")),
    cacheControlPassthrough: truthy(env("IMGPROXY_CACHE_CONTROL_PASSTHROUGH")),
    fallback: env("IMGPROXY_FALLBACK_IMAGE_DATA")
      ? new Uint8Array(Buffer.from(env("IMGPROXY_FALLBACK_IMAGE_DATA")!, "base64"))
      : null,
    fallbackStatus: Number(env("IMGPROXY_FALLBACK_IMAGE_HTTP_CODE") || "200"),
    fallbackTtl: Math.max(0, Number(env("IMGPROXY_FALLBACK_IMAGE_TTL") || "0")),
  };
}

/** imgproxy's signature of `path` (everything after the signature segment, leading "/"). */
export function sign(key: Uint8Array, salt: Uint8Array, path: string, size = 32): string {
  const mac = createHmac("sha256", key).update(salt).update(path).digest();
  return Buffer.from(mac.subarray(0, size)).toString("base64url");
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain", server: "imgproxy-stand-in", ...headers },
  });
}

/** Extracts the source URL from the path after the signature, or null when malformed. */
export function sourceOf(rest: string[]): string | null {
  let i = 0;
  while (i < rest.length && rest[i]!.includes(":") && rest[i] !== "plain") i++;
  const tail = rest.slice(i);
  if (tail.length === 0) return null;
  if (tail[0] === "plain") {
    let src = decodeURIComponent(tail.slice(1).join("/"));
    const at = src.lastIndexOf("@");
    if (at > src.indexOf("://")) src = src.slice(0, at);
    return src.replace(/^([a-z][a-z0-9+.-]*):\/(?!\/)/i, "$1://");
  }
  let b64 = tail.join("");
  const dot = b64.indexOf(".");
  if (dot !== -1) b64 = b64.slice(0, dot);
  try {
    return Buffer.from(b64.replace(/=+$/, ""), "base64url").toString("utf8");
  } catch {
    return null;
  }
}

function isLoopback(url: URL): boolean {
  const h = url.hostname;
  return h === "localhost" || h === "[::1]" || /^127\./.test(h);
}

/** The stand-in's request handler. */
export function standInHandler(options: StandInOptions): (req: Request) => Promise<Response> {
  const vary: Record<string, string> = options.varyAccept ? { vary: "Accept" } : {};
  return async (req) => {
    if (req.method === "HEAD" || req.method === "OPTIONS") {
      // As imgproxy 4.0.12 does: 200, text/plain " ", a public Cache-Control, nothing checked.
      return text(200, " ", { "cache-control": `max-age=${options.ttl}, public` });
    }
    if (req.method !== "GET") return text(404, " ");
    // The raw path as sent (req.url keeps it; new URL() would normalise it).
    const afterHost = req.url.slice(req.url.indexOf("/", req.url.indexOf("://") + 3));
    const path = afterHost.split("?")[0]!;
    if (path === "/health") {
      return text(200, "imgproxy is running", { "cache-control": "no-cache" });
    }
    if (path === "/") return new Response("<html>stand-in</html>", { status: 200 });
    if (path === "/favicon.ico") return text(404, " ");
    const segments = path.split("/").slice(1);
    const signature = segments[0] ?? "";
    const signed = "/" + segments.slice(1).join("/");
    if (options.keys.length > 0) {
      const ok = options.keys.some((k, i) =>
        sign(k, options.salts[i] ?? new Uint8Array(), signed, options.signatureSize) ===
          signature
      );
      if (!ok) return text(403, "Forbidden");
    } else if (signature === "") {
      return text(403, "Forbidden");
    }
    const rest = segments.slice(1);
    const expires = expiresOf(rest);
    if (expires !== null && expires > 0 && expires < Date.now() / 1000) {
      return text(404, "Invalid URL");
    }
    const source = sourceOf(rest);
    let url: URL;
    try {
      url = new URL(source ?? "");
    } catch {
      return text(404, "Invalid URL");
    }
    const answer = await download(url, req.headers, options);
    let maxAge = -1;
    let status = 200;
    let image: { body: Uint8Array<ArrayBuffer>; type: string; headers: Headers };
    if (answer instanceof Response) {
      if (answer.status === 304) {
        // The source's 304, with imgproxy's Cache-Control, Vary and the source's validators.
        const left = expires !== null && expires > 0
          ? Math.min(options.ttl, Math.max(0, Math.floor(expires - Date.now() / 1000)))
          : -1;
        const cc = cacheControlOf(left, 304, answer.headers, options);
        const headers = new Headers({ server: "imgproxy-stand-in", ...vary });
        if (cc !== null) headers.set("cache-control", cc);
        copyValidators(answer.headers, headers);
        return new Response(null, { status: 304, headers });
      }
      if (options.fallback === null) return answer;
      // As imgproxy does: the fallback image, its status, and at most the fallback TTL.
      image = { body: options.fallback, type: sniff(options.fallback), headers: new Headers() };
      status = options.fallbackStatus;
      if (options.fallbackTtl > 0) maxAge = options.fallbackTtl;
    } else image = answer;
    if (expires !== null && expires > 0) {
      const left = Math.max(0, Math.floor(expires - Date.now() / 1000));
      if (maxAge < 0 || left < maxAge) maxAge = Math.min(options.ttl, left);
    }
    const headers: Record<string, string> = {
      "content-type": image.type,
      "content-length": String(image.body.byteLength),
      "content-disposition": `inline; filename="${url.pathname.split("/").pop() || "image"}"`,
      server: "imgproxy-stand-in",
      "x-imgproxy-stand-in": "source bytes, not processed",
      ...vary,
    };
    const cacheControl = cacheControlOf(maxAge, status, image.headers, options);
    if (cacheControl !== null) headers["cache-control"] = cacheControl;
    const out = new Headers(headers);
    copyValidators(image.headers, out);
    return new Response(image.body, { status, headers: out });
  };
}

/** imgproxy's Cache-Control: an explicit max-age, none on errors, passthrough, TTL, no-cache. */
function cacheControlOf(
  maxAge: number,
  status: number,
  source: Headers,
  options: StandInOptions,
): string | null {
  if (maxAge > 0) return `max-age=${maxAge}, public`;
  if (status >= 400) return null;
  const passed = options.cacheControlPassthrough ? source.get("cache-control") : null;
  if (passed) return passed;
  return options.ttl > 0 ? `max-age=${options.ttl}, public` : "no-cache";
}

/** imgproxy 4 passes the source's validators on (IMGPROXY_ETAG_ENABLED, ..._LAST_MODIFIED_...). */
function copyValidators(from: Headers, to: Headers): void {
  for (const name of ["etag", "last-modified"]) {
    const v = from.get(name);
    if (v !== null) to.set(name, v);
  }
}

/**
 * The source image, or the answer imgproxy 4 gives when it cannot be downloaded; the client's
 * conditional headers are sent to the source, whose 304 is returned as it is.
 */
async function download(
  url: URL,
  request: Headers,
  options: StandInOptions,
): Promise<{ body: Uint8Array<ArrayBuffer>; type: string; headers: Headers } | Response> {
  if (!options.allowLoopback && isLoopback(url)) return text(404, "Source is unreachable");
  const conditional = new Headers();
  for (const name of ["if-none-match", "if-modified-since"]) {
    const v = request.get(name);
    if (v !== null) conditional.set(name, v);
  }
  let src: Response;
  try {
    src = await fetch(url, { headers: conditional, signal: AbortSignal.timeout(5000) });
  } catch {
    return text(404, "Source is unreachable");
  }
  if (src.status === 304) return src;
  if (!src.ok) {
    await src.body?.cancel();
    // imgproxy 4 passes a source's 4xx on and answers a 5xx with 502.
    const status = src.status >= 500 ? 502 : src.status >= 400 ? src.status : 404;
    return text(status, "Source is unreachable");
  }
  const body = new Uint8Array(await src.arrayBuffer());
  return { body, type: src.headers.get("content-type") ?? sniff(body), headers: src.headers };
}

/** The `exp:`/`expires:` option's unix time, or null without one. */
export function expiresOf(rest: string[]): number | null {
  for (const segment of rest) {
    if (!segment.includes(":") || segment === "plain") break;
    const [name, value] = segment.split(":");
    if (name === "exp" || name === "expires") return Number(value);
  }
  return null;
}

function sniff(body: Uint8Array): string {
  if (body[0] === 0x89 && body[1] === 0x50) return "image/png";
  if (body[0] === 0xff && body[1] === 0xd8) return "image/jpeg";
  return "application/octet-stream";
}

/** Parses imgproxy's bind syntax (":8080", "host:port") into Deno.serve options. */
export function parseBind(bind: string): { hostname: string; port: number } {
  const i = bind.lastIndexOf(":");
  const host = bind.slice(0, i).replace(/^\[|\]$/g, "");
  return { hostname: host === "" ? "0.0.0.0" : host, port: Number(bind.slice(i + 1)) };
}

async function serve(): Promise<number> {
  const env = (n: string) => Deno.env.get(n);
  const { hostname, port } = parseBind(env("IMGPROXY_BIND") ?? ":8080");
  const stop = new AbortController();
  for (const s of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(s, () => stop.abort());
  const server = Deno.serve({
    hostname,
    port,
    signal: stop.signal,
    onListen: (a) =>
      console.error(`imgproxy STAND-IN (not imgproxy) listening on ${a.hostname}:${a.port}`),
  }, standInHandler(standInOptions(env)));
  await server.finished;
  return 0;
}

async function health(): Promise<number> {
  const { hostname, port } = parseBind(Deno.env.get("IMGPROXY_BIND") ?? ":8080");
  const host = hostname === "0.0.0.0" ? "127.0.0.1" : hostname;
  try {
    const res = await fetch(`http://${host}:${port}/health`, { signal: AbortSignal.timeout(5000) });
    await res.body?.cancel();
    return res.status === 200 ? 0 : 1;
  } catch {
    return 1;
  }
}

if (import.meta.main) {
  const command = Deno.args[0];
  if (command === "version") {
    console.log("stand-in");
    Deno.exit(0);
  }
  Deno.exit(command === "health" ? await health() : await serve());
}
