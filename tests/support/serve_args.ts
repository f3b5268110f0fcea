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
