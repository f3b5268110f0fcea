/**
 * The real program as a subprocess (`sh bin/start`, so with exactly the permission flags
 * lib/permissions.ts computes), with its output collected.
 */
import { fileURLToPath } from "node:url";
import { type FakeImgproxy, type FakeImgproxyOptions, startFakeImgproxy } from "./fake_imgproxy.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** A running `sh bin/start` with its output collected. */
export interface Proxy {
  child: Deno.ChildProcess;
  /** Everything written so far to stdout and stderr, interleaved by arrival. */
  output: () => string;
  /** Resolves with the first line containing `text` (rejects after `ms` or at exit). */
  waitFor(text: string, ms?: number): Promise<string>;
  /** Resolves when the process has exited and its output is read. */
  done: Promise<{ code: number; output: string }>;
}

/**
 * Starts the program with `env`; with `maxFiles`, under `ulimit -n maxFiles` (soft and hard, so
 * the runtime cannot raise it).
 */
export function start(env: Record<string, string>, clearEnv = false, maxFiles?: number): Proxy {
  const script = `${ROOT}bin/start`;
  const child = new Deno.Command("sh", {
    args: maxFiles === undefined
      ? [script]
      : ["-c", `ulimit -n ${maxFiles} && exec sh "$0"`, script],
    cwd: ROOT,
    env,
    clearEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  let exited = false;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) text += chunk;
  };
  const reading = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const done = (async () => {
    const status = await child.status;
    await reading;
    exited = true;
    return { code: status.code, output: text };
  })();
  return {
    child,
    output: () => text,
    async waitFor(needle, ms = 20_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const line = text.split("\n").find((l) => l.includes(needle));
        if (line !== undefined) return line;
        if (exited || Date.now() > deadline) {
          throw new Error(`no line with ${JSON.stringify(needle)} in:\n${text}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    done,
  };
}

/** Sends SIGTERM unless the process has already exited. */
export function stop(proxy: Proxy): void {
  try {
    proxy.child.kill("SIGTERM");
  } catch {
    // already exited
  }
}

/** Sends SIGTERM unless the process has already exited, and waits for it to end. */
export async function stopAndWait(proxy: Proxy): Promise<void> {
  stop(proxy);
  await proxy.done;
}

/**
 * Runs `fn` with a fake imgproxy and a new temporary directory (named with `prefix`), and closes
 * and removes both after.
 */
export async function withFakeImgproxy(
  prefix: string,
  fn: (fake: FakeImgproxy, dir: string) => Promise<void>,
  options: FakeImgproxyOptions = {},
): Promise<void> {
  const fake = startFakeImgproxy(options);
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(fake, dir);
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}
