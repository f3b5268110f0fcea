/**
 * `deno task purge <file | ->`: removes every stored variant of each listed path from the store
 * (see lib/purge_command.ts). SIGINT stops taking new paths (exit 130).
 */
import { denoEnv } from "./lib/config.ts";
import { runPurge } from "./lib/purge_command.ts";

if (import.meta.main) {
  const encoder = new TextEncoder();
  const writeAll = (out: typeof Deno.stdout, text: string) => {
    const bytes = encoder.encode(text);
    for (let n = 0; n < bytes.length;) n += out.writeSync(bytes.subarray(n));
  };
  const interrupt = new AbortController();
  const onSigint = () => interrupt.abort();
  Deno.addSignalListener("SIGINT", onSigint);
  const code = await runPurge(Deno.args, {
    env: denoEnv,
    stdout: (text) => writeAll(Deno.stdout, text),
    stderr: (text) => writeAll(Deno.stderr, text),
    readInput: async (path) =>
      path === "-" ? await new Response(Deno.stdin.readable).text() : await Deno.readTextFile(path),
    interrupt: interrupt.signal,
  });
  Deno.removeSignalListener("SIGINT", onSigint);
  Deno.exit(code);
}
