/**
 * Cache rules: which request paths are cached at all. `CACHE_ONLY` and `CACHE_SKIP` are
 * regular expressions matched against the raw request path (exactly as the client sent it,
 * percent-encoding included, without the query string); a path outside `CACHE_ONLY` or inside
 * `CACHE_SKIP` is neither looked up nor stored: it goes to imgproxy as is.
 */

/** The two expressions (null: not set). */
export interface CacheRules {
  only: RegExp | null;
  skip: RegExp | null;
}

/** Why a path is left out of the cache; null when it is cached. */
export type RuleVerdict = "outside CACHE_ONLY" | "matches CACHE_SKIP" | null;

/** Judges one raw path (no query string) against the rules. */
export function ruleFor(rules: CacheRules, rawPath: string): RuleVerdict {
  // A RegExp without the g or y flag keeps no state between test() calls.
  if (rules.only !== null && !rules.only.test(rawPath)) return "outside CACHE_ONLY";
  if (rules.skip !== null && rules.skip.test(rawPath)) return "matches CACHE_SKIP";
  return null;
}

/**
 * The rules a handler applies per request: null when none are set at all (so a request
 * without them pays nothing).
 */
export function activeRules(rules: CacheRules | undefined): CacheRules | null {
  return rules !== undefined && (rules.only !== null || rules.skip !== null) ? rules : null;
}
