/**
 * The store's PutObject goes where `fetch` goes: when a proxy named in the environment
 * (`HTTP_PROXY`, `NO_PROXY`...) would carry `fetch`'s requests to the store, PutObject goes
 * through it too (over `fetch`); when it would not, PutObject goes direct on the store's own
 * connections. Checked against the runtime's own `fetch` in a program run with each
 * environment and the permission flags the program computes for itself.
 */
import assert from "node:assert/strict";
import { type Captured, startCapture } from "./support/capture.ts";
import { loadConfig } from "../lib/config.ts";
import { permissionFlags } from "../lib/permissions.ts";
import { proxiedByEnv } from "../lib/store/env_proxy.ts";

const OK = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

/** An environment, and whether PutObject must go on the store's own connections there. */
const CASES: [Record<string, string>, boolean][] = [
  [{}, true],
  [{ HTTP_PROXY: "PROXY" }, false],
  [{ HTTP_PROXY: "PROXY", NO_PROXY: "127.0.0.1" }, true],
  [{ HTTP_PROXY: "PROXY", NO_PROXY: "10.0.0.0/8, 127.0.0.0/8" }, true],
  [{ HTTP_PROXY: "PROXY", NO_PROXY: "example.com,127.0.0.2" }, false],
  // The runtime's `*` names host names, not IP addresses.
  [{ http_proxy: "PROXY", no_proxy: "*" }, false],
  [{ http_proxy: "PROXY", no_proxy: "localhost,127.0.0.1" }, true],
  // NO_PROXY set, even empty, is the list: no_proxy is not read then.
  [{ HTTP_PROXY: "PROXY", NO_PROXY: "", no_proxy: "127.0.0.1" }, false],
  [{ ALL_PROXY: "PROXY" }, false],
  // Not for an http endpoint, but any proxy variable leaves the choice to fetch.
  [{ HTTPS_PROXY: "PROXY" }, false],
];

function line(r: Captured): string {
  return r.requestLine;
}

Deno.test("S3 PutObject goes through a proxy from the environment exactly when fetch does", async () => {
  const store = startCapture(() => OK);
  const proxy = startCapture(() => OK);
  const endpoint = `http://127.0.0.1:${store.port}`;
  const config = loadConfig((name) =>
    ({ S3_BUCKET: "bkt", S3_ENDPOINT: endpoint, IMGPROXY_URL: "http://127.0.0.1:1" })[name]
  );
  const allowEnv = permissionFlags(config, () => undefined).find((f) =>
    f.startsWith("--allow-env=")
  )!;
  try {
    for (const [c, ownExpected] of CASES) {
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(c)) {
        env[k] = v === "PROXY" ? `http://127.0.0.1:${proxy.port}` : v;
      }
      const [s0, p0] = [store.requests.length, proxy.requests.length];
      const out = await new Deno.Command("deno", {
        args: [
          "run",
          "--lock=tests/deno.lock",
          "--allow-net=127.0.0.1",
          allowEnv,
          "--allow-read",
          "--allow-sys",
          new URL("./support/put_via_env.ts", import.meta.url).pathname,
          endpoint,
        ],
        env: { ...env, PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "" },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const what = JSON.stringify(c);
      assert.equal(out.code, 0, `${what}: ${new TextDecoder().decode(out.stderr)}`);
      assert.equal(new TextDecoder().decode(out.stdout).trim(), "stored", what);
      const direct = store.requests.slice(s0);
      const proxied = proxy.requests.slice(p0);
      const fetchWent = direct.some((r) => r.requestLine.includes("/fetch-probe"))
        ? "direct"
        : "proxy";
      const putWent = direct.some((r) => r.requestLine.includes("/put-probe")) ? "direct" : "proxy";
      assert.equal(putWent, fetchWent, `${what}: ${[...direct, ...proxied].map(line)}`);
      if (fetchWent === "proxy") {
        assert.ok(proxied.some((r) => r.requestLine.startsWith(`PUT ${endpoint}/bkt/put-probe`)));
      }
      // Where no proxy applies, PutObject goes on the store's own connections (fetch would add
      // its user-agent).
      const put = [...direct, ...proxied].find((r) => r.requestLine.includes("/put-probe"))!;
      const own = !put.headers.some(([n]) => n.toLowerCase() === "user-agent");
      assert.equal(own, !proxiedByEnv(new URL(endpoint), (n) => env[n]), what);
      assert.equal(own, ownExpected, what);
    }
  } finally {
    await store.close();
    await proxy.close();
  }
});
