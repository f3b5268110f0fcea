/**
 * Comparing a client's credentials with a configured secret without leaking it through timing.
 */
import type { Buffer } from "node:buffer";
import { createHash, timingSafeEqual } from "node:crypto";

/** The SHA-256 digest of a string's UTF-8 bytes. */
export function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/**
 * Compares a header value with the expected one in constant time: digests of equal length,
 * compared without an early exit, so response timing tells nothing about the secret.
 */
export function sameSecret(given: string | null, expectedDigest: Buffer): boolean {
  return given !== null && timingSafeEqual(sha256(given), expectedDigest);
}
