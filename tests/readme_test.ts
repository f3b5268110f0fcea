/**
 * The configuration tables of docs/configuration.md against `VARIABLES` (lib/config.ts), so the
 * documented names and defaults cannot drift from the code.
 */
import assert from "node:assert/strict";
import { VARIABLES } from "../lib/config.ts";

const doc = await Deno.readTextFile(new URL("../docs/configuration.md", import.meta.url));

/** `NAME` → default cell, from the rows of the configuration tables. */
const rows = new Map<string, string>();
for (const m of doc.matchAll(/^\| `([A-Z0-9_]+)`\s*\|\s*([^|]*)\|/gm)) {
  rows.set(m[1]!, m[2]!.replaceAll("`", "").trim());
}

/** Variables the proxy only reads from imgproxy's or the AWS SDK's settings. */
const borrowed = (name: string) =>
  name.startsWith("AWS_") ||
  (name.startsWith("IMGPROXY_") && name !== "IMGPROXY_URL" && name !== "IMGPROXY_BIND");

Deno.test("docs/configuration.md documents every setting of the proxy with its default", () => {
  for (const [name, value] of Object.entries(VARIABLES)) {
    if (borrowed(name)) continue;
    const cell = rows.get(name);
    assert.ok(cell !== undefined, `${name} has no row in docs/configuration.md`);
    if (value !== "") {
      // The default opens the cell ("134217728 (128 MiB)"), and "80" is not "8".
      const documented = cell.startsWith(value) && !/[A-Za-z0-9]/.test(cell[value.length] ?? "");
      assert.ok(
        documented,
        `${name}: docs/configuration.md says ${JSON.stringify(cell)}, the code ${
          JSON.stringify(value)
        }`,
      );
    }
  }
  for (const name of rows.keys()) {
    assert.ok(
      name in VARIABLES,
      `docs/configuration.md documents ${name}, which the code does not read`,
    );
  }
});

Deno.test("docs/configuration.md mentions every imgproxy and AWS variable the proxy reads", () => {
  for (const name of Object.keys(VARIABLES).filter(borrowed)) {
    assert.ok(doc.includes(name), `${name} is read but never mentioned in docs/configuration.md`);
  }
});
