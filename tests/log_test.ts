import assert from "node:assert/strict";
import {
  createLogger,
  formatJsonLine,
  formatLine,
  formatValue,
  MemoryLogger,
  type Sink,
  timestamp,
} from "../lib/log.ts";

const AT = new Date(Date.UTC(2025, 9, 20, 10, 30, 15, 999));

Deno.test("timestamp() formats UTC as YYYY/MM/DD HH:MM:SS with zero padding", () => {
  const rows: [Date, string][] = [
    [AT, "2025/10/20 10:30:15"],
    [new Date(Date.UTC(2024, 0, 2, 3, 4, 5)), "2024/01/02 03:04:05"],
    [new Date(Date.UTC(1999, 11, 31, 23, 59, 59)), "1999/12/31 23:59:59"],
    [new Date(0), "1970/01/01 00:00:00"],
  ];
  for (const [date, text] of rows) {
    assert.equal(timestamp(date), text);
  }
});

Deno.test("formatValue() quotes a value only when it would be ambiguous in k=v form", () => {
  const rows: [string | number | boolean, string][] = [
    ["plain", "plain"],
    [
      "/resize:fill:300:300/plain/https://example.com/image.jpg",
      "/resize:fill:300:300/plain/https://example.com/image.jpg",
    ],
    ["processed/c9009a400f110797b2710ce2a5bd60a4", "processed/c9009a400f110797b2710ce2a5bd60a4"],
    [42, "42"],
    [0, "0"],
    [true, "true"],
    [false, "false"],
    ["", '""'],
    ["two words", '"two words"'],
    ['say "hi"', '"say \\"hi\\""'],
    ['"', '"\\""'],
    ["a=b", '"a=b"'],
    ["tab\there", '"tab\\there"'],
    ["line\nbreak", '"line\\nbreak"'],
    ["back\\slash", '"back\\\\slash"'],
    ["bell\x07", '"bell\\u0007"'],
    ["café", "café"],
  ];
  for (const [value, text] of rows) {
    assert.equal(formatValue(value), text, JSON.stringify(value));
  }
});

Deno.test("formatLine() writes `date time LEVEL msg k=v...` in field order", () => {
  const rows: [Parameters<typeof formatLine>, string][] = [
    [["INFO", "imgproxy is ready", undefined, AT], "2025/10/20 10:30:15 INFO imgproxy is ready"],
    [["INFO", "imgproxy is ready", {}, AT], "2025/10/20 10:30:15 INFO imgproxy is ready"],
    [
      ["INFO", "Uploaded to S3", { path: "/x/y.jpg", bucket: "b", key: "k" }, AT],
      "2025/10/20 10:30:15 INFO Uploaded to S3 path=/x/y.jpg bucket=b key=k",
    ],
    [
      ["ERROR", "Upload failed", { key: "k", attempts: 3, reason: "AccessDenied (HTTP 403)" }, AT],
      '2025/10/20 10:30:15 ERROR Upload failed key=k attempts=3 reason="AccessDenied (HTTP 403)"',
    ],
    [
      ["WARN", "Upload skipped", { reason: "no-room", path: undefined, key: "k" }, AT],
      "2025/10/20 10:30:15 WARN Upload skipped reason=no-room key=k",
    ],
    [
      ["DEBUG", "x", { a: "", b: false, c: 0 }, AT],
      '2025/10/20 10:30:15 DEBUG x a="" b=false c=0',
    ],
  ];
  for (const [args, line] of rows) {
    assert.equal(formatLine(...args), line);
  }
});

Deno.test("formatLine() keeps a value with a newline on one line", () => {
  const line = formatLine("INFO", "m", { path: "/a\n2025/10/20 10:30:15 ERROR forged" }, AT);
  assert.equal(line.split("\n").length, 1);
  assert.ok(line.endsWith('path="/a\\n2025/10/20 10:30:15 ERROR forged"'), line);
});

Deno.test("formatLine() stamps the current time by default", () => {
  const before = Date.now();
  const line = formatLine("INFO", "now");
  const m = /^(\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d) INFO now$/.exec(line);
  assert.ok(m, line);
  const [, y, mo, d, h, mi, s] = m.map(Number);
  const stamped = Date.UTC(y!, mo! - 1, d!, h!, mi!, s!);
  assert.ok(stamped >= Math.floor(before / 1000) * 1000 - 1000 && stamped <= Date.now(), line);
});

