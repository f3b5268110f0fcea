/**
 * `deno task purge <file | ->`: removes every stored variant of each listed path, straight from
 * the store the environment configures (the same variables as the proxy). A proxy that is
 * running keeps its memory of recently stored keys: it may skip storing a purged path again
 * until `UPLOAD_DEDUP_TTL_IN_SEC` passes (and, in `redirect` mode, send clients to the removed
 * object meanwhile). `POST /purge` on the proxy's metrics listener forgets them at once.
 */
import { createStore } from "./app.ts";
import type { EnvReader } from "./config.ts";
import { commandConfig } from "./command_io.ts";
import { parseList } from "./path_list.ts";
import { purgePaths } from "./purge.ts";
import { errorMessage as message } from "./error_message.ts";

/** What the command needs from its surroundings (tests swap all of it). */
export interface PurgeIO {
  env: EnvReader;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Reads the list (`-`: standard input). */
  readInput(path: string): Promise<string>;
  /** Aborted on SIGINT: no new paths. */
  interrupt?: AbortSignal;
}

export const PURGE_USAGE = `Usage: deno task purge <file | ->

Removes every stored variant of each path of <file> (one raw request path or image URL a
line, exactly as clients send it; blank lines and # comments are skipped) from the store
the environment configures, the proxy's variables.

A running proxy may still remember a purged key as stored for up to UPLOAD_DEDUP_TTL_IN_SEC
(so it may not store that path again until then); POST /purge on its METRICS_BIND listener
(with ADMIN_TOKEN) removes the objects and makes it forget them at once.

Exit status: 0 all purged, 1 some failed, 2 bad usage, list or configuration,
130 interrupted.
`;

/** Runs `deno task purge`; returns the exit status. */
export async function runPurge(args: string[], io: PurgeIO): Promise<number> {
  if (args.length === 1 && (args[0] === "-h" || args[0] === "--help")) {
    io.stdout(PURGE_USAGE);
    return 0;
  }
  if (args.length !== 1 || (args[0]!.startsWith("-") && args[0] !== "-")) {
    io.stderr(`purge: expected exactly one list file (or -)\n\n${PURGE_USAGE}`);
    return 2;
  }
  const file = args[0]!;
  let text: string;
  try {
    text = await io.readInput(file);
  } catch (err) {
    io.stderr(`purge: cannot read ${file}: ${message(err)}\n`);
    return 2;
  }
  const config = commandConfig("purge", io);
  if (config === null) return 2;
  const entries = parseList(text);
  const invalid = entries.flatMap((e) => "error" in e ? [e] : []);
  if (invalid.length > 0) {
    for (const e of invalid) io.stderr(`purge: line ${e.line}: ${e.error}: ${e.text}\n`);
    io.stderr("purge: nothing purged\n");
    return 2;
  }
  const paths = entries.flatMap((e) => "target" in e ? [e.target] : []);
  let store;
  try {
    store = await createStore(config);
  } catch (err) {
    io.stderr(`purge: cannot open the store: ${message(err)}\n`);
    return 1;
  }
  let deleted = 0;
  let failed = 0;
  const outcomes = await purgePaths({ store, folder: config.folder }, paths, {
    signal: io.interrupt,
    onResult: (o) => {
      deleted += o.keys.length;
      if (o.error !== undefined) {
        failed++;
        io.stderr(`failed ${o.path}: ${o.error}\n`);
      }
      if (o.keys.length > 0) io.stdout(`purged ${o.path}: ${o.keys.join(" ")}\n`);
      else if (o.error === undefined) io.stdout(`not stored ${o.path}\n`);
    },
  });
  const interrupted = outcomes.length < paths.length;
  io.stdout(
    `${
      interrupted ? "Purge interrupted" : "Purge finished"
    }: ${outcomes.length} of ${paths.length} paths, ` +
      `${deleted} objects removed, ${failed} failed\n`,
  );
  if (interrupted) return 130;
  return failed > 0 ? 1 : 0;
}
