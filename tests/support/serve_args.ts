/** How tests run the `deno serve` entry: with exactly the flags lib/permissions.ts computes. */
import assert from "node:assert/strict";

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
