/** How long a test waits for an event before it fails instead of hanging the suite. */
export const SETTLE_BOUND_MS = 30_000;

/**
 * Resolves as `promise` does, or rejects naming `what` once `ms` pass first, so an event that
 * never comes fails the test with a clear message instead of hanging the suite. The timer is
 * cleared when the wait ends either way, which keeps Deno's sanitizers on.
 */
export async function within<T>(
  what: string,
  promise: Promise<T>,
  ms = SETTLE_BOUND_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
