import assert from "node:assert/strict";
import { join } from "node:path";
import { md5Hex } from "../lib/key.ts";
import { exists } from "./support/net_fs.ts";
import { withSetup } from "./support/warm_stand_in.ts";
import { within } from "./support/within.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("deno task warm: real subprocess with the task's flags; SIGINT exits 130 after the summary", async () => {
  await withSetup(150, async (standIn, env, dir) => {
    const listFile = join(dir, "list.txt");
    const paths = Array.from({ length: 20 }, (_, i) => `/sub/${i}.png`);
    await Deno.writeTextFile(listFile, paths.join("\n") + "\n");
    const cacheDir = join(dir, "cache");
    const started = Promise.withResolvers<void>();
    standIn.onRequest = () => {
      if (standIn.targets.length === 2) started.resolve();
    };
    const tasks = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks;
    assert.equal(tasks.warm, "sh ./bin/warm", "the task runs bin/warm (scoped flags)");
    // The list lies outside CACHE_DIR: only bin/warm's --read lets the run open it.
    const child = new Deno.Command("deno", {
      args: ["task", "--quiet", "warm", "-c", "2", listFile],
      cwd: ROOT,
      env: { ...env, CACHE_DIR: cacheDir, S3_BUCKET: "", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = child.output();
    await within("the stand-in seeing two warm requests", started.promise);
    child.kill("SIGINT");
    const { code, stdout, stderr } = await output;
    const out = new TextDecoder().decode(stdout);
    const err = new TextDecoder().decode(stderr);
    assert.equal(code, 130, out + err);
    assert.match(err, /Interrupted: finishing the paths in flight/);
    const n = standIn.targets.length;
    assert.ok(n >= 2 && n < 20, `requests: ${n}`);
    assert.match(
      out,
      new RegExp(`^Warm-up interrupted after ${n} of 20 paths .*: ${n} stored`, "m"),
    );
    for (const t of standIn.targets) assert.ok(await exists(join(cacheDir, md5Hex(t))), t);
  });
});

Deno.test("bin/warm: --no-listen always, --read for the list file wherever it is among the options", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warm-bin-" });
  try {
    // A stand-in for deno: the permissions call prints its own arguments as "flags" (P:…),
    // the final call prints every argument, one a line.
    const fake = join(dir, "deno");
    await Deno.writeTextFile(
      fake,
      `#!/bin/sh
if [ "$2" = --quiet ]; then
  seen=0
  for a in "$@"; do
    [ "$seen" = 1 ] && printf 'P:%s\\n' "$a"
    case $a in */lib/permissions.ts) seen=1 ;; esac
  done
else
  printf '%s\\n' "$@"
fi
`,
      { mode: 0o755 },
    );
    const run = async (args: string[]) => {
      const out = await new Deno.Command("sh", {
        args: [join(ROOT, "bin/warm"), ...args],
        env: { DENO: fake },
        stdout: "piped",
        stderr: "inherit",
      }).output();
      assert.equal(out.code, 0);
      const lines = new TextDecoder().decode(out.stdout).trimEnd().split("\n");
      const script = lines.indexOf(join(ROOT, "warm.ts"));
      assert.ok(script > 0, lines.join("\n"));
      return {
        perms: lines.filter((l) => l.startsWith("P:")).map((l) => l.slice(2)),
        passed: lines.slice(script + 1),
      };
    };
    const cases: [string[], string | null][] = [
      [["-c", "2", "list.txt"], "list.txt"],
      [["list.txt", "-c", "2"], "list.txt"],
      [["--every=5", "-v", "--settle-timeout", "3", "my list.txt"], "my list.txt"],
      [["--interval", "1", "-vc", "3", "a.txt", "--concurrency", "2"], "a.txt"],
      [["--", "-odd.txt"], "-odd.txt"],
      [["-c", "2", "-"], null], // standard input: nothing to read
      [["--help"], null],
    ];
    for (const [args, file] of cases) {
      const { perms, passed } = await run(args);
      assert.deepEqual(perms, file === null ? ["--no-listen"] : ["--no-listen", "--read", file]);
      assert.deepEqual(passed, args, "warm.ts gets the arguments unchanged");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bin/warm reads the list from standard input with -", async () => {
  await withSetup(0, async (standIn, env, dir) => {
    const child = new Deno.Command("sh", {
      args: [join(ROOT, "bin/warm"), "-"],
      env: { ...env, S3_BUCKET: "", NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("# two paths\n/in/1.png\n/in/2.png\n"));
    await writer.close();
    const { code, stdout, stderr } = await child.output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(code, 0, out + new TextDecoder().decode(stderr));
    assert.match(out, /^Warm-up finished: 2 paths in [\d.]+ s: 2 stored, 0 already present/m);
    assert.equal(standIn.targets.length, 2);
    for (const t of standIn.targets) assert.ok(await exists(join(dir, md5Hex(t))), t);
  });
});
