/**
 * What each per-request input costs, old way against new, measured inside a real `Deno.serve`
 * handler on the requests it is handed (their lazily built `url`, `headers` and `signal`).
 *
 * Old: the raw target read from a WeakMap of explicit targets, else recomputed from `req.url` and
 * `Host` by each layer (lookup, coalescing, proxy: three times on a miss); the shared signal put
 * in and read from a WeakMap; a `setTimeout`/`clearTimeout` pair per store lookup.
 * New: one context per request, the shared signal a field of a copy, the lookup deadline in the
 * shared `Deadlines` slots.
 * The listener's send limit, per answer: handing it over and its settling, against nothing (no
 * limit).
 *
 * Each piece is run `REPEAT` times per request, old and new alternating, for `REQUESTS` requests
 * over one connection; printed as ns per request (per single use of the piece).
 *
 * Usage: deno run --allow-net=127.0.0.1 bench/pieces.ts [REQUESTS] [REPEAT]
 */
import { contextOf, rawTarget, type RequestContext } from "../lib/context.ts";
import { Deadlines } from "../lib/timers.ts";
import { SendLimits } from "../lib/send_limit.ts";

const REQUESTS = Number(Deno.args[0] ?? 3000);
const REPEAT = Number(Deno.args[1] ?? 50);

const explicitTargets = new WeakMap<Request, string>();
const sharedSignals = new WeakMap<Request, AbortSignal>();
function oldRawTarget(req: Request): string | null {
  const explicit = explicitTargets.get(req);
  if (explicit !== undefined) return explicit;
  return rawTarget(req);
}

type Piece = {
  name: string;
  old: (req: Request) => unknown;
  now: (req: Request, ctx: RequestContext) => unknown;
};
const deadlines = new Deadlines(1000);
const send = new SendLimits({ graceMs: 10_000, minBytesPerSec: 1024 }).connection(() => {});
/** The answer of the request being served (built outside the timing, as the proxy builds it). */
let answer = new Response("ok");
const flight = new AbortController();
const pieces: Piece[] = [
  {
    name: "raw target, Host, scheme for a miss (3 layers → 1 context)",
    old: (req) => {
      oldRawTarget(req); // lookup
      oldRawTarget(req); // coalesce
      oldRawTarget(req); // proxy
      req.headers.get("host");
      return req.url.startsWith("https:");
    },
    now: (req) => contextOf(req),
  },
  {
    name: "shared signal for the coalesced request (WeakMap → context copy)",
    old: (req) => {
      sharedSignals.set(req, flight.signal);
      return sharedSignals.get(req) ?? req.signal;
    },
    now: (_req, ctx) => ctx.shared(flight).signal,
  },
  {
    name: "store lookup deadline (setTimeout/clearTimeout → Deadlines slot)",
    old: () => clearTimeout(setTimeout(() => {}, 1000)),
    now: () => deadlines.add(() => {})(),
  },
  {
    name: "send limit: answer handed over, then settled (none → shared StallWatch)",
    old: () => undefined,
    now: (req) => {
      send.handedOver(req, answer);
      send.idle();
    },
  },
];

const totals = pieces.map(() => ({ old: 0, now: 0 }));
let served = 0;
const done = Promise.withResolvers<void>();
const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
  const ctx = contextOf(req);
  answer = new Response("ok", { headers: { "content-length": "2", "x-cache": "HIT" } });
  pieces.forEach((p, i) => {
    const flip = served % 2 === 0;
    for (const which of flip ? ["old", "now"] as const : ["now", "old"] as const) {
      const t0 = performance.now();
      if (which === "old") { for (let k = 0; k < REPEAT; k++) p.old(req); }
      else for (let k = 0; k < REPEAT; k++) p.now(req, ctx);
      totals[i]![which] += performance.now() - t0;
    }
  });
  if (++served === REQUESTS) done.resolve();
  return new Response("ok");
});
const client = Deno.createHttpClient({ poolMaxIdlePerHost: 1 });
for (let i = 0; i < REQUESTS; i++) {
  await (await fetch(`http://127.0.0.1:${server.addr.port}/rs:fit:300/plain/a${i}.jpg`, {
    client,
    headers: { accept: "image/webp" },
  })).text();
}
await done.promise;
client.close();
await server.shutdown();
send.close();
console.log(`${REQUESTS} requests × ${REPEAT} repeats, ns per use:`);
pieces.forEach((p, i) => {
  const ns = (ms: number) => (ms * 1e6 / REQUESTS / REPEAT).toFixed(0).padStart(6);
  console.log(`old ${ns(totals[i]!.old)}  new ${ns(totals[i]!.now)}  ${p.name}`);
});
