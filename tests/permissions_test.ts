import assert from "node:assert/strict";
import { type EnvReader, loadConfig, VARIABLES } from "../lib/config.ts";
import { hostPort, parseExtra, permissionFlags, SDK_ENV } from "../lib/permissions.ts";

function envOf(vars: Record<string, string> = {}): EnvReader {
  return (name) => vars[name];
}

/** The flags for an environment, as `flag name → listed values` (null for a bare flag). */
function flagsFor(vars: Record<string, string>): { raw: string[]; flags: Map<string, string[]> } {
  const env = envOf(vars);
  const raw = permissionFlags(loadConfig(env), env);
  const flags = new Map<string, string[]>();
  for (const flag of raw) {
    const eq = flag.indexOf("=");
    const name = eq === -1 ? flag : flag.slice(0, eq);
    assert.ok(!flags.has(name), `${name} given twice in ${raw.join(" ")}`);
    flags.set(name, eq === -1 ? [] : flag.slice(eq + 1).split(","));
  }
  return { raw, flags };
}

const STATIC_KEYS = {
  S3_BUCKET: "imgs",
  AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
  AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMIsecret",
  HOME: "/home/app",
};

/** EC2 instance metadata (IPv4, IPv6), ECS task roles, EKS Pod Identity (IPv4, IPv6). */
const CREDENTIAL_HOSTS = [
  "169.254.169.254:80",
  "[fd00:ec2::254]:80",
  "169.254.170.2:80",
  "169.254.170.23:80",
  "[fd00:ec2::23]:80",
];

/** Flags that would grant more than the program needs. */
function assertNarrow(raw: string[]): void {
  for (const flag of raw) {
    assert.ok(!["-A", "--allow-all"].includes(flag), `${flag} in ${raw.join(" ")}`);
    assert.match(flag, /^--allow-(net|env|read|write|sys)=\S/, `unexpected or unscoped ${flag}`);
  }
}

Deno.test("hostPort() fills in the scheme's default port", () => {
  const rows: [string, string][] = [
    ["https://fly.storage.tigris.dev", "fly.storage.tigris.dev:443"],
    ["http://127.0.0.1:8081", "127.0.0.1:8081"],
    ["http://imgproxy", "imgproxy:80"],
    ["https://s3.example:8443/path", "s3.example:8443"],
    ["http://[::1]:7070", "[::1]:7070"],
    ["https://host:443", "host:443"],
    ["http://host:80", "host:80"],
  ];
  for (const [url, expected] of rows) {
    assert.equal(hostPort(url), expected, url);
  }
});

Deno.test("permissionFlags() for the local store: bind, imgproxy and CACHE_DIR only", () => {
  const { raw, flags } = flagsFor({});
  assertNarrow(raw);
  assert.deepEqual(flags.get("--allow-net"), ["0.0.0.0:8080", "127.0.0.1:8081"]);
  assert.deepEqual(flags.get("--allow-read"), ["./data/cache"]);
  assert.deepEqual(flags.get("--allow-write"), ["./data/cache"]);
  assert.equal(flags.has("--allow-sys"), false);
  const env = flags.get("--allow-env")!;
  assert.deepEqual(env.toSorted(), Object.keys(VARIABLES).toSorted());
  assert.ok(!env.includes("AWS_*"), "no AWS_* wildcard without a bucket");
  for (const name of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HOME"]) {
    assert.ok(!env.includes(name), name);
  }
});

Deno.test("permissionFlags() follows IMGPROXY_BIND, IMGPROXY_URL and CACHE_DIR", () => {
  const rows: [Record<string, string>, string[], string][] = [
    [{ IMGPROXY_BIND: "127.0.0.1:9000" }, ["127.0.0.1:9000", "127.0.0.1:8081"], "./data/cache"],
    [{ IMGPROXY_BIND: "[::1]:9000" }, ["[::1]:9000", "127.0.0.1:8081"], "./data/cache"],
    [
      { IMGPROXY_URL: "https://imgproxy.internal/prefix", CACHE_DIR: "/var/cache/img" },
      ["0.0.0.0:8080", "imgproxy.internal:443"],
      "/var/cache/img",
    ],
    [{ IMGPROXY_BIND: ":8081" }, ["0.0.0.0:8081", "127.0.0.1:8081"], "./data/cache"],
  ];
  for (const [vars, net, dir] of rows) {
    const { raw, flags } = flagsFor(vars);
    assertNarrow(raw);
    assert.deepEqual(flags.get("--allow-net"), net, JSON.stringify(vars));
    assert.deepEqual(flags.get("--allow-read"), [dir]);
    assert.deepEqual(flags.get("--allow-write"), [dir]);
  }
});

