/**
 * One write of one body: bounded by its own deadline and by shutdown's, whichever comes first,
 * and answered as a typed verdict (any failure becomes a {@linkcode StoreError}).
 */
import { type PutResult, type Store, StoreError } from "./store/store.ts";
import type { UploadJob } from "./upload_types.ts";
import { errorMessage } from "./error_message.ts";
import { after } from "./timers.ts";

/** How long one write may take when the options do not say. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 30_000;

/** How one write ended. */
export type AttemptVerdict =
  | { ok: true; result: PutResult }
  | {
    ok: false;
    error: StoreError;
    /** The write got no answer within its own deadline. */
    timedOut: boolean;
    /** Shutdown's deadline had passed when the write ended. */
    shutdown: boolean;
  };

/** Writes `job` once; never throws. */
export async function writeOnce(
  store: Store,
  job: UploadJob,
  ifAbsent: boolean,
  timeoutMs: number,
  shutdown: AbortSignal,
): Promise<AttemptVerdict> {
  const attemptAbort = new AbortController();
  const onShutdown = () => attemptAbort.abort(shutdown.reason);
  shutdown.addEventListener("abort", onShutdown, { once: true });
  // Ref'd: the uploader awaits the write, and shutdown awaits the uploader.
  const cancelTimeout = after(timeoutMs, () => {
    attemptAbort.abort(new DOMException(`no answer within ${timeoutMs / 1000} s`, "TimeoutError"));
  }, { ref: true });
  const settled = () => {
    cancelTimeout();
    shutdown.removeEventListener("abort", onShutdown);
  };
  try {
    const result = await store.put(job.key, job.body, {
      contentType: job.contentType,
      cacheControl: job.cacheControl,
      headers: job.headers,
      ifAbsent,
      signal: attemptAbort.signal,
    }).finally(settled);
    return { ok: true, result };
  } catch (err) {
    const aborted = shutdown.aborted;
    const timedOut = !aborted && attemptAbort.signal.aborted;
    const error = timedOut
      ? new StoreError(
        `write timed out: no answer within ${timeoutMs / 1000} s`,
        true,
        "TimeoutError",
        { cause: err },
      )
      : err instanceof StoreError
      ? err
      : new StoreError(errorMessage(err), true, "Error", { cause: err });
    return { ok: false, error, timedOut, shutdown: aborted };
  }
}
