/**
 * Which errors of a listener are worth retrying, and how they read in a message: accept errors
 * that more descriptors, memory or a later connection can fix pause accepting; any other ends
 * the listener with a {@linkcode ListenError}.
 */
import { errorMessage } from "./error_message.ts";

/** An error's message starting lower-case, to follow "cannot listen on ADDRESS: ". */
export function reasonOf(err: unknown): string {
  const message = errorMessage(err);
  // "Address already in use (os error 98)" → "address already in use (os error 98)"
  return message.charAt(0).toLowerCase() + message.slice(1);
}

/** The address could not be listened on, or the listener failed while serving. */
export class ListenError extends Error {
  constructor(readonly variable: string, readonly address: string, cause: unknown) {
    super(`${variable}: cannot listen on ${address}: ${reasonOf(cause)}`, { cause });
    this.name = "ListenError";
  }
}

/** Accept errors that free descriptors, memory or a later connection can fix. */
const TRANSIENT_ACCEPT = new Set([
  "EMFILE",
  "ENFILE",
  "ENOBUFS",
  "ENOMEM",
  "ECONNABORTED",
  "ECONNRESET",
  "EPROTO",
  "EINTR",
  "EAGAIN",
]);

export function transientAcceptError(err: unknown): boolean {
  const e = err as { code?: string };
  return TRANSIENT_ACCEPT.has(e?.code ?? "") || err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.Interrupted;
}
