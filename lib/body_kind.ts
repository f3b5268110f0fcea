/**
 * What kind of body a `Response` carries, found without reading `body`: the `body` getter turns
 * a body of bytes or text into a stream, which the runtime must then pump through JavaScript
 * instead of writing it in one go.
 *
 * The web API has no way to ask, so this reads the runtime's own fields (Deno 2.9: the inner
 * response's `body`, an `InnerBody` whose `streamOrStatic` is a stream or `{ body }`, or, when
 * there is none, the serve fast path's text or bytes). When they are not where expected the
 * answer is `unknown`, which callers treat as a stream: slower, never wrong.
 * tests/body_kind_test.ts pins the answers on the Deno in use.
 */

/** How a response's body is held. */
export type BodyKind =
  | { kind: "none" }
  /** Bytes or text held whole: the runtime writes them in one go; `length` in bytes, if known. */
  | { kind: "whole"; length: number | null }
  | { kind: "stream" }
  | { kind: "unknown" };

interface Symbols {
  inner: symbol;
  fastBody: symbol | undefined;
}

let symbols: Symbols | null | undefined;

function symbolsOf(res: Response): Symbols | null {
  if (symbols !== undefined) return symbols;
  const own = Object.getOwnPropertySymbols(res);
  const inner = own.find((s) => s.description === "response");
  const fastBody = own.find((s) => s.description === "serve fast body");
  symbols = inner === undefined ? null : { inner, fastBody };
  return symbols;
}

const UNKNOWN: BodyKind = { kind: "unknown" };
const NONE: BodyKind = { kind: "none" };
const STREAM: BodyKind = { kind: "stream" };

/** How `res`'s body is held; `unknown` when the runtime's fields are not as expected. */
export function bodyKind(res: Response): BodyKind {
  const syms = symbolsOf(res);
  if (syms === null) return UNKNOWN;
  // deno-lint-ignore no-explicit-any
  const r = res as any;
  const inner = r[syms.inner];
  if (typeof inner !== "object" || inner === null || !("body" in inner)) return UNKNOWN;
  const body = inner.body;
  if (body === null || body === undefined) {
    // A text or bytes answer the runtime builds lazily keeps its body on the fast path.
    const fast = syms.fastBody === undefined ? null : r[syms.fastBody];
    if (fast === null || fast === undefined) return body === null ? NONE : UNKNOWN;
    if (typeof fast === "string") return { kind: "whole", length: utf8Length(fast) };
    if (fast instanceof Uint8Array) return { kind: "whole", length: fast.byteLength };
    return UNKNOWN;
  }
  const held = body.streamOrStatic;
  if (held instanceof ReadableStream) return STREAM;
  if (typeof held !== "object" || held === null || held.consumed !== false) return UNKNOWN;
  if (held.body instanceof Uint8Array) return { kind: "whole", length: held.body.byteLength };
  if (typeof held.body === "string") return { kind: "whole", length: utf8Length(held.body) };
  return UNKNOWN;
}

const encoder = new TextEncoder();

function utf8Length(text: string): number {
  // ASCII (every text the proxy writes itself) is one byte a character.
  // deno-lint-ignore no-control-regex
  return /^[\x00-\x7f]*$/.test(text) ? text.length : encoder.encode(text).byteLength;
}

let streamSymbols: { state: symbol; backing: symbol | undefined } | null | undefined;

/**
 * Where a stream stands (`readable`, `closed` once read to its end or cancelled, `errored`),
 * read from the runtime's fields as `bodyKind` does; `unknown` when they are not there, and for
 * a stream the runtime reads natively (a file's or a fetched body's), which gives no sign of a
 * client that left.
 */
export function streamState(
  stream: ReadableStream,
): "readable" | "closed" | "errored" | "unknown" {
  if (streamSymbols === undefined) {
    const own = Object.getOwnPropertySymbols(stream);
    const state = own.find((s) => s.description === "[[state]]");
    const backing = own.find((s) => s.description === "[[resourceBacking]]");
    streamSymbols = state === undefined ? null : { state, backing };
  }
  if (streamSymbols === null) return "unknown";
  // deno-lint-ignore no-explicit-any
  const s = stream as any;
  if (streamSymbols.backing !== undefined && s[streamSymbols.backing]) return "unknown";
  const state = s[streamSymbols.state];
  return state === "readable" || state === "closed" || state === "errored" ? state : "unknown";
}
