/**
 * Child processes of the end-to-end suite: the repository's root, bounded waits, the minimal
 * environment every child gets, and {@linkcode Proc}, a child whose output is collected line by
 * line and which is always stopped and awaited.
 */

export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a non-undefined value; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(
    `Timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ""}`,
  );
}

/** The path of an executable: `name` itself when it has a "/", else the first on `path`. */
export async function findOnPath(
  name: string,
  path = Deno.env.get("PATH") ?? "",
): Promise<string | null> {
  if (name.includes("/")) return (await isExecutable(name)) ? name : null;
  for (const dir of path.split(":")) {
    if (dir !== "" && await isExecutable(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return null;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const st = await Deno.stat(path);
    return st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

let denoDir: Promise<string> | null = null;

/** Deno's cache directory, so children with a trimmed environment (no HOME) still find it. */
export function getDenoDir(): Promise<string> {
  return denoDir ??= (async () => {
    const fromEnv = Deno.env.get("DENO_DIR");
    if (fromEnv) return fromEnv;
    const out = await new Deno.Command("deno", {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    return JSON.parse(new TextDecoder().decode(out.stdout)).denoDir as string;
  })();
}

/** The minimal environment every child gets (the proxy's permissions are exact). */
export async function baseEnv(): Promise<Record<string, string>> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    DENO_DIR: await getDenoDir(),
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
  };
}

/** A child process whose output is collected line by line. */
export class Proc {
  readonly lines: string[] = [];
  readonly child: Deno.ChildProcess;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #pumps: Promise<void>[];

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    options: { env: Record<string, string>; cwd?: string; echo?: boolean },
  ) {
    this.child = new Deno.Command(cmd, {
      args,
      env: options.env,
      clearEnv: true,
      cwd: options.cwd ?? ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const echo = options.echo ?? Deno.env.get("E2E_VERBOSE") === "1";
    this.#pumps = [this.child.stdout, this.child.stderr].map(async (stream) => {
      let buf = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf("\n")) !== -1) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          this.lines.push(line);
          if (echo) console.log(`[${name}] ${line}`);
        }
      }
      if (buf !== "") this.lines.push(buf);
    });
    this.status = this.child.status;
  }

  get pid(): number {
    return this.child.pid;
  }

  /** The collected output, for failure messages. */
  output(): string {
    return this.lines.map((l) => `  [${this.name}] ${l}`).join("\n");
  }

  /** Waits for a line matching `re`; returns its match. */
  async waitForLine(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    let exited = false;
    this.status.then(() => (exited = true));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const l of this.lines) {
        const m = l.match(re);
        if (m) return m;
      }
      if (exited) {
        await sleep(50);
        const m = this.lines.map((l) => l.match(re)).find((x) => x);
        if (m) return m;
        throw new Error(`${this.name} exited before printing ${re}:\n${this.output()}`);
      }
      await sleep(25);
    }
    throw new Error(`${this.name} did not print ${re} within ${timeoutMs} ms:\n${this.output()}`);
  }

  /** Waits for exit (bounded); returns the status. */
  async wait(timeoutMs = 30_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`${this.name} did not exit within ${timeoutMs} ms:\n${this.output()}`)),
        timeoutMs,
      );
    });
    try {
      const s = await Promise.race([this.status, timeout]);
      await Promise.all(this.#pumps);
      return s;
    } finally {
      clearTimeout(timer);
    }
  }

  signal(sig: Deno.Signal): void {
    try {
      this.child.kill(sig);
    } catch {
      // already gone
    }
  }

  /** Stops the process (TERM, then KILL) and waits for it and its output. */
  async stop(graceMs = 5000): Promise<Deno.CommandStatus> {
    this.signal("SIGTERM");
    try {
      return await this.wait(graceMs);
    } catch {
      this.signal("SIGKILL");
      return await this.wait(5000);
    }
  }
}

/** True when `pid` no longer runs (absent, or a zombie awaiting its reaper). */
export async function processGone(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state === "Z" || state === "X";
  } catch {
    return true;
  }
}

/** Kills a pid that should be gone already (cleanup after a failed test). */
export async function reap(pid: number | undefined): Promise<void> {
  if (pid === undefined || await processGone(pid)) return;
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    // gone
  }
}
