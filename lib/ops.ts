/**
 * The operations listener (`METRICS_BIND`): the endpoints operators and orchestrators call
 * (metrics, health), apart from the images. Routing is by exact path, in one table
 * (`opsRoutes` in lib/app.ts builds it), so each endpoint is one entry.
 */

/** One endpoint: answers a request for its path. */
export type Route = (req: Request) => Response | Promise<Response>;

/** Endpoints by exact path. */
export type Routes = Readonly<Record<string, Route>>;

/** A short `text/plain` answer that no cache keeps. */
export function plainText(status: number, text: string, extra?: Record<string, string>): Response {
  return new Response(text + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...extra },
  });
}

/** A route that only reads: GET and HEAD (the same answer without its body), else 405. */
export function readOnly(route: Route): Route {
  return async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return plainText(405, "Method Not Allowed", { allow: "GET, HEAD" });
    }
    const res = await route(req);
    if (req.method === "GET" || res.body === null) return res;
    await res.body.cancel();
    return new Response(null, { status: res.status, headers: res.headers });
  };
}

/** The listener's handler: the route for the request's path, 404 for any other path. */
export function opsHandler(routes: Routes): (req: Request) => Promise<Response> {
  const table = new Map(Object.entries(routes));
  return async (req) => {
    const route = table.get(new URL(req.url).pathname);
    return route === undefined ? plainText(404, "Not Found") : await route(req);
  };
}
