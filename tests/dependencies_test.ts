/**
 * What a first `deno task start` downloads. Deno installs every npm package that deno.json's
 * `imports` names and every package deno.lock holds, whether the program imports it or not, so
 * a test-only package in either is fetched by every user's first start (s3rver alone brought
 * koa, winston and 110 more packages). These tests keep deno.json's imports and deno.lock to
 * the packages the proxy runs; the test and bench tasks keep theirs in tests/deno.lock.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

interface Lock {
  specifiers: Record<string, string>;
  npm: Record<string, { dependencies?: string[] }>;
  workspace?: { dependencies?: string[] };
}

const readJson = async <T>(path: string): Promise<T> =>
  JSON.parse(await Deno.readTextFile(new URL(path, ROOT))) as T;

/** Package name of a lock key or specifier: "@aws-sdk/core@3.1.0" → "@aws-sdk/core". */
const nameOf = (id: string) =>
  id.slice(0, id.lastIndexOf("@") > 0 ? id.lastIndexOf("@") : id.length);

/** Every lock entry reachable from `roots` (lock keys), following the lock's own dependencies. */
function closure(lock: Lock, roots: string[]): Set<string> {
  const keys = Object.keys(lock.npm);
  const seen = new Set<string>();
  const stack = [...roots];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    for (const dep of lock.npm[id]?.dependencies ?? []) {
      // A dependency is "name", or "name@version" where the lock holds several versions.
      const matches = dep in lock.npm ? [dep] : keys.filter((k) => nameOf(k) === dep);
      assert.equal(matches.length, 1, `${id} depends on ${dep}: ${matches.length} lock entries`);
      stack.push(matches[0]!);
    }
  }
  return seen;
}

/** The source files the product runs: the entry points, lib/ and mod.ts, never tests or bench. */
async function productSources(): Promise<string> {
  const files = ["main.ts", "serve.ts", "warm.ts", "mod.ts"];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(new URL(dir, ROOT))) {
      if (e.isDirectory) await walk(`${dir}${e.name}/`);
      else if (e.name.endsWith(".ts")) files.push(`${dir}${e.name}`);
    }
  };
  await walk("lib/");
  const texts = await Promise.all(files.map((f) => Deno.readTextFile(new URL(f, ROOT))));
  return texts.join("\n");
}

Deno.test("deno.json imports only npm packages the proxy itself imports", async () => {
  const config = await readJson<{ imports: Record<string, string> }>("deno.json");
  const sources = await productSources();
  for (const [alias, target] of Object.entries(config.imports)) {
    const used = sources.includes(`"${alias}"`) || sources.includes(`"${alias}/`);
    assert.ok(
      used,
      `deno.json imports ${alias} (${target}), which no file of the proxy imports: every user's ` +
        "first start would download it. A test-only package is imported by its npm: specifier " +
        "in the test (see tests/support/s3.ts) and locked in tests/deno.lock.",
    );
  }
});

Deno.test("deno.lock holds exactly what deno.json's imports need", async () => {
  const config = await readJson<{ imports: Record<string, string> }>("deno.json");
  const lock = await readJson<Lock>("deno.lock");
  const wanted = Object.values(config.imports).filter((t) => t.startsWith("npm:"));
  assert.deepEqual(
    Object.keys(lock.specifiers).sort(),
    [...wanted].sort(),
    "deno.lock resolves specifiers deno.json does not import: a test or bench run without " +
      "--lock=tests/deno.lock wrote them (run them through deno task test, or with that flag); " +
      "restore deno.lock with git checkout",
  );
  const roots = wanted.map((s) => `${nameOf(s.slice("npm:".length))}@${lock.specifiers[s]}`);
  const needed = closure(lock, roots);
  const extra = Object.keys(lock.npm).filter((k) => !needed.has(k));
  assert.deepEqual(extra, [], "deno.lock holds packages the proxy never loads");
  for (const testOnly of ["s3rver", "koa", "winston"]) {
    assert.ok(![...needed].some((k) => nameOf(k) === testOnly), `${testOnly} is in deno.lock`);
  }
});

Deno.test("tests run the same package versions the proxy runs", async () => {
  const product = await readJson<Lock>("deno.lock");
  const dev = await readJson<Lock>("tests/deno.lock");
  for (const [specifier, version] of Object.entries(product.specifiers)) {
    assert.equal(
      dev.specifiers[specifier],
      version,
      `${specifier}: deno.lock has ${version}, tests/deno.lock ${dev.specifiers[specifier]}`,
    );
  }
  for (const [id, entry] of Object.entries(product.npm)) {
    assert.deepEqual(dev.npm[id], entry, `${id} differs between deno.lock and tests/deno.lock`);
  }
});
