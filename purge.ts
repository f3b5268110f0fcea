/**
 * `deno task purge <file | ->`: removes every stored variant of each listed path from the store
 * (see lib/purge_command.ts). SIGINT stops taking new paths (exit 130).
 */
import { runCommand } from "./lib/command_io.ts";
import { runPurge } from "./lib/purge_command.ts";

if (import.meta.main) await runCommand((io) => runPurge(Deno.args, io));
