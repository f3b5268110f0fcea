/**
 * `deno task warm <file>`: gets every path of a list stored, with the proxy's configuration
 * (see lib/warm.ts). SIGINT stops taking new paths, lets those in flight finish, drains the
 * uploads and prints the summary (exit 130); a second SIGINT exits at once.
 */
import { denoEnv } from "./lib/config.ts";
import { runWarm } from "./lib/warm.ts";

if (import.meta.main) {
  const encoder = new TextEncoder();
  const writeAll = (out: typeof Deno.stdout, text: string) => {
    const bytes = encoder.encode(text);
    for (let n = 0; n < bytes.length;) n += out.writeSync(bytes.subarray(n));
  };
  const interrupt = new AbortController();
  // One Ctrl-C can arrive more than once: the terminal signals the whole process group, and
  // `deno task` forwards SIGINT to its child (seen twice in a row with Deno 2.9). A repeat
  // within a second is the same interrupt; a later one quits at once.
  let firstAt = 0;
  const onSigint = () => {
    if (!interrupt.signal.aborted) {
      firstAt = Date.now();
      console.error(
        "\nInterrupted: finishing the paths in flight (press Ctrl-C again to quit now)",
      );
      interrupt.abort();
    } else if (Date.now() - firstAt > 1000) {
      console.error("Second interrupt: quitting without waiting");
      Deno.exit(130);
    }
  };
  Deno.addSignalListener("SIGINT", onSigint);
  const code = await runWarm(Deno.args, {
    env: denoEnv,
    stdout: (text) => writeAll(Deno.stdout, text),
    stderr: (text) => writeAll(Deno.stderr, text),
    isTerminal: Deno.stdout.isTerminal(),
    readInput: async (path) =>
      path === "-" ? await new Response(Deno.stdin.readable).text() : await Deno.readTextFile(path),
    interrupt: interrupt.signal,
  });
  Deno.removeSignalListener("SIGINT", onSigint);
  Deno.exit(code);
}
