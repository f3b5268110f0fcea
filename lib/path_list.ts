/**
 * Lists of request paths, one a line, as the warm and purge commands (and the purge endpoint)
 * take them: a path or an image URL a line, blank lines and `#` comments skipped. Each path is
 * kept byte-for-byte, since the key is the MD5 of exactly those bytes.
 */

/** One entry of a list. */
export type ListEntry =
  | { line: number; target: string }
  | { line: number; error: string; text: string };

/**
 * Returns the request target (path and query) a list line names, or null when the line is
 * neither a path nor an http(s) URL.
 *
 * - `/path?query` is kept as is;
 * - `scheme://authority/path?query` gives everything from the first `/` after the authority,
 *   byte-for-byte (no `new URL()`: it would resolve dot segments and re-encode);
 * - a `#fragment` is dropped: clients never send it, so it is never part of a key.
 */
export function targetOf(text: string): string | null {
  const s = text.trim();
  let target: string;
  if (s.startsWith("/")) {
    target = s;
  } else {
    const m = /^https?:\/\/[^/?#]*/i.exec(s);
    if (m === null || m[0].length === s.indexOf("://") + 3) return null; // no authority
    const rest = s.slice(m[0].length);
    target = rest.startsWith("/") ? rest : "/" + rest;
  }
  const hash = target.indexOf("#");
  return hash === -1 ? target : target.slice(0, hash);
}

// deno-lint-ignore no-control-regex
const UNSENDABLE = /[\x00-\x20\x7f]/;
const NON_ASCII = /[\u0080-\u{10FFFF}]/u;

/**
 * Parses a list: one path or URL a line; blank lines and `#` comments are skipped. A target
 * with a space, a control character or a non-ASCII character is unusable: no HTTP client sends
 * one (browsers and the URL helper send `%20`, `caf%C3%A9`), so it would name a key no page
 * ever asks for.
 */
export function parseList(text: string): ListEntry[] {
  const entries: ListEntry[] = [];
  text.split("\n").forEach((raw, i) => {
    const s = raw.trim();
    if (s === "" || s.startsWith("#")) return;
    const target = targetOf(s);
    if (target === null) {
      entries.push({ line: i + 1, error: "not a path or http(s) URL", text: s });
    } else if (UNSENDABLE.test(target)) {
      entries.push({ line: i + 1, error: "space or control character (write %20)", text: s });
    } else if (NON_ASCII.test(target)) {
      entries.push({
        line: i + 1,
        error: "non-ASCII character (percent-encode its UTF-8 bytes, as browsers do)",
        text: s,
      });
    } else {
      entries.push({ line: i + 1, target });
    }
  });
  return entries;
}
