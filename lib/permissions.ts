/**
 * The one place that defines the proxy's Deno permission flags, computed from the same
 * configuration the program reads: `--allow-net` names only the bind address, imgproxy's host
 * and the store's host (plus the AWS credential endpoints when credentials must be fetched);
 * `--allow-env` only the variables the program and the AWS SDK read; a local store gets
 * read/write on its directory only.
 *
 * Run as a script (`bin/start` does), it validates the configuration and prints the flags, one
 * per line; with bad configuration it prints the problems and exits 2.
 */
import {
  bindHostPort,
  type Config,
  ConfigError,
  denoEnv,
  type EnvReader,
  loadConfig,
  logSettings,
  VARIABLES,
} from "./config.ts";
import { createLogger } from "./log.ts";
import { PROXY_ENV } from "./store/env_proxy.ts";

/** Variables the AWS SDK reads besides `AWS_*` (seen under Deno: see the facts file). */
export const SDK_ENV = ["HOME", "USERPROFILE", "HOMEPATH", "HOMEDRIVE", "_X_AMZN_TRACE_ID"];

/**
 * The AWS endpoints that serve instance and container credentials: EC2 instance metadata
 * (IPv4, IPv6), ECS task roles, and EKS Pod Identity (IPv4, IPv6).
 */
const CREDENTIAL_HOSTS = [
  "169.254.169.254:80",
  "[fd00:ec2::254]:80",
  "169.254.170.2:80",
  "169.254.170.23:80",
  "[fd00:ec2::23]:80",
];

/** Returns `host:port` for an http(s) URL, with the scheme's default port filled in. */
export function hostPort(url: string): string {
  const u = new URL(url);
  const port = u.port !== "" ? u.port : u.protocol === "https:" ? "443" : "80";
  return `${u.hostname}:${port}`;
}

/** What a command other than the proxy needs besides the proxy's own permissions. */
export interface ExtraPermissions {
  /** Files to read (the warm command's list). */
  read?: string[];
  /** false: the command does not listen on IMGPROXY_BIND. */
  listen?: boolean;
}

/** Computes the permission flags for a configuration and environment. */
export function permissionFlags(
  config: Readonly<Config>,
  env: EnvReader,
  extra: ExtraPermissions = {},
): string[] {
  const net = new Set<string>();
  if (extra.listen !== false) {
    net.add(bindHostPort(config.bind));
    if (config.metricsBind !== null) net.add(bindHostPort(config.metricsBind));
  }
  net.add(hostPort(config.imgproxyUrl));
  const read = new Set<string>(extra.read ?? []);
  const write = new Set<string>();
  const envNames = new Set<string>(Object.keys(VARIABLES));
  const flags: string[] = [];
  if (config.store.kind === "s3") {
    net.add(hostPort(config.store.endpoint));
    if (!config.store.forcePathStyle) {
      // Virtual-hosted addressing sends requests to <bucket>.<endpoint host>, and Deno matches
      // hosts exactly.
      net.add(`${config.store.bucket}.${hostPort(config.store.endpoint)}`);
    }
    for (const name of SDK_ENV) envNames.add(name);
    // The store's PUTs go over fetch when fetch would use a proxy (lib/store/env_proxy.ts).
    for (const name of PROXY_ENV) envNames.add(name);
    envNames.add("AWS_*");
    const staticKeys = (env("AWS_ACCESS_KEY_ID") ?? "") !== "";
    if (!staticKeys) {
      // No keys in the environment: the SDK's chain may ask the instance or container
      // metadata service, or exchange a web identity token with STS.
      for (const h of CREDENTIAL_HOSTS) net.add(h);
      const region = config.store.region === "auto" ? "us-east-1" : config.store.region;
      net.add("sts.amazonaws.com:443");
      net.add(`sts.${region}.amazonaws.com:443`);
      const home = env("HOME");
      read.add(env("AWS_SHARED_CREDENTIALS_FILE") ?? `${home ?? "."}/.aws/credentials`);
      read.add(env("AWS_CONFIG_FILE") ?? `${home ?? "."}/.aws/config`);
      const tokenFile = env("AWS_WEB_IDENTITY_TOKEN_FILE");
      if (tokenFile) read.add(tokenFile);
      // Container credentials from a full URI (EKS Pod Identity, or any agent the platform
      // names), with the authorization token read from a file.
      const fullUri = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
      if (fullUri) {
        try {
          net.add(hostPort(fullUri));
        } catch {
          // Not a URL: the SDK refuses it with its own error; nothing to allow.
        }
      }
      const authFile = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
      if (authFile) read.add(authFile);
    }
    // The SDK puts the OS release into its User-Agent, and its config loader asks for the
    // user id and home directory (a NotCapable there is an unhandled rejection: fatal).
    flags.push("--allow-sys=osRelease,uid,homedir");
  } else {
    read.add(config.store.dir);
    write.add(config.store.dir);
  }
  flags.unshift(`--allow-net=${[...net].join(",")}`, `--allow-env=${[...envNames].join(",")}`);
  if (read.size > 0) flags.push(`--allow-read=${[...read].join(",")}`);
  if (write.size > 0) flags.push(`--allow-write=${[...write].join(",")}`);
  return flags;
}

/** Parses the script's arguments: `--no-listen` and `--read PATH` (repeatable). */
export function parseExtra(args: string[]): ExtraPermissions {
  const extra: ExtraPermissions = { read: [] };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--no-listen") extra.listen = false;
    else if (args[i] === "--read" && args[i + 1] !== undefined) extra.read!.push(args[++i]!);
    else throw new TypeError(`Unknown argument: ${JSON.stringify(args[i])}`);
  }
  return extra;
}

if (import.meta.main) {
  try {
    console.log(
      permissionFlags(loadConfig(denoEnv), denoEnv, parseExtra(Deno.args)).join("\n"),
    );
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // The first line the operator sees: in the format they asked for.
    createLogger(logSettings(denoEnv)).log("ERROR", err.message);
    Deno.exit(2);
  }
}
