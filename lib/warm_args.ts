/** The command line of `deno task warm`: its usage text and its parsing. */
import { parseArgs } from "node:util";

export const USAGE = `Usage: deno task warm [options] <file | ->

Gets every path of <file> stored (one path or image URL a line; blank lines and
# comments are skipped), reading the same environment as the proxy. Paths
CACHE_ONLY or CACHE_SKIP leave out are skipped (listed, not failures).

Options:
  -c, --concurrency N     paths in flight at once (default 4)
      --every N           without a terminal: a progress line every N paths (default 100)
      --interval S        ... or every S seconds (default 10)
      --settle-timeout S  how long to wait for one upload to settle (default 120)
  -v, --verbose           also print the proxy's INFO log lines
  -h, --help              this text

Exit status: 0 all stored or present, 1 some failed, 2 bad usage or configuration,
130 interrupted (run again to continue).
`;

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new TypeError(`${name}: expected a whole number ≥ 1, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Parsed command line. */
export interface WarmArgs {
  file: string;
  concurrency: number;
  every: number;
  intervalMs: number;
  settleTimeoutMs: number;
  verbose: boolean;
  help: boolean;
}

/** Parses the command line; throws TypeError with a message for the user. */
export function parseWarmArgs(args: string[]): WarmArgs {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      concurrency: { type: "string", short: "c" },
      every: { type: "string" },
      interval: { type: "string" },
      "settle-timeout": { type: "string" },
      verbose: { type: "boolean", short: "v" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    return {
      file: "",
      concurrency: 4,
      every: 100,
      intervalMs: 10_000,
      settleTimeoutMs: 120_000,
      verbose: false,
      help: true,
    };
  }
  if (positionals.length !== 1) throw new TypeError("expected exactly one list file (or -)");
  return {
    file: positionals[0]!,
    concurrency: positiveInt("--concurrency", values.concurrency, 4),
    every: positiveInt("--every", values.every, 100),
    intervalMs: positiveInt("--interval", values.interval, 10) * 1000,
    settleTimeoutMs: positiveInt("--settle-timeout", values["settle-timeout"], 120) * 1000,
    verbose: values.verbose ?? false,
    help: false,
  };
}
