/**
 * The deployment examples parse, and every variable they set is one the program reads
 * (`VARIABLES` in lib/config.ts), one of the AWS SDK's, or one of imgproxy's listed below: a
 * renamed or misspelt setting in an example fails here instead of being silently ignored.
 */
import assert from "node:assert/strict";
// Test-only parsers: imported by npm: specifier and locked in tests/deno.lock, so the proxy's
// own start never downloads them (see tests/dependencies_test.ts).
// deno-lint-ignore no-import-prefix
import { parse as parseYaml } from "npm:yaml@2.9.1";
// deno-lint-ignore no-import-prefix
import { parse as parseToml } from "npm:smol-toml@1.9.1";
import { VARIABLES } from "../lib/config.ts";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

/**
 * imgproxy's own settings the examples use (https://docs.imgproxy.net/configuration/options).
 * Add one here only after checking its name there.
 */
const IMGPROXY_SETTINGS = new Set([
  "IMGPROXY_LOCAL_FILESYSTEM_ROOT",
  "IMGPROXY_MAX_SRC_RESOLUTION",
  "IMGPROXY_TTL",
  "IMGPROXY_KEY",
  "IMGPROXY_SALT",
]);

/** The AWS SDK's variables the examples may set. */
const AWS_SETTINGS = new Set(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]);

/** Why `name` is not a setting of a process that runs the proxy, or null when it is one. */
function unknownToProxy(name: string): string | null {
  if (name in VARIABLES || AWS_SETTINGS.has(name) || IMGPROXY_SETTINGS.has(name)) return null;
  return `${name} is neither read by the proxy (VARIABLES in lib/config.ts), nor an AWS SDK ` +
    "variable, nor one of imgproxy's settings listed in this test";
}

interface ComposeService {
  image?: string;
  environment?: Record<string, string> | string[];
  command?: string[];
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
}

/** A service's environment as name → value, from either of Compose's two forms. */
function environmentOf(service: ComposeService): Map<string, string> {
  const env = service.environment ?? {};
  const pairs = Array.isArray(env)
    ? env.map((e) => [e.split("=")[0]!, e.slice(e.indexOf("=") + 1)] as const)
    : Object.entries(env).map(([k, v]) => [k, String(v)] as const);
  return new Map(pairs);
}

Deno.test("examples/compose.yaml: imgproxy, the proxy and an S3 store, with known variables", async () => {
  const compose = parseYaml(await read("examples/compose.yaml")) as {
    services: Record<string, ComposeService>;
  };
  const { imgproxy, proxy, storage } = compose.services;
  assert.ok(imgproxy && proxy && storage, "expected the services imgproxy, proxy and storage");
  assert.match(imgproxy.image ?? "", /imgproxy/);

  const env = environmentOf(proxy);
  const problems = [...env.keys()].map(unknownToProxy).filter((p) => p !== null);
  assert.deepEqual(problems, []);
  for (const name of environmentOf(imgproxy).keys()) {
    assert.ok(IMGPROXY_SETTINGS.has(name), `imgproxy service: ${name} is not a listed setting`);
  }

  // The proxy's wiring points at the other services, with what a host-name endpoint needs.
  assert.equal(new URL(env.get("IMGPROXY_URL")!).hostname, "imgproxy");
  assert.equal(new URL(env.get("S3_ENDPOINT")!).hostname, "storage");
  assert.equal(env.get("S3_FORCE_PATH_STYLE"), "true", "a host-name endpoint needs path-style");
  assert.ok(env.get("S3_BUCKET"), "S3_BUCKET is not set: the proxy would store locally");
  assert.deepEqual(Object.keys(proxy.depends_on ?? {}).sort(), ["imgproxy", "storage"]);

  // The store's credentials are the proxy's.
  const store = environmentOf(storage);
  assert.equal(store.get("ROOT_ACCESS_KEY"), env.get("AWS_ACCESS_KEY_ID"));
  assert.equal(store.get("ROOT_SECRET_KEY"), env.get("AWS_SECRET_ACCESS_KEY"));
  // The bucket the store creates is the one the proxy writes to.
  assert.match(JSON.stringify(storage), new RegExp(`/data/${env.get("S3_BUCKET")}\\b`));

  // The image it mounts for imgproxy is the one the README's quick start uses.
  const mount = (imgproxy.volumes ?? []).find((v) => v.endsWith(":/images:ro"));
  assert.ok(mount, "imgproxy mounts no /images volume");
  await Deno.stat(new URL(`examples/${mount.split(":")[0]}/sample.jpg`, ROOT));
});

Deno.test("examples/fly.toml: parses, and its [env] holds only known variables", async () => {
  const fly = parseToml(await read("examples/fly.toml")) as {
    env?: Record<string, unknown>;
    build?: { dockerfile?: string };
    http_service?: { internal_port?: number };
    kill_timeout?: number;
  };
  const env = fly.env ?? {};
  const problems = Object.keys(env).map(unknownToProxy).filter((p) => p !== null);
  assert.deepEqual(problems, []);
  for (const [name, value] of Object.entries(env)) {
    assert.equal(typeof value, "string", `${name}: Fly passes strings; quote the value`);
  }
  // The image it builds is this repository's, listening where the proxy listens by default.
  assert.equal(fly.build?.dockerfile, "Dockerfile");
  await Deno.stat(new URL("Dockerfile", ROOT));
  assert.equal(String(fly.http_service?.internal_port), VARIABLES.IMGPROXY_BIND.split(":").pop());
  // Fly must wait longer than the proxy's drain before it kills the Machine.
  const drain = Number(env.UPLOAD_DRAIN_TIMEOUT_IN_SEC ?? VARIABLES.UPLOAD_DRAIN_TIMEOUT_IN_SEC);
  assert.ok((fly.kill_timeout ?? 5) > drain, "kill_timeout must exceed the upload drain time");
});

Deno.test("unknownToProxy() refuses a misspelt setting", () => {
  assert.equal(unknownToProxy("S3_BUCKET"), null);
  assert.equal(unknownToProxy("AWS_REGION"), null);
  assert.notEqual(unknownToProxy("S3_BUCKETS"), null);
  assert.notEqual(unknownToProxy("IMGPROXY_LOCAL_FILESYSTEM_ROOTS"), null);
});

/** Every `name:` of a Kubernetes-style `env:` list, anywhere in a parsed YAML document. */
function envNames(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => envNames(n, out));
  else if (node !== null && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "env" && Array.isArray(v)) {
        for (const e of v) if (typeof e?.name === "string") out.push(e.name);
      } else envNames(v, out);
    }
  }
  return out;
}

Deno.test("YAML examples in docs/ parse and set only known variables", async () => {
  let blocks = 0;
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (!entry.name.endsWith(".md")) continue;
    const text = await read(`docs/${entry.name}`);
    for (const m of text.matchAll(/^```ya?ml\n([\s\S]*?)^```$/gm)) {
      blocks++;
      const problems = envNames(parseYaml(m[1]!)).map(unknownToProxy).filter((p) => p !== null);
      assert.deepEqual(problems, [], `docs/${entry.name}`);
    }
  }
  assert.ok(blocks > 0, "no YAML example found in docs/ (the Kubernetes one was expected)");
});
