/**
 * The runtime's per-connection HTTP server, `serveHttpOnConnection`: the function `Deno.serve`
 * itself is built on, reached through the runtime's internals (it is not public API).
 */
/** The runtime's per-connection HTTP server (what `Deno.serve` runs for each connection). */
export type ServeOnConnection = (
  conn: Deno.Conn,
  signal: AbortSignal,
  handler: (
    req: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ) => Response | Promise<Response>,
  onError: (err: unknown) => Response,
  onListen: () => void,
) => { finished: Promise<void>; shutdown(): Promise<void> };

export function serveOnConnection(): ServeOnConnection {
  // deno-lint-ignore no-explicit-any
  const internal = (Deno as any)[(Deno as any).internal];
  const fn = internal?.serveHttpOnConnection;
  if (typeof fn !== "function") {
    throw new Error("this Deno has no per-connection HTTP server (serveHttpOnConnection)");
  }
  return fn;
}
