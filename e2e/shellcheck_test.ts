/**
 * The shell scripts are POSIX sh (CI's own script is bash) and clean under ShellCheck
 * (Debian's package).
 */
import assert from "node:assert/strict";
import { ROOT } from "./support/harness.ts";

async function shellcheck(shell: string, scripts: string[]): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("shellcheck", {
      args: ["-s", shell, ...scripts],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    throw new Error(`shellcheck is not installed (scripts/install-deps.sh installs it): ${err}`);
  }
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
}

Deno.test("shellcheck -s bash: .ci/run", () => shellcheck("bash", [".ci/run"]));

Deno.test("shellcheck -s sh: entrypoint.sh, bin/start, bin/warm, bin/purge, scripts/*.sh, the imgproxy stand-in", async () => {
  const scripts = [
    "entrypoint.sh",
    "bin/start",
    "bin/warm",
    "bin/purge",
    "e2e/support/imgproxy-stand-in",
  ];
  for await (const e of Deno.readDir(`${ROOT}/scripts`)) {
    if (e.name.endsWith(".sh")) scripts.push(`scripts/${e.name}`);
  }
  assert.ok(scripts.includes("scripts/install-deps.sh"));
  await shellcheck("sh", scripts);
});
