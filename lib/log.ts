/**
 * The only place that writes to the console.
 *
 * Two formats (`LOG_FORMAT`):
 *
 * - `text` follows the original program's (Go `log/slog` text) shape, so existing log queries
 *   keep working: `2025/10/20 10:30:15 INFO Uploaded to S3 path=/x bucket=b key=k`;
 * - `json` writes one JSON object per line with imgproxy's keys (`time`, `level`, `msg`, then
 *   the fields), so a container running imgproxy with `IMGPROXY_LOG_FORMAT=json` gets one
 *   format from both programs. A message or value spanning lines stays on one line (JSON
 *   escapes the line breaks).
 *
 * Lines below the configured level (`LOG_LEVEL`) are not written.
 */
import { afterTurn } from "./timers.ts";

/** Severity of a log line. */
export type Level = "DEBUG" | "INFO" | "WARN" | "ERROR";

/** Key/value pairs appended to a log line. */
export type Fields = Record<string, string | number | boolean | undefined>;

/** A sink for log lines; tests swap it to capture output. */
export interface Logger {
  log(level: Level, msg: string, fields?: Fields): void;
}

/** How lines are written. */
export type LogFormat = "text" | "json";

/** The logging configuration (`LOG_FORMAT`, `LOG_LEVEL`). */
export interface LogSettings {
  format: LogFormat;
  /** The least severe level written. */
  level: Level;
}

const RANK: Record<Level, number> = { DEBUG: 0, INFO: 1, WARN: 2, ERROR: 3 };

const pad = (n: number) => (n < 10 ? "0" : "") + n;

/** Formats a date as `YYYY/MM/DD HH:MM:SS` in UTC. */
export function timestamp(d: Date): string {
  return `${d.getUTCFullYear()}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** The second {@linkcode stampNow} last formatted, and its text. */
let stampSecond = -1;
let stampText = "";

/** {@linkcode timestamp} of the current time, formatted once a second (a line per request). */
function stampNow(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== stampSecond) {
    stampText = timestamp(new Date(second * 1000));
    stampSecond = second;
  }
  return stampText;
}

/** Quotes a value when it would otherwise be ambiguous in `k=v` form. */
export function formatValue(v: string | number | boolean): string {
  // A number or a boolean is never ambiguous ("-1", "1e+21", "NaN", "true").
  if (typeof v !== "string") return String(v);
  // deno-lint-ignore no-control-regex
  return v === "" || /[\s"=\\\x00-\x1f\x7f]/.test(v) ? JSON.stringify(v) : v;
}

/** Formats one text line (without the trailing newline); `now`: the current time. */
export function formatLine(level: Level, msg: string, fields?: Fields, now?: Date) {
  let line = `${now === undefined ? stampNow() : timestamp(now)} ${level} ${msg}`;
  for (const k in fields) {
    const v = fields[k];
    if (v !== undefined) line += ` ${k}=${formatValue(v)}`;
  }
  return line;
}

/** Keys of every JSON line; a field with one of these names is written with a `field_` prefix. */
const RESERVED = new Set(["time", "level", "msg"]);

/** Formats one JSON line (without the trailing newline): time (RFC 3339, UTC), level, msg. */
export function formatJsonLine(level: Level, msg: string, fields: Fields = {}, now = new Date()) {
  const record: Record<string, string | number | boolean> = {
    time: now.toISOString(),
    level,
    msg,
  };
  for (const [k, v] of Object.entries(fields)) {
    // JSON has no NaN or Infinity: write them as strings rather than as null.
    if (v !== undefined) {
      record[RESERVED.has(k) ? `field_${k}` : k] = typeof v === "number" && !Number.isFinite(v)
        ? String(v)
        : v;
    }
  }
  return JSON.stringify(record);
}

/** Where formatted lines go: INFO/DEBUG to `out`, WARN/ERROR to `err`. */
export interface Sink {
  out(line: string): void;
  err(line: string): void;
}

const encoder = new TextEncoder();

/**
 * Writes `line` and a newline to `stream` at once, in one call when it fits. Not `console.log`:
 * its formatting machinery costs two to three times as much per line, and the access log writes
 * one line per request. Like `console.log`, a stream that can no longer be written (a closed
 * pipe) loses the line, never the process.
 */
function writeLine(stream: { writeSync(p: Uint8Array): number }, line: string): void {
  const bytes = encoder.encode(line + "\n");
  try {
    for (let off = 0; off < bytes.length;) {
      const n = stream.writeSync(bytes.subarray(off));
      if (n <= 0) return;
      off += n;
    }
  } catch {
    // Nowhere to write to.
  }
}

/** stdout and stderr. */
export const consoleSink: Sink = {
  out: (line) => writeLine(Deno.stdout, line),
  err: (line) => writeLine(Deno.stderr, line),
};

/** Characters of stdout lines held before they are written without waiting for the turn's end. */
const HELD_MAX = 64 * 1024;

/**
 * stdout and stderr for a serving process, where the access log writes a line per request:
 * stdout's lines are held until the current turn of the event loop has run its callbacks, then
 * written in one call. Under load one turn ends several answers (about 13 lines a write at 32
 * connections), and where stdout is a pipe (as container runtimes collect it) every write also
 * wakes the reader, which the writing process pays for. Nothing is reordered or dropped on the
 * way out: a stderr line (WARN, ERROR) first writes the stdout lines held before it, and the
 * lines held are written when they reach {@linkcode HELD_MAX} characters, when the process
 * exits (`Deno.exit`, the end of the program: the `unload` event) and when an error or a
 * rejection nobody handled is about to end it (the `error` and `unhandledrejection` events). A
 * process killed outright (SIGKILL, out of memory) loses the lines of the turn it was in, at most.
 */
export function servingSink(): Sink {
  let held: string[] = [];
  let bytes = 0;
  let pending = false;
  const flush = () => {
    if (held.length === 0) return;
    const text = held.join("\n");
    held = [];
    bytes = 0;
    writeLine(Deno.stdout, text);
  };
  const atTurnEnd = () => {
    pending = false;
    flush();
  };
  globalThis.addEventListener("unload", flush);
  globalThis.addEventListener("error", flush);
  globalThis.addEventListener("unhandledrejection", flush);
  return {
    out(line) {
      held.push(line);
      bytes += line.length;
      if (bytes >= HELD_MAX) flush();
      else if (!pending) {
        pending = true;
        afterTurn(atTurnEnd);
      }
    },
    err(line) {
      flush();
      writeLine(Deno.stderr, line);
    },
  };
}

/** Creates a logger writing `settings.format` lines at or above `settings.level` to `sink`. */
export function createLogger(settings: LogSettings, sink: Sink = consoleSink): Logger {
  const format = settings.format === "json" ? formatJsonLine : formatLine;
  const least = RANK[settings.level];
  return {
    log(level, msg, fields) {
      if (RANK[level] < least) return;
      const line = format(level, msg, fields);
      if (level === "WARN" || level === "ERROR") sink.err(line);
      else sink.out(line);
    },
  };
}

/** Text lines, every level, to stdout and stderr (before any configuration is read). */
export const consoleLogger: Logger = createLogger({ format: "text", level: "DEBUG" });

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
