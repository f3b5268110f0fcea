/**
 * The only place that writes to the console.
 *
 * Lines follow the seed's (Go `log/slog` text) shape so existing log queries keep working:
 * `2025/10/20 10:30:15 INFO Uploaded to S3 path=/x bucket=b key=k`.
 */

/** Severity of a log line. */
export type Level = "DEBUG" | "INFO" | "WARN" | "ERROR";

/** Key/value pairs appended to a log line. */
export type Fields = Record<string, string | number | boolean | undefined>;

/** A sink for log lines; tests swap it to capture output. */
export interface Logger {
  log(level: Level, msg: string, fields?: Fields): void;
}

const pad = (n: number) => (n < 10 ? "0" : "") + n;

/** Formats a date as `YYYY/MM/DD HH:MM:SS` in UTC. */
export function timestamp(d: Date): string {
  return `${d.getUTCFullYear()}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** Quotes a value when it would otherwise be ambiguous in `k=v` form. */
export function formatValue(v: string | number | boolean): string {
  const s = String(v);
  // deno-lint-ignore no-control-regex
  return s === "" || /[\s"=\\\x00-\x1f\x7f]/.test(s) ? JSON.stringify(s) : s;
}

/** Formats one line (without the trailing newline). */
export function formatLine(level: Level, msg: string, fields: Fields = {}, now = new Date()) {
  let line = `${timestamp(now)} ${level} ${msg}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined) line += ` ${k}=${formatValue(v)}`;
  }
  return line;
}

/** Writes INFO/DEBUG to stdout and WARN/ERROR to stderr. */
export const consoleLogger: Logger = {
  log(level, msg, fields) {
    const line = formatLine(level, msg, fields);
    if (level === "WARN" || level === "ERROR") console.error(line);
    else console.log(line);
  },
};

/** A logger that keeps lines in memory, for tests. */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  log(level: Level, msg: string, fields?: Fields): void {
    this.lines.push(formatLine(level, msg, fields));
  }
  /** Returns the lines that contain `text`. */
  find(text: string): string[] {
    return this.lines.filter((l) => l.includes(text));
  }
}
