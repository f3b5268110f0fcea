/** How tests run the `deno serve` entry: with exactly the flags lib/permissions.ts computes. */
import assert from "node:assert/strict";
import { after } from "../../lib/timers.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** `deno serve serve.ts` arguments on 127.0.0.1:`port`, with the permissions `env` needs. */
export async function denoServeArgs(env: Record<string, string>, port: number): Promise<string[]> {
  const flags = await new Deno.Command("deno", {
    args: ["run", "--quiet", "--no-prompt", "--allow-env", `${ROOT}lib/permissions.ts`],
    env,
    clearEnv: true,
    stdout: "piped",
  }).output();
  assert.equal(flags.code, 0);
  return [
    "serve",
    "--no-prompt",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    ...new TextDecoder().decode(flags.stdout).trim().split("\n"),
    `${ROOT}serve.ts`,
  ];
}

/** `deno serve serve.ts` on `port` with the flags lib/permissions.ts computes for `env`. */
export async function startServe(env: Record<string, string>, port: number) {
  const child = new Deno.Command("deno", {
    args: await denoServeArgs(env, port),
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const lines = new Map<string, PromiseWithResolvers<string>>();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      for (const [needle, found] of lines) {
        const line = text.split("\n").find((l) => l.includes(needle));
        if (line !== undefined) found.resolve(line);
      }
    }
  };
  const reading = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const done = (async () => {
    const status = await child.status;
    await reading;
    for (const found of lines.values()) found.reject(new Error(`exited:\n${text}`));
    return { code: status.code, output: text };
  })();
  return {
    child,
    done,
    /** The first line with `needle`, when it is written (rejects at exit or after `ms`). */
    line(needle: string, ms = 60_000): Promise<string> {
      const found = Promise.withResolvers<string>();
      const cancel = after(ms, () => {
        found.reject(new Error(`no line with ${JSON.stringify(needle)} in ${ms} ms:\n${text}`));
      }, { ref: true });
      found.promise.catch(() => {}).finally(cancel);
      lines.set(needle, found);
      const line = text.split("\n").find((l) => l.includes(needle));
      if (line !== undefined) found.resolve(line);
      return found.promise;
    },
  };
}

/**
 * The environment of a `deno serve` test on 127.0.0.1:`port`: `vars`, with what the child needs
 * to run (PATH, HOME) and `IMGPROXY_BIND`, only so lib/permissions.ts grants the address
 * `deno serve --port` binds.
 */
export function serveEnv(
  port: number,
  home: string,
  vars: Record<string, string>,
): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: Deno.env.get("HOME") ?? home,
    ...vars,
    IMGPROXY_BIND: `127.0.0.1:${port}`,
    NO_COLOR: "1",
  };
}

/** Runs `body` with {@linkcode startServe}'s process, which is killed afterwards if still up. */
export async function withServe(
  env: Record<string, string>,
  port: number,
  body: (serve: Awaited<ReturnType<typeof startServe>>) => Promise<void>,
): Promise<void> {
  const serve = await startServe(env, port);
  try {
    await body(serve);
  } finally {
    try {
      serve.child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await serve.done;
  }
}
