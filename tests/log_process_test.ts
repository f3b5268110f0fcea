/**
 * The real program's output under `LOG_FORMAT=json`: every line it writes, from the first
 * (configuration problems) to the last (the shutdown summary), parses as one JSON object.
 */
import assert from "node:assert/strict";
import { freePort } from "./support/net_fs.ts";
import { start, stop, withFakeImgproxy } from "./support/process.ts";

const PATH = "/_/rs:fill:300:300/plain/http://example.com/images/cat.jpg";

/** Parses every non-empty line; fails naming the first line that is not a JSON object. */
function jsonLines(output: string): Record<string, unknown>[] {
  const lines = output.split("\n").filter((l) => l !== "");
  assert.ok(lines.length > 0, "no output at all");
  return lines.map((line) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      assert.fail(`not a JSON line: ${JSON.stringify(line)}\nin:\n${output}`);
    }
    assert.ok(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed), line);
    const record = parsed as Record<string, unknown>;
    assert.equal(typeof record.time, "string", line);
    assert.ok(["DEBUG", "INFO", "WARN", "ERROR"].includes(record.level as string), line);
    assert.equal(typeof record.msg, "string", line);
    return record;
  });
}

Deno.test("process with LOG_FORMAT=json writes only JSON lines, start-up to shutdown", async () => {
  await withFakeImgproxy("log-json-", async (fake, dir) => {
    const port = freePort();
    const proxy = start({
      LOG_FORMAT: "json",
      CACHE_DIR: dir,
      IMGPROXY_URL: fake.url,
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      METRICS_BIND: `127.0.0.1:${freePort()}`,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "10",
    });
    try {
      await proxy.waitFor('"msg":"Listening"');
      const res = await fetch(`http://127.0.0.1:${port}${PATH}`);
      assert.equal(res.status, 200);
      await res.bytes();
      await proxy.waitFor('"msg":"Stored in cache directory"');
    } finally {
      stop(proxy);
    }
    const { code, output } = await proxy.done;
    assert.equal(code, 0, output);
    const records = jsonLines(output);
    const msgs = records.map((r) => r.msg);
    for (
      const msg of ["Store", "imgproxy is ready", "Listening", "Shutting down", "Uploads drained"]
    ) {
      assert.ok(msgs.includes(msg), `${msg} missing from ${JSON.stringify(msgs)}`);
    }
    const stored = records.find((r) => r.msg === "Stored in cache directory")!;
    assert.equal(stored.path, PATH);
    assert.equal(records.find((r) => r.msg === "Uploads drained")!.stored, 1);
    const access = records.filter((r) => r.msg === "Request");
    assert.equal(access.length, 1, output);
    assert.equal(access[0]!.path, PATH);
    assert.equal(access[0]!.status, 200);
    assert.equal(access[0]!.cache, "MISS");
  });
});

Deno.test("process with IMGPROXY_LOG_FORMAT=json reports bad configuration as one JSON line", async () => {
  const proxy = start({
    IMGPROXY_LOG_FORMAT: "json",
    UPLOAD_CONCURRENCY: "many",
    IMGPROXY_URL: "ftp://127.0.0.1:1",
  });
  const { code, output } = await proxy.done;
  assert.equal(code, 2, output);
  const records = jsonLines(output);
  assert.equal(records.length, 1, output);
  assert.equal(records[0]!.level, "ERROR");
  assert.match(records[0]!.msg as string, /UPLOAD_CONCURRENCY: expected/);
  assert.match(records[0]!.msg as string, /IMGPROXY_URL: expected/);
});

Deno.test("process with LOG_LEVEL=warn writes nothing below WARN", async () => {
  await withFakeImgproxy("log-level-", async (fake, dir) => {
    const port = freePort();
    const proxy = start({
      LOG_LEVEL: "warn",
      CACHE_DIR: dir,
      IMGPROXY_URL: fake.url,
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "10",
    });
    try {
      // No "Listening" line to wait for at this level: wait for the listener itself.
      let res: Response | null = null;
      for (let i = 0; res === null && i < 400; i++) {
        res = await fetch(`http://127.0.0.1:${port}${PATH}`).catch(() => null);
        if (res === null) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(res !== null, proxy.output());
      assert.equal(res.status, 200);
      await res.bytes();
    } finally {
      stop(proxy);
    }
    const { code, output } = await proxy.done;
    assert.equal(code, 0, output);
    assert.doesNotMatch(output, / (INFO|DEBUG) /, output);
  });
});

Deno.test("entrypoint.sh writes its own lines as JSON when the proxy's format is json", async () => {
  const run = async (env: Record<string, string>) => {
    const out = await new Deno.Command("sh", {
      args: [new URL("../entrypoint.sh", import.meta.url).pathname],
      env: { IMGPROXY_BIN: "/nonexistent/imgproxy", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
    };
  };
  for (
    const env of [{ LOG_FORMAT: "json" }, { IMGPROXY_LOG_FORMAT: "json" }] as Record<
      string,
      string
    >[]
  ) {
    const { code, text } = await run(env);
    assert.equal(code, 127, text);
    const [record] = jsonLines(text);
    assert.equal(record!.level, "ERROR");
    assert.match(
      record!.msg as string,
      /^entrypoint: imgproxy not found: IMGPROXY_BIN="\/nonexistent/,
    );
  }
  const grace = await run({ LOG_FORMAT: "json", STOP_GRACE_PERIOD_IN_SEC: 'a"b\\c' });
  assert.equal(grace.code, 2, grace.text);
  assert.match(jsonLines(grace.text)[0]!.msg as string, /got "a"b\\c"$/);
  // LOG_FORMAT wins over imgproxy's setting.
  const text = await run({ LOG_FORMAT: "text", IMGPROXY_LOG_FORMAT: "json" });
  assert.match(text.text, /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d ERROR entrypoint: /);
});