Deno.test("permissionFlags() for S3 with static keys: the endpoint, AWS_* and osRelease", () => {
  const { raw, flags } = flagsFor({ ...STATIC_KEYS, S3_ENDPOINT: "http://127.0.0.1:7070" });
  assertNarrow(raw);
  assert.deepEqual(flags.get("--allow-net"), ["0.0.0.0:8080", "127.0.0.1:8081", "127.0.0.1:7070"]);
  const env = flags.get("--allow-env")!;
  for (const name of [...Object.keys(VARIABLES), ...SDK_ENV, "AWS_*", "HOME"]) {
    assert.ok(env.includes(name), `${name} missing from --allow-env`);
  }
  assert.deepEqual(flags.get("--allow-sys"), ["osRelease", "uid", "homedir"]);
  // No disk at all: the keys come from the environment.
  assert.equal(flags.has("--allow-read"), false);
  assert.equal(flags.has("--allow-write"), false);
  for (const host of [...CREDENTIAL_HOSTS, "sts.amazonaws.com:443"]) {
    assert.ok(!flags.get("--allow-net")!.includes(host), host);
  }
  // The flags name variables, never their values.
  assert.ok(!raw.join(" ").includes("wJalrXUtnFEMIsecret"));
  assert.ok(!raw.join(" ").includes("AKIAEXAMPLE"));
});

Deno.test("permissionFlags() gives the default https endpoint port 443", () => {
  const { flags } = flagsFor({ ...STATIC_KEYS, S3_FORCE_PATH_STYLE: "true" });
  assert.ok(flags.get("--allow-net")!.includes("fly.storage.tigris.dev:443"));
  const aws = flagsFor({ ...STATIC_KEYS, AWS_ENDPOINT_URL_S3: "https://t3.storage.dev:8443" });
  assert.ok(aws.flags.get("--allow-net")!.some((h) => h.endsWith("t3.storage.dev:8443")));
});

Deno.test("permissionFlags() lets the SDK reach the virtual-hosted bucket host", () => {
  // With path-style off (the default for a named endpoint such as Tigris), the AWS SDK sends
  // requests to https://<bucket>.<endpoint host>/<key>, and Deno's --allow-net matches hosts
  // exactly: the bucket's own host name must be listed.
  const rows: [Record<string, string>, string][] = [
    [{ ...STATIC_KEYS }, "imgs.fly.storage.tigris.dev:443"],
    [{ ...STATIC_KEYS, S3_ENDPOINT: "https://t3.storage.dev" }, "imgs.t3.storage.dev:443"],
    [
      { ...STATIC_KEYS, S3_ENDPOINT: "https://s3.example:8443", S3_BUCKET: "my-bucket" },
      "my-bucket.s3.example:8443",
    ],
  ];
  for (const [vars, host] of rows) {
    const net = flagsFor(vars).flags.get("--allow-net")!;
    assert.ok(net.includes(host), `${host} missing from --allow-net=${net.join(",")}`);
  }
});

Deno.test("permissionFlags() for S3 without static keys adds the credential sources", () => {
  const { raw, flags } = flagsFor({
    S3_BUCKET: "imgs",
    HOME: "/home/app",
    AWS_REGION: "eu-west-1",
  });
  assertNarrow(raw);
  const net = flags.get("--allow-net")!;
  for (
    const host of [
      ...CREDENTIAL_HOSTS,
      "sts.amazonaws.com:443",
      "sts.eu-west-1.amazonaws.com:443",
      "fly.storage.tigris.dev:443",
    ]
  ) {
    assert.ok(net.includes(host), `${host} missing from ${net.join(",")}`);
  }
  assert.deepEqual(flags.get("--allow-read"), [
    "/home/app/.aws/credentials",
    "/home/app/.aws/config",
  ]);
  assert.equal(flags.has("--allow-write"), false);
  assert.deepEqual(flags.get("--allow-sys"), ["osRelease", "uid", "homedir"]);
  assert.ok(flags.get("--allow-env")!.includes("AWS_*"));
});

Deno.test("permissionFlags() without static keys follows the AWS file variables", () => {
  const rows: [Record<string, string>, string[], string][] = [
    [
      { AWS_SHARED_CREDENTIALS_FILE: "/etc/aws/creds", AWS_CONFIG_FILE: "/etc/aws/config" },
      ["/etc/aws/creds", "/etc/aws/config"],
      "sts.us-east-1.amazonaws.com:443",
    ],
    [
      { HOME: "/root", AWS_WEB_IDENTITY_TOKEN_FILE: "/var/run/token", S3_REGION: "ap-south-1" },
      ["/root/.aws/credentials", "/root/.aws/config", "/var/run/token"],
      "sts.ap-south-1.amazonaws.com:443",
    ],
    // A blank key is no key.
    [
      { HOME: "/h", AWS_ACCESS_KEY_ID: "" },
      ["/h/.aws/credentials", "/h/.aws/config"],
      "sts.us-east-1.amazonaws.com:443",
    ],
  ];
  for (const [vars, read, sts] of rows) {
    const { flags } = flagsFor({ S3_BUCKET: "imgs", ...vars });
    assert.deepEqual(flags.get("--allow-read"), read, JSON.stringify(vars));
    assert.ok(flags.get("--allow-net")!.includes(sts), `${sts} for ${JSON.stringify(vars)}`);
  }
});