Deno.test("MemoryLogger keeps formatted lines and finds them by text", () => {
  const logger = new MemoryLogger();
  logger.log("INFO", "Uploaded to S3", { path: "/p", bucket: "b", key: "k" });
  logger.log("ERROR", "Upload failed", { key: "k2" });
  assert.equal(logger.lines.length, 2);
  assert.match(
    logger.lines[0]!,
    /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d INFO Uploaded to S3 path=\/p bucket=b key=k$/,
  );
  assert.deepEqual(logger.find("key=k2").length, 1);
  assert.ok(logger.find("key=k2")[0]!.includes(" ERROR Upload failed "));
  assert.deepEqual(logger.find("nothing"), []);
});

Deno.test("consoleLogger writes INFO/DEBUG to stdout and WARN/ERROR to stderr, one line each", async () => {
  const script = `import { consoleLogger } from ${
    JSON.stringify(new URL("../lib/log.ts", import.meta.url).href)
  };
consoleLogger.log("INFO", "i", { k: "v" });
consoleLogger.log("DEBUG", "d");
consoleLogger.log("WARN", "w");
consoleLogger.log("ERROR", "e");
consoleLogger.log("INFO", "é ${"x".repeat(100_000)}");`;
  const out = await new Deno.Command("deno", {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const lines = (bytes: Uint8Array) =>
    new TextDecoder().decode(bytes).split("\n").map((l) => l.slice(20, 40));
  assert.deepEqual(lines(out.stdout), ["INFO i k=v", "DEBUG d", `INFO é ${"x".repeat(13)}`, ""]);
  assert.deepEqual(lines(out.stderr), ["WARN w", "ERROR e", ""]);
  assert.equal(
    out.stdout.byteLength,
    new TextEncoder().encode(
      new TextDecoder().decode(out.stdout),
    ).byteLength,
  );
  assert.ok(new TextDecoder().decode(out.stdout).endsWith("x".repeat(100_000) + "\n"), "in full");
});

Deno.test("consoleLogger: a closed stdout loses the line, not the process", async () => {
  const script = `import { consoleLogger } from ${
    JSON.stringify(new URL("../lib/log.ts", import.meta.url).href)
  };
for (let i = 0; i < 100; i++) consoleLogger.log("INFO", "x".repeat(10_000));
consoleLogger.log("WARN", "still here");`;
  const child = new Deno.Command("deno", {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await child.stdout.cancel();
  const out = await child.output();
  assert.equal(out.code, 0);
  assert.match(new TextDecoder().decode(out.stderr), /WARN still here\n$/);
});

/** A sink that keeps lines, by stream. */
function captured(): Sink & { outLines: string[]; errLines: string[] } {
  const outLines: string[] = [];
  const errLines: string[] = [];
  return { outLines, errLines, out: (l) => outLines.push(l), err: (l) => errLines.push(l) };
}

Deno.test("formatJsonLine() writes one JSON object: time, level, msg, then the fields", () => {
  const line = formatJsonLine("WARN", "two\nlines", {
    path: '/a "b"',
    n: 3,
    ok: false,
    skipped: undefined,
    msg: "clash",
    inf: Infinity,
  }, AT);
  assert.ok(!line.includes("\n"), line);
  assert.deepEqual(JSON.parse(line), {
    time: "2025-10-20T10:30:15.999Z",
    level: "WARN",
    msg: "two\nlines",
    path: '/a "b"',
    n: 3,
    ok: false,
    field_msg: "clash",
    inf: "Infinity",
  });
  assert.deepEqual(Object.keys(JSON.parse(line)).slice(0, 3), ["time", "level", "msg"]);
});

Deno.test("createLogger() writes the configured format and drops lines below the level", () => {
  const json = captured();
  const logger = createLogger({ format: "json", level: "WARN" }, json);
  logger.log("DEBUG", "d");
  logger.log("INFO", "i");
  logger.log("WARN", "w", { k: "v" });
  logger.log("ERROR", "e");
  assert.deepEqual(json.outLines, []);
  assert.deepEqual(json.errLines.map((l) => JSON.parse(l).msg), ["w", "e"]);
  assert.equal(JSON.parse(json.errLines[0]!).k, "v");

  const text = captured();
  const all = createLogger({ format: "text", level: "DEBUG" }, text);
  all.log("DEBUG", "d");
  all.log("INFO", "i", { k: "v" });
  all.log("ERROR", "e");
  assert.deepEqual(text.outLines.map((l) => l.slice(20)), ["DEBUG d", "INFO i k=v"]);
  assert.deepEqual(text.errLines.map((l) => l.slice(20)), ["ERROR e"]);

  const info = captured();
  createLogger({ format: "text", level: "INFO" }, info).log("DEBUG", "d");
  assert.deepEqual(info.outLines, []);
});

/**
 * Runs `body` in a child process with `sink` = servingSink() and `logger` over it, stdout and
 * stderr both into one pipe: the order of the output is the order of the writes.
 */
async function servingRun(body: string): Promise<{ code: number; lines: string[] }> {
  const script = `import { createLogger, servingSink } from ${
    JSON.stringify(new URL("../lib/log.ts", import.meta.url).href)
  };
const logger = createLogger({ format: "text", level: "DEBUG" }, servingSink());
${body}`;
  const out = await new Deno.Command("sh", {
    args: ["-c", 'exec deno eval --quiet "$1" 2>&1', "sh", script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const lines = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l !== "");
  return { code: out.code, lines };
}

/** What each access-log-style line says, without the timestamp. */
const said = (lines: string[]) =>
  lines.map((l) => /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d (.*)$/.exec(l)?.[1] ?? `(other) ${l}`);

Deno.test("servingSink: a stderr line comes after the stdout lines logged before it", async () => {
  const { code, lines } = await servingRun(`
logger.log("INFO", "a");
logger.log("INFO", "b");
logger.log("WARN", "c");
logger.log("INFO", "d");
await new Promise((r) => setTimeout(r, 10));
logger.log("INFO", "e");
logger.log("ERROR", "f");`);
  assert.equal(code, 0);
  assert.deepEqual(said(lines), ["INFO a", "INFO b", "WARN c", "INFO d", "INFO e", "ERROR f"]);
});

Deno.test("servingSink: lines held when the process exits are written", async () => {
  const { code, lines } = await servingRun(`
logger.log("INFO", "before exit");
Deno.exit(3);`);
  assert.equal(code, 3);
  assert.deepEqual(said(lines), ["INFO before exit"]);
});

Deno.test("servingSink: lines held when an uncaught error ends the process come before it", async () => {
  const { code, lines } = await servingRun(`
setTimeout(() => {
  logger.log("INFO", "last words");
  throw new Error("boom");
}, 0);`);
  assert.notEqual(code, 0);
  assert.equal(said(lines)[0], "INFO last words");
  assert.ok(lines.slice(1).some((l) => l.includes("boom")), lines.join("\n"));
});

Deno.test("servingSink: lines held when an unhandled rejection ends the process come before it", async () => {
  const { code, lines } = await servingRun(`
setTimeout(() => {
  logger.log("INFO", "last words");
  Promise.reject(new Error("rejected"));
}, 0);`);
  assert.notEqual(code, 0);
  assert.equal(said(lines)[0], "INFO last words");
  assert.ok(lines.slice(1).some((l) => l.includes("rejected")), lines.join("\n"));
});

Deno.test("servingSink: a burst larger than what is held is written whole and in order", async () => {
  const { code, lines } = await servingRun(`
for (let i = 0; i < 2000; i++) logger.log("INFO", "line", { i, pad: "x".repeat(100) });`);
  assert.equal(code, 0);
  assert.equal(lines.length, 2000);
  lines.forEach((l, i) => assert.ok(l.includes(` INFO line i=${i} pad=`), l));
});

Deno.test("servingSink: a burst larger than what is held is written before its turn ends", async () => {
  // stdout is a file here: its size tells, within the turn, what has been written so far.
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/out`;
    const script = `import { createLogger, servingSink } from ${
      JSON.stringify(new URL("../lib/log.ts", import.meta.url).href)
    };
const logger = createLogger({ format: "text", level: "DEBUG" }, servingSink());
for (let i = 0; i < 2000; i++) logger.log("INFO", "line", { i, pad: "x".repeat(100) });
Deno.exit(Deno.statSync("/dev/stdout").size >= 64 * 1024 ? 0 : 5);`;
    const { code } = await new Deno.Command("sh", {
      args: ["-c", 'exec deno eval --quiet "$1" > "$2"', "sh", script, out],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    assert.equal(code, 0, "nothing written before the turn ended");
    assert.equal((await Deno.readTextFile(out)).split("\n").filter((l) => l !== "").length, 2000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
