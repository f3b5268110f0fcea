/**
 * Warming one path: gets it stored, in process, through the same handler, uploader and store
 * the proxy uses.
 *
 * - A key already in the store is reported "already present" without asking imgproxy, so a run
 *   can be interrupted and started again.
 * - The path that reaches imgproxy and the key are byte-for-byte the list's path: each request
 *   is handed over with its target in its context ({@linkcode contextFor}), because
 *   `new Request(url)` normalises the URL (`..`, `%2e%2e`, `\`).
 * - After a body has been read, the worker waits for the uploader's `onSettled` report for that
 *   key ({@linkcode UploadOutcomes}, passed to `createApp` as `onUploadSettled`), bounded by a
 *   deadline so a run never hangs.
 */
import type { App } from "./app.ts";
import { contextFor, type RequestContext } from "./context.ts";
import { errorMessage as message } from "./error_message.ts";
import { objectKey, pathOf } from "./key.ts";
import { Deadline } from "./timers.ts";
import type { UploadOutcomes } from "./upload_outcomes.ts";

/** The origin warm-up requests are addressed to (never contacted: the handler runs in process). */
export const WARM_ORIGIN = "http://warm.invalid";

/**
 * The request (with its context) the handler is given for `target`. `new Request()` parses its
 * URL with the WHATWG rules, so `req.url` comes back normalised (`/a/../b` → `/b`, `%2e%2e` →
 * resolved, `\` → `/`); the context carries `target` exactly as listed, for the handler and the
 * key.
 */
export function warmRequest(target: string): RequestContext {
  let req: Request;
  try {
    req = new Request(WARM_ORIGIN + target);
  } catch {
    req = new Request(WARM_ORIGIN + "/");
  }
  return contextFor(req, target);
}

/** The result of one path. */
export type Outcome =
  | { kind: "stored" }
  | { kind: "present" }
  | { kind: "failed"; reason: string };

/** The parts of the app a warm run uses. */
export type WarmApp = Pick<App, "store" | "uploader" | "handle"> & {
  config: { readonly folder: string };
};

/** Settings of {@linkcode warmOne} (and, through it, of each path of a run). */
export interface WarmSettings {
  /** How long to wait for the upload of one body to settle. */
  settleTimeoutMs: number;
  /** How often a wait for an upload also checks whether any upload is still in flight. */
  pollIntervalMs: number;
  /**
   * Called before the first request that needs imgproxy; false stops the run (a failure),
   * "stopped" means the run was interrupted while waiting (the path is not attempted).
   */
  ready?: () => Promise<boolean | "stopped">;
}

async function readAll(body: ReadableStream<Uint8Array> | null): Promise<number> {
  if (body === null) return 0;
  let n = 0;
  for await (const chunk of body) n += chunk.byteLength;
  return n;
}

/** Gets one path stored; never throws. */
export async function warmOne(
  app: WarmApp,
  outcomes: UploadOutcomes,
  target: string,
  settings: WarmSettings,
): Promise<Outcome | null> {
  const key = objectKey(pathOf(target), app.config.folder);
  try {
    if (await app.store.has(key)) return { kind: "present" };
  } catch (err) {
    return { kind: "failed", reason: `store check failed: ${message(err)}` };
  }
  const ready = settings.ready === undefined ? true : await settings.ready();
  if (ready === "stopped") return null; // interrupted before it could be tried
  if (!ready) return { kind: "failed", reason: "imgproxy is not ready" };
  outcomes.watch(key);
  try {
    const res = await app.handle(warmRequest(target));
    if (res.status !== 200) {
      await res.body?.cancel();
      return { kind: "failed", reason: `HTTP ${res.status}` };
    }
    const xCache = res.headers.get("x-cache") ?? "";
    if (/^HIT\b/i.test(xCache)) {
      await res.body?.cancel();
      return { kind: "present" };
    }
    if (/^BYPASS\b/i.test(xCache)) {
      await res.body?.cancel();
      const reason = /reason=([^;,\s]+)/.exec(xCache)?.[1] ?? "unknown";
      return { kind: "failed", reason: `not cacheable (${reason})` };
    }
    try {
      await readAll(res.body);
    } catch (err) {
      return { kind: "failed", reason: `body cut short: ${message(err)}` };
    }
    return await settle(app, outcomes, key, settings);
  } catch (err) {
    return { kind: "failed", reason: message(err) };
  } finally {
    outcomes.unwatch(key);
  }
}

/** Waits until the uploader reports how it ended with `key`, up to the settle deadline. */
async function settle(
  app: WarmApp,
  outcomes: UploadOutcomes,
  key: string,
  settings: WarmSettings,
): Promise<Outcome> {
  // The monotonic clock: a wall-clock step must not end the wait early or stretch it.
  const deadline = new Deadline(settings.settleTimeoutMs);
  for (;;) {
    const left = deadline.remainingMs;
    const outcome = left > 0
      ? await outcomes.next(key, Math.min(left, settings.pollIntervalMs))
      : null;
    if (outcome !== null) {
      switch (outcome.kind) {
        case "stored":
          return { kind: "stored" };
        case "exists": // stored by someone else since the check (a conditional write said so)
          return { kind: "present" };
        case "failed":
          return { kind: "failed", reason: `upload failed: ${outcome.reason}` };
        case "skipped":
          // Another body for this key is being written: its outcome is reported next.
          if (outcome.reason === "in-progress") continue;
          if (outcome.reason === "recently-stored") return { kind: "present" };
          return { kind: "failed", reason: `upload skipped: ${outcome.reason}` };
      }
    }
    // Outcomes are reported synchronously, so with nothing in flight none is still to come
    // (the handler never started an upload for this key).
    const idle = app.uploader.pending === 0;
    if (idle || left <= 0) {
      if (await app.store.has(key).catch(() => false)) return { kind: "stored" };
      return {
        kind: "failed",
        reason: idle
          ? "not stored (no upload started)"
          : `upload did not settle within ${settings.settleTimeoutMs / 1000} s`,
      };
    }
  }
}
