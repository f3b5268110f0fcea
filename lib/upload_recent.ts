/**
 * The bounded memory of keys recently stored (or found present), so a popular image is not
 * written again on every miss. Oldest first; entries expire, since objects can be expired or
 * deleted later.
 */
export class RecentKeys {
  /** Key → when it was remembered, oldest first. */
  readonly #at = new Map<string, number>();

  constructor(
    /** How many keys are remembered at most (0: none). */
    private readonly limit: number,
    /** How long a key is remembered (ms). */
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  /** True while the key was stored recently enough to be remembered. */
  has(key: string): boolean {
    const at = this.#at.get(key);
    if (at === undefined) return false;
    if (this.now() - at < this.ttlMs) return true;
    this.#at.delete(key); // it may have been expired or deleted since
    return false;
  }

  /** Remembers `key` as just stored, forgetting the oldest key past the limit. */
  remember(key: string): void {
    if (this.limit === 0) return;
    this.#at.delete(key);
    this.#at.set(key, this.now());
    if (this.#at.size > this.limit) this.#at.delete(this.#at.keys().next().value!);
  }

  /** Forgets `baseKey` and its variants (`<baseKey>-<suffix>`); returns how many. */
  forgetVariants(baseKey: string): number {
    let n = 0;
    for (const key of this.#at.keys()) {
      if (key === baseKey || key.startsWith(baseKey + "-")) {
        this.#at.delete(key);
        n++;
      }
    }
    return n;
  }
}
