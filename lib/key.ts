/**
 * Object keys: the lowercase hex MD5 of the raw request path, optionally under a folder.
 *
 * The path is hashed exactly as the client sent it (no decoding, no normalisation, no query
 * string) so that a page can compute the same key from the URL it built.
 */
import { createHash } from "node:crypto";
import { accepts } from "./negotiation.ts";

/** Returns the lowercase hex MD5 digest of a string's UTF-8 bytes. */
export function md5Hex(text: string): string {
  return createHash("md5").update(text, "utf8").digest("hex");
}

/** Trims leading and trailing slashes from a folder prefix ("/a/b/" → "a/b"). */
export function normalizeFolder(folder: string): string {
  return folder.replace(/^\/+|\/+$/g, "");
}

/** Returns the path part of a raw request target: everything before the first "?". */
export function pathOf(rawTarget: string): string {
  const q = rawTarget.indexOf("?");
  return q === -1 ? rawTarget : rawTarget.slice(0, q);
}

/**
 * Returns the object key for a raw request path: `md5(path)`, or `folder/md5(path)`, followed
 * by a {@linkcode variantSuffix} when the answer depends on `Accept`.
 * `folder` must already be normalised with {@linkcode normalizeFolder}.
 */
export function objectKey(rawPath: string, folder = "", variant = ""): string {
  const hash = md5Hex(rawPath) + variant;
  return folder === "" ? hash : `${folder}/${hash}`;
}

/** The image formats imgproxy negotiates from `Accept`, in the order variant suffixes use. */
export const NEGOTIATED_FORMATS = ["avif", "webp", "jxl"] as const;

/**
 * Returns the variant suffix for an `Accept` header: "-" plus each of avif, webp, jxl that
 * `Accept` names as `image/<format>`, in that order ("" when it names none).
 *
 * imgproxy only checks whether `Accept` contains those three types, so two requests with the
 * same suffix get the same output from it. The suffix-less key is the variant for a client that
 * accepts none of them, which is also what imgproxy sends when it does not negotiate at all.
 */
export function variantSuffix(accept: string | null): string {
  if (accept === null || accept === "") return "";
  let suffix = "";
  for (const format of NEGOTIATED_FORMATS) {
    if (accepts(accept, format)) suffix += `-${format}`;
  }
  return suffix;
}
