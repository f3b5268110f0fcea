/** A logger keeping the access lines' fields, for tests that wait on them. */
import type { Fields, Level, Logger } from "../../lib/log.ts";
import { within } from "./within.ts";

/** Keeps each access line's fields, with a way to wait for the next ones. */
export class AccessLines implements Logger {
  readonly lines: Fields[] = [];
  #waiters: { count: number; resolve: () => void }[] = [];
  log(_level: Level, msg: string, fields?: Fields): void {
    if (msg !== "Request") return;
    this.lines.push(fields ?? {});
    this.#waiters = this.#waiters.filter((w) => {
      if (this.lines.length < w.count) return true;
      w.resolve();
      return false;
    });
  }
  /** Resolves once `count` access lines have been written. */
  until(count: number): Promise<void> {
    if (this.lines.length >= count) return Promise.resolve();
    const written = new Promise<void>((resolve) => this.#waiters.push({ count, resolve }));
    return within(`access line ${count} (${this.lines.length} written)`, written);
  }
}