Deno.test("permissionFlags() without static keys lets container credentials from a full URI in", () => {
  // EKS Pod Identity sets these two; the SDK's container provider reads the token file and
  // asks the agent at the URI.
  const { flags } = flagsFor({
    S3_BUCKET: "imgs",
    HOME: "/h",
    AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://169.254.170.23/v1/credentials",
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: "/var/run/secrets/pods.eks.amazonaws.com/token",
  });
  assert.ok(flags.get("--allow-net")!.includes("169.254.170.23:80"));
  assert.ok(
    flags.get("--allow-read")!.includes("/var/run/secrets/pods.eks.amazonaws.com/token"),
  );
  // Another agent the platform names is allowed too, at its own host and port.
  const other = flagsFor({
    S3_BUCKET: "imgs",
    AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://127.0.0.1:51679/creds",
  });
  assert.ok(other.flags.get("--allow-net")!.includes("127.0.0.1:51679"));
  // With static keys none of it is needed.
  const keyed = flagsFor({
    ...STATIC_KEYS,
    AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://127.0.0.1:51679/creds",
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: "/t",
  });
  assert.ok(!keyed.flags.get("--allow-net")!.includes("127.0.0.1:51679"));
  assert.equal(keyed.flags.has("--allow-read"), false);
});

Deno.test("permissionFlags() never grants everything, in any mode", () => {
  const envs: Record<string, string>[] = [
    {},
    { CACHE_DIR: "/tmp/x", IMGPROXY_BIND: "[::]:80" },
    STATIC_KEYS,
    { S3_BUCKET: "b" },
    { S3_BUCKET: "b", S3_ENDPOINT: "http://[::1]:9000", HOME: "/h" },
  ];
  for (const vars of envs) {
    const { raw, flags } = flagsFor(vars);
    assertNarrow(raw);
    assert.ok(flags.has("--allow-net") && flags.has("--allow-env"), raw.join(" "));
  }
});

Deno.test("parseExtra() takes --no-listen and repeatable --read PATH, nothing else", () => {
  assert.deepEqual(parseExtra([]), { read: [] });
  assert.deepEqual(parseExtra(["--no-listen", "--read", "a b.txt", "--read", "/l"]), {
    read: ["a b.txt", "/l"],
    listen: false,
  });
  assert.throws(() => parseExtra(["--read"]), TypeError);
  assert.throws(() => parseExtra(["--write", "x"]), TypeError);
});

Deno.test("permissionFlags() with extra reads: added to --allow-read, for either store", () => {
  for (const vars of [{ CACHE_DIR: "/srv/cache" }, STATIC_KEYS]) {
    const env = envOf(vars);
    const raw = permissionFlags(loadConfig(env), env, { read: ["/lists/a.txt"], listen: false });
    assertNarrow(raw);
    const read = raw.find((f) => f.startsWith("--allow-read="))?.split("=")[1]?.split(",");
    assert.ok(read?.includes("/lists/a.txt"), raw.join(" "));
    assert.ok(!raw.some((f) => f.startsWith("--allow-write=") && f.includes("/lists/")));
  }
});

Deno.test("lib/permissions.ts as a script: --no-listen --read PATH (bin/warm's call)", async () => {
  const out = await new Deno.Command("deno", {
    args: [
      "run",
      "--quiet",
      "--no-prompt",
      "--allow-env",
      new URL("../lib/permissions.ts", import.meta.url).pathname,
      "--no-listen",
      "--read",
      "/lists/my list.txt",
    ],
    env: { CACHE_DIR: "/srv/cache", PATH: Deno.env.get("PATH") ?? "" },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const lines = new TextDecoder().decode(out.stdout).trimEnd().split("\n");
  assert.ok(lines.includes("--allow-read=/lists/my list.txt,/srv/cache"), lines.join("\n"));
  assert.ok(lines.includes("--allow-write=/srv/cache"), lines.join("\n"));
});

Deno.test("permissionFlags() with listen false grants neither IMGPROXY_BIND nor METRICS_BIND", () => {
  const env = envOf({ CACHE_DIR: "/srv/cache", METRICS_BIND: "127.0.0.1:9464" });
  const listening = permissionFlags(loadConfig(env), env);
  const net = (flags: string[]) =>
    flags.find((f) => f.startsWith("--allow-net="))!.slice("--allow-net=".length).split(",");
  assert.ok(net(listening).includes("0.0.0.0:8080"));
  assert.ok(net(listening).includes("127.0.0.1:9464"));
  const warm = permissionFlags(loadConfig(env), env, { listen: false });
  assert.deepEqual(net(warm), ["127.0.0.1:8081"]);
});
