/**
 * Which imgproxy the end-to-end suite runs: found where scripts/install-deps.sh installs it,
 * and, when E2E_EXPECT_IMGPROXY says real imgproxy is expected, an error (never the stand-in, so
 * never a skipped test) when it is missing or of another version.
 */
import assert from "node:assert/strict";
import { type Env, pickImgproxy, STAND_IN } from "./support/harness.ts";

/** A fake imgproxy binary printing `version` in `dir`. */
async function fakeImgproxy(dir: string, version: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const bin = `${dir}/imgproxy`;
  await Deno.writeTextFile(bin, `#!/bin/sh\n[ "$1" = version ] && echo ${version}\n`);
  await Deno.chmod(bin, 0o755);
  return bin;
}

const envOf = (vars: Record<string, string>): Env => (name) => vars[name];

Deno.test("imgproxy is found where install-deps.sh puts it: IMGPROXY_BIN, PATH, GOBIN, ~/go/bin", async () => {
  const root = await Deno.makeTempDir({ prefix: "e2e-choice-" });
  try {
    const home = `${root}/home`;
    const inHome = await fakeImgproxy(`${home}/go/bin`, "4.0.12");
    const inGobin = await fakeImgproxy(`${root}/gobin`, "4.0.11");
    const onPath = await fakeImgproxy(`${root}/path`, "4.0.10");
    const named = await fakeImgproxy(`${root}/named`, "4.0.9");
    const rows: [Record<string, string>, string, string][] = [
      [{ HOME: home, PATH: "" }, inHome, "4.0.12"],
      [{ HOME: home, PATH: "", GOBIN: `${root}/gobin` }, inGobin, "4.0.11"],
      [{ HOME: home, PATH: `${root}/path`, GOBIN: `${root}/gobin` }, onPath, "4.0.10"],
      [{ HOME: home, PATH: `${root}/path`, IMGPROXY_BIN: named }, named, "4.0.9"],
    ];
    for (const [vars, bin, version] of rows) {
      const c = await pickImgproxy(envOf(vars));
      assert.deepEqual(c, { real: true, bin, version, label: `real imgproxy ${version}` });
    }
    // Nothing installed: the stand-in, said so.
    const none = await pickImgproxy(envOf({ HOME: `${root}/nobody`, PATH: "" }));
    assert.equal(none.real, false);
    assert.equal(none.bin, STAND_IN);
    // A binary named explicitly but missing is not replaced by another one.
    const missing = await pickImgproxy(envOf({ HOME: home, IMGPROXY_BIN: `${root}/no/imgproxy` }));
    assert.equal(missing.real, false);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("E2E_EXPECT_IMGPROXY: missing or another version is an error, not the stand-in", async () => {
  const root = await Deno.makeTempDir({ prefix: "e2e-expect-" });
  try {
    const home = `${root}/home`;
    const expect = { E2E_EXPECT_IMGPROXY: "4.0.12", PATH: "" };
    await assert.rejects(
      pickImgproxy(envOf({ ...expect, HOME: home })),
      /E2E_EXPECT_IMGPROXY=4\.0\.12: expected real imgproxy 4\.0\.12, found STAND-IN/,
    );
    await assert.rejects(
      pickImgproxy(envOf({ ...expect, HOME: home, IMGPROXY_BIN: `${root}/no/imgproxy` })),
      /expected real imgproxy 4\.0\.12, found STAND-IN/,
    );
    await fakeImgproxy(`${home}/go/bin`, "4.0.11");
    await assert.rejects(
      pickImgproxy(envOf({ ...expect, HOME: home })),
      /expected real imgproxy 4\.0\.12, found real imgproxy 4\.0\.11/,
    );
    await fakeImgproxy(`${home}/go/bin`, "4.0.12");
    assert.equal((await pickImgproxy(envOf({ ...expect, HOME: home }))).version, "4.0.12");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
