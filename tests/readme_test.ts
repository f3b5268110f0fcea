/**
 * The README's configuration table against `VARIABLES` (lib/config.ts), so the documented
 * names and defaults cannot drift from the code.
 */
import assert from "node:assert/strict";
import { VARIABLES } from "../lib/config.ts";

const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));

/** `NAME` → default cell, from the rows of the configuration table. */
const rows = new Map<string, string>();
for (const m of readme.matchAll(/^\| `([A-Z0-9_]+)`\s*\|\s*([^|]*)\|/gm)) {
  rows.set(m[1]!, m[2]!.replaceAll("`", "").trim());
}

/** Variables the proxy only reads from imgproxy's or the AWS SDK's settings. */
const borrowed = (name: string) =>
  name.startsWith("AWS_") ||
  (name.startsWith("IMGPROXY_") && name !== "IMGPROXY_URL" && name !== "IMGPROXY_BIND");

Deno.test("README documents every setting of the proxy with its default", () => {
  for (const [name, value] of Object.entries(VARIABLES)) {
    if (borrowed(name)) continue;
    const cell = rows.get(name);
    assert.ok(cell !== undefined, `${name} has no row in the README's configuration table`);
    if (value !== "") {
      // The default opens the cell ("134217728 (128 MiB)"), and "80" is not "8".
      const documented = cell.startsWith(value) && !/[A-Za-z0-9]/.test(cell[value.length] ?? "");
      assert.ok(
        documented,
        `${name}: README says ${JSON.stringify(cell)}, the code ${JSON.stringify(value)}`,
      );
    }
  }
  for (const name of rows.keys()) {
    assert.ok(name in VARIABLES, `the README documents ${name}, which the code does not read`);
  }
});

Deno.test("README mentions every imgproxy and AWS variable the proxy reads", () => {
  for (const name of Object.keys(VARIABLES).filter(borrowed)) {
    assert.ok(readme.includes(name), `${name} is read but never mentioned in the README`);
  }
});
