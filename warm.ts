/**
 * `deno task warm <file>`: gets every path of a list stored, with the proxy's configuration
 * (see lib/warm.ts). SIGINT stops taking new paths, lets those in flight finish, drains the
 * uploads and prints the summary (exit 130); a second SIGINT exits at once.
 */
import { runCommand } from "./lib/command_io.ts";
import { runWarm } from "./lib/warm.ts";

// One Ctrl-C can arrive more than once: the terminal signals the whole process group, and
// `deno task` forwards SIGINT to its child (seen twice in a row with Deno 2.9). A repeat
// within a second is the same interrupt; a later one quits at once.
let firstAt = 0;
function onSigint(interrupt: AbortController): void {
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
}

if (import.meta.main) {
  await runCommand(
    (io) => runWarm(Deno.args, { ...io, isTerminal: Deno.stdout.isTerminal() }),
    onSigint,
  );
}
