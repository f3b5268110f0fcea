import assert from "node:assert/strict";
import { parseList, targetOf } from "../lib/path_list.ts";

Deno.test("targetOf: paths kept byte-for-byte, URLs cut after the authority", () => {
  const table: [string, string | null][] = [
    [
      "/rs:fit:300:300/plain/https://example.com/a.jpg",
      "/rs:fit:300:300/plain/https://example.com/a.jpg",
    ],
    ["  /a/b.png\r", "/a/b.png"],
    ["/a/../b/%2e%2e/c\\d.png?x=%2E", "/a/../b/%2e%2e/c\\d.png?x=%2E"],
    ["/a.png#fragment", "/a.png"],
    [
      "https://cdn.example.com/sig/rs:fit:5/plain/local:///x/../y.png",
      "/sig/rs:fit:5/plain/local:///x/../y.png",
    ],
    ["HTTP://user@host:8080/p%2e%2e/q?w=1#f", "/p%2e%2e/q?w=1"],
    ["http://host", "/"],
    ["http://host?x=1", "/?x=1"],
    ["https:///nohost", null],
    ["ftp://host/a.png", null],
    ["images/a.png", null],
  ];
  for (const [line, want] of table) assert.equal(targetOf(line), want, line);
});

Deno.test("parseList skips blank lines and comments, reports unusable lines with numbers", () => {
  const entries = parseList(
    "# header\n\n/a.png\r\n   # indented comment\nnot a path\nhttp://h/b\n/c d.png\n/e\tf\n" +
      "/plain/https://ex.com/café.jpg\n/plain/https://ex.com/caf%C3%A9.jpg\n",
  );
  assert.deepEqual(entries, [
    { line: 3, target: "/a.png" },
    { line: 5, error: "not a path or http(s) URL", text: "not a path" },
    { line: 6, target: "/b" },
    // No HTTP client sends a literal space (they send %20): it could not reach imgproxy.
    { line: 7, error: "space or control character (write %20)", text: "/c d.png" },
    { line: 8, error: "space or control character (write %20)", text: "/e\tf" },
    // Browsers send caf%C3%A9: a raw é would warm a key no page asks for.
    {
      line: 9,
      error: "non-ASCII character (percent-encode its UTF-8 bytes, as browsers do)",
      text: "/plain/https://ex.com/café.jpg",
    },
    { line: 10, target: "/plain/https://ex.com/caf%C3%A9.jpg" },
  ]);
});
