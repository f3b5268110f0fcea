/**
 * The repository speaks of the product: no words a user cannot know (the project's internal
 * names for its specification, planning cards, issue numbers or build machines) and no paths
 * outside the repository, in the docs, the examples, the code and its comments.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** Internal terms, each with what to write instead. */
const FORBIDDEN: [RegExp, string][] = [
  [/\bthe seed\b|\bseed's\b|\bseed (?:spec|program|README|helper)/i, "name the Go program"],
  [/\bdesign card\b/i, "say what the design is"],
  [/\b(?:issue|card) #?\d+\b/i, "say what the change is, not its ticket"],
  [/\bthe issue's\b|\b(?:this|last|next) round(?:'s)?\b/i, "say what the target or change is"],
  [/\bour (?:CI|build machines?)\b/i, "say what the test suites do"],
  [/(?:\.\.\/)+shared\/|\/work\/(?:main|wt|shared)\b/, "point to a file in this repository"],
];

/**
 * Text files of the repository, minus lockfiles, binaries and dot-directories (.git, and .ci,
 * whose script describes the machine CI runs on, not the product).
 */
async function files(dir = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(new URL(dir || ".", ROOT))) {
    const path = `${dir}${e.name}`;
    if (
      e.name.startsWith(".") || e.name === "data" || e.name === "dist" || e.name === "node_modules"
    ) {
      continue;
    }
    if (e.isDirectory) out.push(...await files(`${path}/`));
    else if (/\.(ts|md|sh|yaml|yml|toml|json)$|^(Dockerfile|start|warm|run|purge)$/.test(e.name)) {
      if (!e.name.endsWith(".lock") && path !== "tests/product_text_test.ts") out.push(path);
    }
  }
  return out;
}

Deno.test("no internal terms or outside paths in the repository's text", async () => {
  const found: string[] = [];
  const all = await files();
  assert.ok(all.includes("README.md") && all.includes("lib/config.ts"), all.join(", "));
  for (const path of all) {
    const lines = (await Deno.readTextFile(new URL(path, ROOT))).split("\n");
    lines.forEach((line, i) => {
      for (const [re, instead] of FORBIDDEN) {
        const m = re.exec(line);
        if (m) found.push(`${path}:${i + 1}: "${m[0]}" (${instead})`);
      }
    });
  }
  assert.deepEqual(found, []);
});

Deno.test("the patterns catch what they are for", () => {
  const hits = (s: string) => FORBIDDEN.some(([re]) => re.test(s));
  for (
    const bad of [
      "the seed's helper",
      "as in issue 4",
      "the issue's target",
      "before this round's changes",
      "our CI has no Docker",
      "../shared/x",
    ]
  ) {
    assert.ok(hits(bad), bad);
  }
  for (
    const ok of [
      "imageBytes(seed)",
      "a random seed",
      "the Go program",
      "GitHub issues",
      "a round trip",
      "rounded to 0.1 ms",
    ]
  ) {
    assert.ok(!hits(ok), ok);
  }
});
