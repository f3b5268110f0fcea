/**
 * Every relative link in README.md and docs/*.md points at a file of the repository, and a
 * `#fragment` at a heading of that file (GitHub's anchor rules), so moving or renaming a page or
 * a heading cannot leave a dead link behind. Also: the metric names the docs give are the ones the
 * code defines, and every metric the code defines is in the metrics table.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** README.md and every Markdown page under docs/, as paths relative to the root. */
async function pages(): Promise<string[]> {
  const found = ["README.md"];
  for await (const e of Deno.readDir(new URL("docs/", ROOT))) {
    if (e.isFile && e.name.endsWith(".md")) found.push(`docs/${e.name}`);
  }
  return found.sort();
}

/** Markdown text without fenced code blocks (a "# comment" in a shell block is no heading). */
const withoutFences = (markdown: string) =>
  markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "");

/** Markdown text without code at all (brackets in code are not links). */
const prose = (markdown: string) => withoutFences(markdown).replace(/`[^`\n]*`/g, "");

/** The targets of `[text](target)` and `[text](target "title")` links and images. */
function linkTargets(markdown: string): string[] {
  const targets: string[] = [];
  for (const m of prose(markdown).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    targets.push(m[1]!);
  }
  return targets;
}

/** GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to "-", repeats numbered. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of withoutFences(markdown).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const text = m[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
    const base = text.toLowerCase().replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, "").replace(/\s/g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

const external = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target);

Deno.test("anchors() follows GitHub's rules", () => {
  const got = anchors(
    "# Deno Deploy (and `deno serve`)\n## What is stored, and what is not\n## Keys\n## Keys\n",
  );
  assert.ok(got.has("deno-deploy-and-deno-serve"), [...got].join(", "));
  assert.ok(got.has("what-is-stored-and-what-is-not"));
  assert.ok(got.has("keys") && got.has("keys-1"));
});

Deno.test("linkTargets() skips code and finds links with titles", () => {
  const md = 'See [a](docs/a.md "A") and `[b](nope.md)`.\n```\n[c](nope.md)\n```\n![i](x.png)\n';
  assert.deepEqual(linkTargets(md), ["docs/a.md", "x.png"]);
});

Deno.test("every relative link in README.md and docs/ resolves to a file and heading", async () => {
  const broken: string[] = [];
  let checked = 0;
  for (const page of await pages()) {
    const pageUrl = new URL(page, ROOT);
    const text = await Deno.readTextFile(pageUrl);
    for (const target of linkTargets(text)) {
      if (external(target)) continue;
      checked++;
      const [path = "", fragment] = target.split("#", 2);
      const file = path === "" ? pageUrl : new URL(path, pageUrl);
      if (!file.href.startsWith(ROOT.href)) {
        broken.push(`${page}: ${target} points outside the repository`);
        continue;
      }
      let stat: Deno.FileInfo;
      try {
        stat = await Deno.stat(file);
      } catch {
        broken.push(`${page}: ${target} (no such file)`);
        continue;
      }
      if (fragment !== undefined && fragment !== "") {
        if (!stat.isFile || !file.pathname.endsWith(".md")) {
          broken.push(`${page}: ${target} (an anchor into a file that is not Markdown)`);
        } else if (!anchors(await Deno.readTextFile(file)).has(decodeURIComponent(fragment))) {
          broken.push(`${page}: ${target} (no heading with that anchor)`);
        }
      }
    }
  }
  assert.deepEqual(broken, []);
  assert.ok(checked > 0, "no relative links found: the link pattern no longer matches");
});

Deno.test("the docs name exactly the metrics lib/metrics.ts, lib/process_metrics.ts and lib/defense_metrics.ts define", async () => {
  const code = await Deno.readTextFile(new URL("lib/metrics.ts", ROOT)) +
    await Deno.readTextFile(new URL("lib/process_metrics.ts", ROOT)) +
    await Deno.readTextFile(new URL("lib/defense_metrics.ts", ROOT));
  const defined = new Set(
    [...code.matchAll(/"((?:imgproxy_cache|process)_[a-z_]+)"/g)].map((m) => m[1]!),
  );
  assert.ok(defined.size > 5, "no metric names found in lib/metrics.ts");
  const unknown: string[] = [];
  for (const page of await pages()) {
    const text = await Deno.readTextFile(new URL(page, ROOT));
    for (const m of text.matchAll(/\bimgproxy_cache_[a-z_]+/g)) {
      const base = m[0].replace(/_(bucket|sum|count)$/, "");
      if (!defined.has(m[0]) && !defined.has(base)) unknown.push(`${page}: ${m[0]}`);
    }
  }
  assert.deepEqual(unknown, []);
  const page = await Deno.readTextFile(new URL("docs/metrics-and-logs.md", ROOT));
  const undocumented = [...defined].filter((name) => !page.includes(`\`${name}\``));
  assert.deepEqual(undocumented, [], "metrics missing from docs/metrics-and-logs.md's table");
});
