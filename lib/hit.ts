/**
 * What a read-mode hit must be before it is answered 200: a URL imgproxy would still serve
 * (not past its `exp:`), an object of the length recorded when it was written, and a body that
 * cannot hang the client.
 */
import type { StallWatch, Watched } from "./timers.ts";

/**
 * True when imgproxy would now refuse `target` as expired: one of its processing options is
 * `exp:<unix time>` or `expires:<unix time>` with a time above 0 and before now. imgproxy then
 * answers 404 "Invalid URL" (options/parser/apply.go, 4.0.12); the proxy leaves the answer to
 * imgproxy and does not ask the store.
 *
 * Read as imgproxy reads the path: the query cut, the first segment the signature, then option
 * segments (`name:arg:...`) up to the first segment without `:`. (Presets that set `expires`,
 * and a path prefix (`IMGPROXY_PATH_PREFIX`), are not seen here.)
 */
export function expired(target: string, nowMs = Date.now()): boolean {
  // Nearly every path: no expiry option at all.
  if (!target.includes("/exp")) return false;
  const query = target.indexOf("?");
  const path = query === -1 ? target : target.slice(0, query);
  const parts = path.split("/");
  // parts[0] is "" (the leading "/"), parts[1] the signature.
  const now = Math.floor(nowMs / 1000);
  for (let i = 2; i < parts.length; i++) {
    const args = parts[i]!.split(":");
    if (args.length === 1) break; // the source starts here
    if ((args[0] !== "exp" && args[0] !== "expires") || args.length !== 2) continue;
    // Go's strconv.ParseInt(s, 10, 64): an optional sign, then decimal digits.
    if (!/^[+-]?\d{1,19}$/.test(args[1]!)) continue;
    const at = Number(args[1]);
    if (at > 0 && at < now) return true;
  }
  return false;
}

/**
 * Why an opened object is not the one that was stored, or null: its length differs from the
 * one recorded when it was written (a truncated or foreign object). An object written before
 * lengths were recorded cannot be checked, and is served.
 */
export function lengthMismatch(
  recordedLength: number | null | undefined,
  contentLength: number | null,
): string | null {
  if (recordedLength === null || recordedLength === undefined) return null;
  if (contentLength === null) return null; // checked as the body streams
  return recordedLength === contentLength
    ? null
    : `stored ${recordedLength} bytes, the store has ${contentLength}`;
}

/** Hits up to this size are read whole before answering: nothing can stall mid-answer. */
export const WHOLE_HIT_BYTES = 256 * 1024;

/**
 * Streams a large hit's body through with an idle watch: a store that sends nothing for
 * `watch.limitMs` while the client waits, or ends the body short of `expectedLength`, errors
 * the stream, which cuts the client's transfer (it cannot take it for a complete answer).
 * Time spent waiting on a slow client is not counted: only reads from the store are watched.
 */
export function watchHitBody(
  body: ReadableStream<Uint8Array>,
  watch: StallWatch,
  expectedLength: number | null,
  onCut: (why: string) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let received = 0;
  let stalled = false;
  const watched: Watched = {
    since: -1,
    stall() {
      stalled = true;
      reader.cancel().catch(() => {});
    },
  };
  watch.watch(watched);
  const cut = (controller: ReadableStreamDefaultController<Uint8Array>, why: string) => {
    watch.unwatch(watched);
    onCut(why);
    controller.error(new Error(why));
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      watched.since = performance.now();
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (err) {
        cut(controller, `the store failed mid-body: ${(err as Error)?.message ?? err}`);
        return;
      }
      watched.since = -1;
      if (stalled) {
        cut(controller, `the store sent nothing for ${watch.limitMs / 1000} s`);
        return;
      }
      if (result.done) {
        if (expectedLength !== null && received !== expectedLength) {
          cut(controller, `the store sent ${received} of ${expectedLength} bytes`);
          return;
        }
        watch.unwatch(watched);
        controller.close();
        return;
      }
      received += result.value.byteLength;
      controller.enqueue(result.value);
    },
    cancel(reason) {
      // The client went away.
      watch.unwatch(watched);
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
