/**
 * The Dockerfile cannot be built here (no Docker engine), so this test holds it to the sources
 * of truth it must agree with: it runs entrypoint.sh, which runs bin/start (the command
 * `deno task start` runs); the Deno version is the one scripts/install-deps.sh installs; EXPOSE
 * is the default IMGPROXY_BIND port; every local module the program loads is copied; the
 * dependencies are cached at build time and the entry point runs with --cached-only; a
 * non-root user; a HEALTHCHECK; imgproxy v3.30 by default.
 */
import assert from "node:assert/strict";
import { VARIABLES } from "../lib/config.ts";

const root = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, root));

/** Instructions of a Dockerfile: continuation lines joined, comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  const out: { op: string; args: string }[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (current === "" && (line.trim() === "" || line.trim().startsWith("#"))) continue;
    if (line.endsWith("\\")) {
      current += line.slice(0, -1) + " ";
      continue;
    }
    current += line;
    const m = /^\s*(\w+)\s+(.*)$/s.exec(current);
    if (m) out.push({ op: m[1]!.toUpperCase(), args: m[2]!.replace(/\s+/g, " ").trim() });
    current = "";
  }
  return out;
}

const dockerfile = instructions(await read("Dockerfile"));
const all = (op: string) => dockerfile.filter((i) => i.op === op).map((i) => i.args);
const one = (op: string) => {
  const found = all(op);
  assert.equal(found.length, 1, `expected exactly one ${op}, found ${found.length}`);
  return found[0]!;
};
const args = new Map(
  all("ARG").map((a) => {
    const [name, value] = a.split("=");
    return [name!, value ?? ""] as const;
  }),
);
const workdir = one("WORKDIR");
const entrypoint = JSON.parse(one("ENTRYPOINT")) as string[];

/** Where COPY puts each source (relative to the build context), resolved against WORKDIR. */
function copies(): Map<string, string> {
  const out = new Map<string, string>();
  for (const a of all("COPY")) {
    if (a.startsWith("--from=")) continue;
    const parts = a.split(" ");
    const dest = parts.pop()!;
    const base = dest.startsWith("/") ? dest : `${workdir}/${dest.replace(/^\.\//, "")}`;
    for (const src of parts) {
      const name = src.replace(/^\.\//, "").replace(/\/$/, "");
      out.set(name, dest.endsWith("/") ? `${base.replace(/\/$/, "")}/${name}` : base);
    }
  }
  return out;
}

Deno.test("Dockerfile: ENTRYPOINT runs the copied entrypoint.sh, which runs bin/start like `deno task start`", async () => {
  const copied = copies();
  assert.equal(entrypoint[0], copied.get("entrypoint.sh"), "ENTRYPOINT is not the copied script");
  assert.ok(copied.has("bin"), "bin/ is not copied");
  const script = await read("entrypoint.sh");
  assert.match(script, /^#!\/bin\/sh\n/);
  assert.match(script, /sh "\$root\/bin\/start" "\$@" &/, "entrypoint.sh must start bin/start");
  const config = JSON.parse(await read("deno.json"));
  assert.equal(config.tasks.start, "sh ./bin/start", "deno task start must run bin/start too");
  const start = await read("bin/start");
  assert.match(start, /lib\/permissions\.ts/, "bin/start takes its flags from lib/permissions.ts");
  assert.match(
    start,
    /"\$@" \$flags "\$root\/main\.ts"/,
    "bin/start passes extra args to deno run",
  );
});

Deno.test("Dockerfile: the Deno version is the one scripts/install-deps.sh installs", async () => {
  const pinned = /^DENO_VERSION=(\S+)$/m.exec(await read("scripts/install-deps.sh"))?.[1];
  assert.ok(pinned, "scripts/install-deps.sh pins no DENO_VERSION");
  assert.equal(args.get("DENO_VERSION"), pinned);
  assert.ok(
    dockerfile.some((i) =>
      i.op === "FROM" && i.args === "denoland/deno:bin-${DENO_VERSION} AS deno"
    ),
    "Deno must come from the official image at DENO_VERSION",
  );
  assert.ok(all("COPY").includes("--from=deno /deno /usr/local/bin/deno"));
});

Deno.test("Dockerfile: based on imgproxy's image, v3.30 by default", () => {
  assert.match(
    args.get("IMGPROXY_IMAGE") ?? "",
    /^(ghcr\.io\/imgproxy\/imgproxy|darthsim\/imgproxy)$/,
  );
  assert.match(args.get("IMGPROXY_VERSION") ?? "", /^v3\.30(\.\d+)?$/);
  const froms = all("FROM");
  assert.equal(froms.at(-1), "${IMGPROXY_IMAGE}:${IMGPROXY_VERSION}", "the final stage");
});

Deno.test("Dockerfile: EXPOSE is the default IMGPROXY_BIND port; imgproxy's internal address matches IMGPROXY_URL", async () => {
  const port = VARIABLES.IMGPROXY_BIND.split(":").pop();
  assert.equal(one("EXPOSE"), port);
  const internal = new URL(VARIABLES.IMGPROXY_URL).host;
  assert.match(await read("entrypoint.sh"), new RegExp(`INTERNAL_IMGPROXY_BIND:-${internal}}`));
});

Deno.test("Dockerfile: every local module the program loads is copied", async () => {
  const copied = [...copies().keys()];
  const out = await new Deno.Command("deno", {
    args: ["info", "--json", "main.ts"],
    cwd: root,
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.equal(out.code, 0, "deno info main.ts failed");
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string }[];
  };
  const local = graph.modules.map((m) => m.specifier)
    .filter((s) => s.startsWith(root.href))
    .map((s) => s.slice(root.href.length))
    .concat(["lib/permissions.ts", "lib/store/s3.ts", "deno.json", "deno.lock"]);
  for (const file of local) {
    assert.ok(
      copied.some((c) => file === c || file.startsWith(`${c}/`)),
      `${file} is loaded by the program but not copied into the image`,
    );
  }
});

Deno.test("Dockerfile: dependencies are cached at build time and not fetched at run time", () => {
  const run = all("RUN").join(" && ");
  assert.match(run, /deno install --frozen/);
  assert.match(run, /deno cache --frozen [^&]*main\.ts/);
  assert.match(
    run,
    /deno cache --frozen [^&]*lib\/store\/s3\.ts/,
    "the S3 store is a dynamic import",
  );
  assert.ok(
    entrypoint.includes("--cached-only"),
    "the proxy must not reach a registry at run time",
  );
  assert.ok(all("ENV").some((e) => /DENO_DIR=\S+/.test(e)), "DENO_DIR must be fixed");
});

Deno.test("Dockerfile: non-root user, HEALTHCHECK by bin/healthcheck", () => {
  const users = all("USER");
  const last = users.at(-1)!.split(":")[0]!;
  assert.ok(!["root", "0"].includes(last), `the final USER is ${last}`);
  const health = one("HEALTHCHECK");
  assert.match(health, /CMD \["\/opt\/imgproxy-cache\/bin\/healthcheck"\]$/);
  const cached = all("RUN").find((r) => r.includes("deno cache"))!;
  assert.match(cached, /lib\/healthcheck\.ts/, "the health check's script must be cached");
  assert.match(all("RUN").join(" "), /chmod 0755 [^&]*bin\/healthcheck/);
});

Deno.test("entrypoint.sh: its grace period outlasts the proxy's upload drain", async () => {
  const script = await read("entrypoint.sh");
  const drain = VARIABLES.UPLOAD_DRAIN_TIMEOUT_IN_SEC;
  assert.match(script, new RegExp(`drain=\\$\\{UPLOAD_DRAIN_TIMEOUT_IN_SEC:-${drain}\\}`));
  const extra = /STOP_GRACE_PERIOD_IN_SEC:-\$\(\(drain \+ (\d+)\)\)/.exec(script)?.[1];
  assert.ok(extra && Number(extra) > 0, "the default grace must be the drain time plus a margin");
});
