/**
 * The real program as a subprocess (`sh bin/start`, so with exactly the permission flags
 * lib/permissions.ts computes), with its output collected.
 */
import { fileURLToPath } from "node:url";
import { freePort } from "./net_fs.ts";
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

/**
 * Runs `fn` against the real program (local store in a temp dir, a fake imgproxy made with
 * `fakeOptions`, `env` on top of the defaults below), once it listens, and always stops and
 * cleans up after it. `base` is the program's own URL.
 */
export async function withProcess(
  fakeOptions: FakeImgproxyOptions,
  env: Record<string, string>,
  fn: (proxy: Proxy, base: string, dir: string, fake: FakeImgproxy) => Promise<void>,
): Promise<void> {
  await withFakeImgproxy("process-", async (fake, dir) => {
    const port = freePort();
    const proxy = start({
      CACHE_DIR: dir,
      IMGPROXY_URL: fake.url,
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "10",
      ...env,
    });
    try {
      await proxy.waitFor("Listening");
      await fn(proxy, `http://127.0.0.1:${port}`, dir, fake);
    } finally {
      await stopAndWait(proxy);
    }
  }, fakeOptions);
}
