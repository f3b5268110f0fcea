/**
 * PutObject to an https endpoint on the store's own TLS connections, against versitygw serving
 * TLS with a certificate from a private CA: trusted the way an operator trusts one (`DENO_CERT`),
 * the object is stored and reads back over `fetch`; untrusted, the PUT fails as `fetch`'s GET
 * does (a retryable error) and nothing is stored.
 */
import assert from "node:assert/strict";
import { Versitygw } from "./support/harness.ts";

async function run(cmd: string, args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A private CA and a certificate it signed for 127.0.0.1 and localhost, as PEM files. */
async function privateCa(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=imgproxy-cache test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ], dir);
  await run("openssl", [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "srv.key",
    "-out",
    "srv.csr",
    "-subj",
    "/CN=localhost",
  ], dir);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" +
      "extendedKeyUsage=serverAuth\n",
  );
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    "srv.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "srv.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ], dir);
  return { ca: `${dir}/ca.pem`, cert: `${dir}/srv.pem`, key: `${dir}/srv.key` };
}

async function putAndGet(endpoint: string, env: Record<string, string>) {
  const out = await new Deno.Command("deno", {
    args: [
      "run",
      "--lock=tests/deno.lock",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      "--allow-sys",
      new URL("./support/tls_put.ts", import.meta.url).pathname,
      endpoint,
    ],
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(text);
}

Deno.test("versitygw over TLS: PutObject on the store's own connections trusts what fetch trusts (DENO_CERT)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "e2e-tls-" });
  const pem = await privateCa(dir);
  const gw = await Versitygw.start({ tls: { cert: pem.cert, key: pem.key } });
  try {
    assert.match(gw.endpoint, /^https:/);
    await gw.makeBucketDir("tls-bkt");
    // Untrusted: both fail as network trouble (retryable), the PUT naming the certificate, and
    // nothing is stored.
    const untrusted = await putAndGet(gw.endpoint, {});
    assert.deepEqual(untrusted.put, { retryable: true, certificate: true });
    assert.equal(untrusted.get.retryable, true, JSON.stringify(untrusted));
    assert.deepEqual(await gw.puts("tls-bkt", "k"), []);
    // The CA trusted as an operator would: stored, and read back.
    const trusted = await putAndGet(gw.endpoint, { DENO_CERT: pem.ca });
    assert.deepEqual(trusted, { put: "stored", get: "an image over TLS" });
    assert.deepEqual((await gw.puts("tls-bkt", "k")).map((p) => p.status), [200]);
    assert.equal(
      await Deno.readTextFile(`${gw.dir}/root/tls-bkt/k`),
      "an image over TLS",
    );
  } finally {
    await gw.close();
    await Deno.remove(dir, { recursive: true });
  }
});
