/**
 * The rungs of the pass-through ladder (bench/ladder.ts): proxies to the bench upstream, each
 * adding one thing the real proxy does for an answer it passes through unstored, built from the
 * real modules of lib/ where the proxy has one, so the ladder measures the proxy's own code.
 *
 * - `bare`: `Deno.serve` + `fetch`, the fetched `Response` returned (the bench's bare proxy);
 * - `rewrap`: + the answer rebuilt as a new `Response` with the headers the proxy sends back
 *   (`clientResponseHeaders`, `X-Cache` set);
 * - `forward`: + the request's context (raw target, Host, client address: `contextOf`) and the
 *   headers imgproxy gets (`upstreamRequestHeaders`, as pairs), sent by the proxy's upstream
 *   client (`createUpstream`: the target check, `redirect: "manual"`);
 * - `follow`: + the client's signal (`req.signal`) followed by an `AbortController`;
 * - `signal`: + that controller's signal passed to `fetch`;
 * - `cancel`: + the upstream timeout in a `Deadlines` (what lib/proxy.ts does around the
 *   upstream call);
 * - `handler`: lib/proxy.ts's handler itself (+ admission, the bypass notice) on `Deno.serve`;
 * - `listener`: `cancel`'s handler behind the proxy's own listener (lib/server.ts: own accept
 *   loop, `serveHttpOnConnection`, the header, idle and send watches, the connection's account
 *   of how each answer ended);
 * - `conn`: `cancel`'s handler behind a plain accept loop handing each connection to
 *   `serveHttpOnConnection`, nothing watched (the runtime's share of the listener);
 * - `app`: the whole request path as `createApp` wires it (request context, coalescing, the
 *   handler; the access log as `ACCESS_LOG` says) behind the proxy's own listener, logging as
 *   main.ts does (stdout's lines held for a turn; LADDER_SINK=direct: a write per line,
 *   LADDER_SINK=discard: lines formatted, not written);
 * - `app-serve`: the same handler on `Deno.serve` instead of the listener.
 *
 * Usage: deno run --allow-net=127.0.0.1 --allow-env --allow-read --allow-write
 * bench/ladder_rungs.ts RUNG PORT UPSTREAM_PORT; the `app` rungs read the proxy's configuration
 * from the environment (IMGPROXY_URL, CACHE_DIR, ACCESS_LOG, ...). Prints `ready PORT`.
 */
import { clientResponseHeaders } from "../lib/headers.ts";
import { contextOf } from "../lib/context.ts";
import { createUpstream } from "../lib/upstream.ts";
import { Deadlines } from "../lib/timers.ts";
import { createHandler } from "../lib/proxy.ts";
import { createApp } from "../lib/app.ts";
import { denoEnv, loadConfig, logSettings } from "../lib/config.ts";
import { consoleSink, createLogger, servingSink } from "../lib/log.ts";
import { listen } from "../lib/server.ts";
import { serveOnConnection } from "../lib/serve_connection.ts";
import { Uploader } from "../lib/uploader.ts";
import { LocalStore } from "../lib/store/local.ts";

