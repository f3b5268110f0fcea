/**
 * The proxy's own health, for orchestrators (served on the operations listener):
 *
 * - `/livez`: the process serves requests (nothing else is checked: restarting a process whose
 *   imgproxy or store is down would not bring them back);
 * - `/readyz`: imgproxy answers its `/health` with 200 and the store answers a lookup, each
 *   within its time limit; otherwise 503 naming what failed.
 */
import type { Store } from "./store/store.ts";
import { plainText, readOnly, type Route } from "./ops.ts";
import { errorMessage } from "./error_message.ts";
import { timeLimit } from "./timers.ts";

/** `GET /livez`: 200 while the process serves. */
export const livez: Route = readOnly(() => plainText(200, "live"));

/** What readiness checks. */
export interface ReadinessOptions {
  /** imgproxy's base URL (its `/health` is asked). */
  imgproxyUrl: string;
  store: Store;
  /** A key that is looked up (never written): any answer, found or not, means usable. */
  probeKey: string;
  /** How long imgproxy's `/health` may take. */
  imgproxyTimeoutMs: number;
  /** How long the store lookup may take. */
  storeTimeoutMs: number;
  /** Set while the store is not being asked at all (the breaker is open), with why. */
  storeSkipped?: () => string | null;
}

const message = (err: unknown) =>
  (err as Error)?.name === "TimeoutError" ? null : errorMessage(err);

/** Asks imgproxy's `/health`; returns why it is not ready, or null. */
async function imgproxyProblem(url: string, timeoutMs: number): Promise<string | null> {
  // Ref'd: a readiness request awaits it.
  const limit = timeLimit(timeoutMs, `no answer within ${timeoutMs} ms`, { ref: true });
  try {
    const res = await fetch(`${url}/health`, { signal: limit.signal });
    await res.body?.cancel();
    return res.status === 200 ? null : `imgproxy: /health answered ${res.status}`;
  } catch (err) {
    return `imgproxy: ${message(err) ?? `no answer within ${timeoutMs} ms`}`;
  } finally {
    limit.clear();
  }
}

/**
 * Looks the probe key up; returns why the store is not usable, or null. The time limit holds
 * even for a store that ignores the signal (a stalled disk).
 */
async function storeProblem(o: ReadinessOptions): Promise<string | null> {
  const skipped = o.storeSkipped?.() ?? null;
  if (skipped !== null) return `store: ${skipped}`;
  // Ref'd: a readiness request awaits it.
  const limit = timeLimit(o.storeTimeoutMs, `no answer within ${o.storeTimeoutMs} ms`, {
    ref: true,
  });
  const signal = limit.signal;
  try {
    await new Promise<boolean>((resolve, reject) => {
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      o.store.has(o.probeKey, signal).then(resolve, reject);
    });
    return null;
  } catch (err) {
    return `store: ${
      signal.aborted ? `no answer within ${o.storeTimeoutMs} ms` : message(err) ?? "timed out"
    }`;
  } finally {
    limit.clear();
  }
}

/** Runs both checks at once; returns the problems (none: ready). */
export async function readinessProblems(o: ReadinessOptions): Promise<string[]> {
  const found = await Promise.all([
    imgproxyProblem(o.imgproxyUrl, o.imgproxyTimeoutMs),
    storeProblem(o),
  ]);
  return found.filter((p): p is string => p !== null);
}

/** `GET /readyz`: 200 "ready", or 503 with one line per problem. */
export function readyz(o: ReadinessOptions): Route {
  return readOnly(async () => {
    const problems = await readinessProblems(o);
    return problems.length === 0
      ? plainText(200, "ready")
      : plainText(503, `not ready\n${problems.join("\n")}`);
  });
}
