/**
 * Which imgproxy the end-to-end suite runs (real imgproxy where scripts/install-deps.sh
 * installs it, else the stand-in, said in every test name), and starting it.
 */
import { freePort } from "../../tests/support/net_fs.ts";
import { baseEnv, findOnPath, Proc, ROOT, waitFor } from "./child.ts";

export const STAND_IN = `${ROOT}/e2e/support/imgproxy-stand-in`;

/** Which imgproxy the suite runs. */
export interface ImgproxyChoice {
  real: boolean;
  bin: string;
  version: string;
  /** For test names and the banner, e.g. "real imgproxy 4.0.12". */
  label: string;
}

/** Reads an environment variable (a seam for tests). */
export type Env = (name: string) => string | undefined;

let choice: Promise<ImgproxyChoice> | null = null;

/**
 * Picks imgproxy, where scripts/install-deps.sh puts it: `IMGPROXY_BIN` when set (and then
 * only it), else `imgproxy` on PATH, in `GOBIN`, or in ~/go/bin (install-deps.sh links the
 * binary it builds into `GOBIN`, by default ~/go/bin); falls back to the stand-in (which is not
 * imgproxy) when none exists, or when IMGPROXY_BIN names it
 * (`IMGPROXY_BIN=e2e/support/imgproxy-stand-in deno task test:e2e`).
 * With `E2E_EXPECT_IMGPROXY=<version>` (CI sets it) anything but real imgproxy of that version
 * is an error, so a run that was meant to test the real thing cannot pass on the stand-in.
 */
export function chooseImgproxy(): Promise<ImgproxyChoice> {
  return choice ??= pickImgproxy((name) => Deno.env.get(name));
}

/** {@linkcode chooseImgproxy} for an environment, not remembered. */
export async function pickImgproxy(env: Env): Promise<ImgproxyChoice> {
  const found = await findImgproxy(env);
  const expected = env("E2E_EXPECT_IMGPROXY");
  if (expected && (!found.real || found.version !== expected)) {
    throw new Error(
      `E2E_EXPECT_IMGPROXY=${expected}: expected real imgproxy ${expected}, found ${found.label}` +
        ` (${found.bin}); build it with IMGPROXY_SRC=... sh scripts/install-deps.sh`,
    );
  }
  return found;
}

async function findImgproxy(env: Env): Promise<ImgproxyChoice> {
  const named = env("IMGPROXY_BIN");
  const home = env("HOME");
  const gobin = env("GOBIN");
  // A binary named explicitly is the one meant: nothing else stands in for it.
  const candidates = named
    ? [named]
    : ["imgproxy", gobin && `${gobin}/imgproxy`, home && `${home}/go/bin/imgproxy`];
  for (const c of candidates) {
    if (!c) continue;
    const bin = await findOnPath(c, env("PATH") ?? "");
    if (bin === null) continue;
    const version = await imgproxyVersion(bin);
    if (version === "stand-in") break; // IMGPROXY_BIN names the stand-in: use it
    return { real: true, bin, version, label: `real imgproxy ${version}` };
  }
  return standIn();
}

/** What `bin version` prints (imgproxy prints its version, the stand-in "stand-in"). */
export async function imgproxyVersion(bin: string): Promise<string> {
  const out = await new Deno.Command(bin, { args: ["version"], stdout: "piped", stderr: "null" })
    .output();
  return new TextDecoder().decode(out.stdout).trim();
}

/** The stand-in, for tests that need what real imgproxy cannot be made to do. */
export function standIn(): ImgproxyChoice {
  return {
    real: false,
    bin: STAND_IN,
    version: "stand-in",
    label: "STAND-IN imgproxy, not real imgproxy",
  };
}

/** Prints which imgproxy runs, once per test module. */
export async function banner(module: string): Promise<ImgproxyChoice> {
  const c = await chooseImgproxy();
  console.log(
    `\n=== ${module}: using ${c.label}${c.real ? ` at ${c.bin}` : ` (${c.bin})`} ===\n`,
  );
  return c;
}

/**
 * Starts imgproxy (or the stand-in) at `bin` on a port of its own, allowed to fetch sources from
 * loopback (the tests' source servers); not waited for: poll its /health.
 */
export async function startImgproxy(
  bin: string,
  env: Record<string, string> = {},
): Promise<{ proc: Proc; url: string }> {
  const bind = `127.0.0.1:${freePort()}`;
  const proc = new Proc(bin === STAND_IN ? "stand-in" : "imgproxy", bin, [], {
    env: {
      ...await baseEnv(),
      IMGPROXY_BIND: bind,
      IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES: "true",
      ...env,
    },
  });
  return { proc, url: `http://${bind}` };
}

/** Waits until imgproxy (or the stand-in) at `url` answers /health with 200. */
export function waitForHealth(url: string, proc: Proc, timeoutMs = 20_000): Promise<true> {
  return waitFor(`${proc.name} at ${url} to be healthy`, async () => {
    const r = await fetch(`${url}/health`);
    await r.body?.cancel();
    return r.status === 200 || undefined;
  }, timeoutMs);
}