type Serve = (req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => Promise<Response>;

const [rung, portArg, upstreamPort] = Deno.args;
const port = Number(portArg ?? 0);
const base = `http://127.0.0.1:${upstreamPort}`;
const TIMEOUT_MS = 30_000;

function ready(p: number): void {
  console.log(`ready ${p}`);
}

function onDenoServe(handler: Serve): void {
  Deno.serve({ hostname: "127.0.0.1", port, onListen: ({ port }) => ready(port) }, handler);
}

/** What the proxy answers a pass-through with: imgproxy's headers less hop-by-hop, X-Cache. */
function rewrap(res: Response): Response {
  const headers = clientResponseHeaders(res.headers);
  headers.set("x-cache", "BYPASS; reason=cache-control");
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

const bare: Serve = async (req) => {
  const url = req.url;
  return await fetch(base + url.slice(url.indexOf("/", 8)), { headers: req.headers });
};

const rewrapped: Serve = async (req) => {
  const url = req.url;
  return rewrap(await fetch(base + url.slice(url.indexOf("/", 8)), { headers: req.headers }));
};

const upstream = createUpstream(base);

const forward: Serve = async (req, info) => {
  const ctx = contextOf(req, info);
  const res = await upstream({
    method: req.method,
    target: ctx.target!,
    headers: ctx.forwarded,
    body: req.body,
    signal: undefined as unknown as AbortSignal,
  });
  return rewrap(res);
};

const deadlines = new Deadlines(TIMEOUT_MS);

/**
 * lib/proxy.ts's steps around the upstream call, admission left out, up to `upTo`: the client's
 * signal followed by a controller (`follow`), that controller's signal given to `fetch`
 * (`signal`), the upstream timeout in a `Deadlines` (`timeout`).
 */
function cancelling(upTo: "follow" | "signal" | "timeout"): Serve {
  const passSignal = upTo !== "follow";
  const timeout = upTo === "timeout";
  return async (req, info) => {
    const ctx = contextOf(req, info);
    const clientSignal = ctx.signal;
    const controller = new AbortController();
    const onClientGone = () => controller.abort(clientSignal.reason);
    clientSignal.addEventListener("abort", onClientGone, { once: true });
    const cancelTimeout = timeout
      ? deadlines.add(() =>
        controller.abort(new DOMException("imgproxy did not answer in time", "TimeoutError"))
      )
      : null;
    let res: Response;
    try {
      res = await upstream({
        method: req.method,
        target: ctx.target!,
        headers: ctx.forwarded,
        body: req.body,
        signal: passSignal ? controller.signal : undefined as unknown as AbortSignal,
      });
    } finally {
      cancelTimeout?.();
      clientSignal.removeEventListener("abort", onClientGone);
    }
    return rewrap(res);
  };
}
const cancel = cancelling("timeout");

function config() {
  return loadConfig(denoEnv);
}

if (rung === "bare") onDenoServe(bare);
else if (rung === "rewrap") onDenoServe(rewrapped);
else if (rung === "forward") onDenoServe(forward);
else if (rung === "follow") onDenoServe(cancelling("follow"));
else if (rung === "signal") onDenoServe(cancelling("signal"));
else if (rung === "cancel") onDenoServe(cancel);
else if (rung === "handler") {
  const c = config();
  const logger = createLogger(logSettings(denoEnv), servingSink());
  const store = new LocalStore((c.store as { dir: string }).dir);
  const uploader = new Uploader(store, { ...c.upload, conditionalWrite: true }, logger);
  const handler = createHandler({
    upstream,
    uploader,
    logger,
    rules: {
      cacheVariants: c.cacheVariants,
      fallbackMaxAge: c.fallbackMaxAge,
      cookiePassthrough: c.cookiePassthrough,
      maxObjectBytes: c.upload.maxObjectBytes,
    },
    folder: c.folder,
    upstreamTimeoutMs: c.upstreamTimeoutMs,
  });
  onDenoServe((req, info) => handler(contextOf(req, info)));
} else if (rung === "listener") {
  const c = config();
  const logger = createLogger(logSettings(denoEnv), servingSink());
  const server = listen(
    { variable: "IMGPROXY_BIND", hostname: "127.0.0.1", port, ...c.clients, logger },
    cancel,
  );
  ready(server.addr.port);
} else if (rung === "conn") {
  const serveConn = serveOnConnection();
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  ready((listener.addr as Deno.NetAddr).port);
  const never = new AbortController().signal;
  const onError = () => new Response("Internal Server Error\n", { status: 500 });
  for await (const conn of listener) {
    serveConn(conn, never, cancel, onError, () => {}).finished.catch(() => {});
  }
} else if (rung === "app" || rung === "app-serve") {
  const c = config();
  // LADDER_SINK: `held` (main.ts's: a turn's lines in one write), `direct` (a write per line),
  // `discard` (lines formatted, not written).
  const mode = Deno.env.get("LADDER_SINK") ?? "held";
  const sink = mode === "direct"
    ? consoleSink
    : mode === "discard"
    ? { out: () => {}, err: () => {} }
    : servingSink();
  const logger = createLogger(logSettings(denoEnv), sink);
  const app = await createApp(c, logger);
  if (rung === "app-serve") onDenoServe(app.handler);
  else {
    const server = listen(
      {
        variable: "IMGPROXY_BIND",
        hostname: "127.0.0.1",
        port,
        ...c.clients,
        logger: app.warnings,
      },
      app.handler,
    );
    ready(server.addr.port);
  }
} else {
  console.error(
    "usage: ladder_rungs.ts bare|rewrap|forward|follow|signal|cancel|handler|listener|conn|app|app-serve PORT UPSTREAM_PORT",
  );
  Deno.exit(2);
}

// LADDER_EXIT_AFTER_MS: exit (normally, so `--cpu-prof` writes its profile) after that long.
const exitAfter = Number(Deno.env.get("LADDER_EXIT_AFTER_MS") ?? 0);
if (exitAfter > 0) setTimeout(() => Deno.exit(0), exitAfter);
