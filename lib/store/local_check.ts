/**
 * The start-up check of the local directory store: the directory can be created and written,
 * and its file system does what the store's writes rely on (a hard link that fails when the
 * name exists, for conditional writes; a rename into place, for every write).
 */
import { join } from "node:path";
import { errorMessage } from "../error_message.ts";

/** The outcome of the check: a message naming CACHE_DIR, or nothing wrong. */
export type LocalCheckResult =
  | { kind: "ok" }
  | { kind: "misconfigured"; message: string }
  /** A full disk or quota: not configuration, storing fails until there is room. */
  | { kind: "degraded"; reason: string };

/** The file-system calls the check makes (swapped in tests for a file system without links). */
export interface CheckFs {
  mkdir(path: string): Promise<void>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
  link(from: string, to: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
}

/** Deno's file system. */
export const denoFs: CheckFs = {
  mkdir: (path) => Deno.mkdir(path, { recursive: true }),
  writeFile: (path, data) => Deno.writeFile(path, data),
  link: (from, to) => Deno.link(from, to),
  rename: (from, to) => Deno.rename(from, to),
  remove: (path) => Deno.remove(path),
};

const FULL = /\(os error (?:28|122)\)|ENOSPC|EDQUOT/;

/** Checks that `dir` (with `folder` under it) can hold the store's files. Never throws. */
export async function checkLocalDir(
  dir: string,
  folder: string,
  fs: CheckFs = denoFs,
): Promise<LocalCheckResult> {
  const where = folder === "" ? dir : join(dir, folder);
  const base = join(where, `.imgproxy-cache-check-${crypto.randomUUID()}`);
  const made: string[] = [];
  let step = "create the directory";
  try {
    await fs.mkdir(where);
    step = "write a file in it";
    await fs.writeFile(`${base}.tmp`, new Uint8Array([1]));
    made.push(`${base}.tmp`);
    step = "hard-link a file (conditional writes need it)";
    await fs.link(`${base}.tmp`, `${base}.link`);
    made.push(`${base}.link`);
    step = "rename a file into place";
    await fs.rename(`${base}.link`, `${base}.renamed`);
    made.pop();
    made.push(`${base}.renamed`);
    return { kind: "ok" };
  } catch (err) {
    const e = err as Error;
    const text = `${e?.name ?? "Error"}: ${errorMessage(err)}`;
    if (FULL.test(text)) return { kind: "degraded", reason: `${where}: ${text}` };
    const hint = e?.name === "NotCapable"
      ? " (the process's --allow-write does not cover it)"
      : step.startsWith("hard-link")
      ? " (put CACHE_DIR on a local file system such as ext4, xfs or tmpfs)"
      : "";
    return {
      kind: "misconfigured",
      message: `CACHE_DIR: cannot ${step} in ${JSON.stringify(where)}: ${text}${hint}`,
    };
  } finally {
    for (const path of made) await fs.remove(path).catch(() => {});
  }
}
