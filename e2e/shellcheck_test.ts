/** The shell scripts are POSIX sh and clean under ShellCheck (Debian's package). */
import assert from "node:assert/strict";
import { ROOT } from "./support/harness.ts";

Deno.test("shellcheck -s sh: entrypoint.sh, bin/start, scripts/*.sh, the imgproxy stand-in", async () => {
  const scripts = ["entrypoint.sh", "bin/start", "e2e/support/imgproxy-stand-in"];
  for await (const e of Deno.readDir(`${ROOT}/scripts`)) {
    if (e.name.endsWith(".sh")) scripts.push(`scripts/${e.name}`);
  }
  assert.ok(scripts.includes("scripts/install-deps.sh"));
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("shellcheck", {
      args: ["-s", "sh", ...scripts],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    throw new Error(`shellcheck is not installed (scripts/install-deps.sh installs it): ${err}`);
  }
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
});
