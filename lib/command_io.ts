/**
 * The process side of the command-line tasks (`deno task purge`, `deno task warm`): the
 * environment, blocking writes to stdout/stderr, the list reader and Ctrl-C. The commands
 * themselves take these as plain values so tests can swap all of it.
 */
import { type Config, ConfigError, denoEnv, type EnvReader, loadConfig } from "./config.ts";

/** What a command gets from the process. */
export interface CommandIO {
  env: EnvReader;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Reads the list (`-`: standard input). */
  readInput(path: string): Promise<string>;
  /** Aborted on SIGINT (as `onSigint` decides). */
  interrupt: AbortSignal;
}

const encoder = new TextEncoder();

function writeAll(out: typeof Deno.stdout, text: string): void {
  const bytes = encoder.encode(text);
  for (let n = 0; n < bytes.length;) n += out.writeSync(bytes.subarray(n));
}

/**
 * Runs `run` with the process's streams, aborting `interrupt` on SIGINT (or doing what
 * `onSigint` does instead), then exits the process with the status it returns.
 */
export async function runCommand(
  run: (io: CommandIO) => Promise<number>,
  onSigint: (interrupt: AbortController) => void = (interrupt) => interrupt.abort(),
): Promise<never> {
  const interrupt = new AbortController();
  const listener = () => onSigint(interrupt);
  Deno.addSignalListener("SIGINT", listener);
  const code = await run({
    env: denoEnv,
    stdout: (text) => writeAll(Deno.stdout, text),
    stderr: (text) => writeAll(Deno.stderr, text),
    readInput: async (path) =>
      path === "-" ? await new Response(Deno.stdin.readable).text() : await Deno.readTextFile(path),
    interrupt: interrupt.signal,
  });
  Deno.removeSignalListener("SIGINT", listener);
  Deno.exit(code);
}

/**
 * The configuration `io.env` gives a command, or null once `io.stderr` has been told why it
 * is invalid (`<command>: <message>`; the command then exits 2).
 */
export function commandConfig(
  command: string,
  io: Pick<CommandIO, "env" | "stderr">,
): Readonly<Config> | null {
  try {
    return loadConfig(io.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(`${command}: ${err.message}\n`);
    return null;
  }
}
