/** Small helpers the test suites and the e2e harness share. */

/** A loopback port free a moment ago: bound, noted, closed (nothing listens on it after). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** True when something exists at `path` (a dangling link included). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
