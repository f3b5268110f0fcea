/**
 * The "Cleanup" page (docs/cleanup.md), tested as far as a local server allows, against moto's S3
 * server (versitygw v1.7.0 and s3rver answer the lifecycle API with 501 NotImplemented):
 *
 * - the lifecycle JSON, parsed out of docs/cleanup.md so the doc and the test cannot drift, is accepted
 *   by PutBucketLifecycleConfiguration and read back unchanged (moto stores rules, it does not
 *   expire objects, so the expiry itself is the provider's part);
 * - the "move to a new prefix" procedure: the proxy (in-process, lib/ as is) stores under
 *   `processed/`, then with `S3_FOLDER=processed-v2` stores the same path under
 *   `processed-v2/<same md5>`, leaves the old object alone, and in `CACHE_MODE=read` never serves
 *   it.
 */
import assert from "node:assert/strict";
import {
  type BucketLifecycleConfiguration,
  CreateBucketCommand,
  GetBucketLifecycleConfigurationCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutBucketLifecycleConfigurationCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { createApp } from "../lib/app.ts";
import { loadConfig, type S3StoreConfig } from "../lib/config.ts";
import { MemoryLogger } from "../lib/log.ts";
import { S3Store } from "../lib/store/s3.ts";
import {
  baseEnv,
  equalBytes,
  freePort,
  get,
  keyOf,
  Proc,
  ROOT,
  s3Client,
  SECRET_KEY,
  waitFor,
} from "./support/harness.ts";

const BUCKET = "my-images";

/** The fenced ```json block of docs/cleanup.md (the first one: the lifecycle rule). */
async function readmeLifecycle(): Promise<BucketLifecycleConfiguration> {
  const doc = await Deno.readTextFile(`${ROOT}/docs/cleanup.md`);
  assert.ok(/^# Cleanup\b/m.test(doc), 'docs/cleanup.md has no "# Cleanup" title');
  const m = /^```json\n([\s\S]*?)^```$/m.exec(doc);
  assert.ok(m, "docs/cleanup.md has no ```json block");
  return JSON.parse(m[1]!) as BucketLifecycleConfiguration;
}

/** What a rule says, in a form that compares across the SDK's optional fields. */
const ruleSummary = (r: NonNullable<BucketLifecycleConfiguration["Rules"]>[number]) => ({
  id: r.ID,
  status: r.Status,
  prefix: r.Filter?.Prefix,
  days: r.Expiration?.Days,
});

/**
 * The moto_server to run: $MOTO_SERVER, else the virtualenv scripts/install-deps.sh makes, else
 * whatever PATH has.
 */
function motoServer(): string {
  const explicit = Deno.env.get("MOTO_SERVER");
  if (explicit) return explicit;
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache`;
  const venv = `${cache}/imgproxy-cache/moto-venv/bin/moto_server`;
  try {
    Deno.statSync(venv);
    return venv;
  } catch {
    return "moto_server";
  }
}

/** A running moto server (S3 in memory, any credentials). */
class Moto {
  readonly endpoint: string;
  readonly client: S3Client;
  private constructor(readonly proc: Proc, port: number) {
    this.endpoint = `http://127.0.0.1:${port}`;
    this.client = s3Client(this.endpoint, SECRET_KEY);
  }

  static async start(): Promise<Moto> {
    const port = freePort();
    const env = await baseEnv();
    const home = Deno.env.get("HOME");
    if (home) env.HOME = home; // pyenv's shims and Python's user site look there
    let proc: Proc;
    try {
      proc = new Proc("moto", motoServer(), ["-H", "127.0.0.1", "-p", String(port)], { env });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      throw new Error(
        'moto_server not found on PATH: run scripts/install-deps.sh ("moto[server]")',
      );
    }
    const moto = new Moto(proc, port);
    try {
      await waitFor("moto to accept connections", async () => {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        c.close();
        return true;
      }, 20_000);
      await moto.client.send(new CreateBucketCommand({ Bucket: BUCKET }));
    } catch (err) {
      await moto.close();
      throw err;
    }
    return moto;
  }

  async keys(prefix?: string): Promise<string[]> {
    const out = await this.client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }),
    );
    return (out.Contents ?? []).map((o) => o.Key!).sort();
  }

  /** An object's bytes, or null when there is none. */
  async get(key: string): Promise<Uint8Array | null> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      return await out.Body!.transformToByteArray();
    } catch (err) {
      if ((err as { name?: string }).name === "NoSuchKey") return null;
      throw err;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
    await this.proc.stop();
  }
}

async function withMoto(fn: (moto: Moto) => Promise<void>): Promise<void> {
  const moto = await Moto.start();
  try {
    await fn(moto);
  } finally {
    await moto.close();
  }
}

Deno.test("moto: the documented lifecycle JSON is accepted and read back unchanged", async () => {
  const lifecycle = await readmeLifecycle();
  assert.ok(lifecycle.Rules && lifecycle.Rules.length > 0, "the documented JSON has no rules");
  await withMoto(async (moto) => {
    await moto.client.send(
      new PutBucketLifecycleConfigurationCommand({
        Bucket: BUCKET,
        LifecycleConfiguration: lifecycle,
      }),
    );
    const out = await moto.client.send(
      new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET }),
    );
    assert.deepEqual((out.Rules ?? []).map(ruleSummary), lifecycle.Rules!.map(ruleSummary));
    assert.deepEqual(lifecycle.Rules!.map(ruleSummary), [
      { id: "expire-processed-images", status: "Enabled", prefix: "processed/", days: 30 },
    ]);
  });
});

Deno.test("moto: a new S3_FOLDER stores under the new prefix, keeps the old objects, never serves them [stand-in upstream: a different body per answer, which real imgproxy never sends]", async () => {
  const rulePrefix = (await readmeLifecycle()).Rules?.[0]?.Filter?.Prefix;
  await withMoto(async (moto) => {
    // An imgproxy stand-in whose every answer differs, so old and new objects can be told apart.
    let answers = 0;
    const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
      answers++;
      return new Response(new TextEncoder().encode(`png bytes, answer #${answers}`), {
        headers: { "content-type": "image/png", "cache-control": "max-age=3600, public" },
      });
    });
    const started: {
      app: Awaited<ReturnType<typeof createApp>>;
      store: S3Store;
      server: Deno.HttpServer<Deno.NetAddr>;
    }[] = [];
    /** Starts a proxy instance with these settings; returns its base URL. */
    const proxy = async (vars: Record<string, string>) => {
      const env: Record<string, string> = {
        S3_BUCKET: BUCKET,
        S3_ENDPOINT: moto.endpoint,
        S3_REGION: "us-east-1",
        IMGPROXY_URL: `http://127.0.0.1:${upstream.addr.port}`,
        ...vars,
      };
      const config = loadConfig((n) => env[n]);
      const store = new S3Store(config.store as S3StoreConfig, s3Client(moto.endpoint, SECRET_KEY));
      const app = await createApp(config, new MemoryLogger(), { store });
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        app.handler,
      );
      started.push({ app, store, server });
      return `http://127.0.0.1:${server.addr.port}`;
    };
    try {
      const path = "/insecure/rs:fill:300:300/plain/https://example.com/image.jpg";
      const oldKey = `processed/${keyOf(path)}`;
      const newKey = `processed-v2/${keyOf(path)}`;

      // Before the change: S3_FOLDER=processed stores answer #1 under processed/.
      const before = await proxy({ S3_FOLDER: "processed" });
      const first = await get(before + path);
      assert.equal(first.status, 200);
      await waitFor(
        `${oldKey} to be stored`,
        async () => (await moto.keys()).length > 0 || undefined,
      );
      const oldBytes = await moto.get(oldKey);
      assert.ok(oldBytes && equalBytes(oldBytes, first.body), "processed/ does not hold answer #1");

      // After the change, reading first: the old prefix's object is not served (a miss goes to
      // imgproxy), and the new answer is stored under processed-v2/ with the same md5.
      const after = await proxy({ S3_FOLDER: "processed-v2", CACHE_MODE: "read" });
      const miss = await get(after + path);
      assert.equal(miss.status, 200);
      assert.equal(miss.headers.get("x-cache-lookup"), "miss");
      assert.equal(answers, 2);
      assert.ok(!equalBytes(miss.body, oldBytes), "the new instance served the old object");
      await waitFor(
        `${newKey} to be stored`,
        async () => (await moto.keys()).includes(newKey) || undefined,
      );
      assert.deepEqual(await moto.keys(), [newKey, oldKey].sort());

      // A hit now comes from processed-v2/, never from processed/.
      const hit = await get(after + path);
      assert.equal(hit.status, 200);
      assert.equal(hit.headers.get("x-cache"), "HIT");
      assert.ok(equalBytes(hit.body, miss.body), "the hit is not the processed-v2/ object");
      assert.ok(!equalBytes(hit.body, oldBytes), "the hit is the old processed/ object");
      assert.equal(answers, 2, "a hit asked imgproxy");

      // The old object is untouched; the documented rule (and `aws s3 rm --recursive
      // s3://my-images/processed/`, which lists the same prefix) covers it and not the new one.
      const oldAgain = await moto.get(oldKey);
      assert.ok(oldAgain && equalBytes(oldAgain, oldBytes), "processed/ was changed");
      assert.equal(rulePrefix, "processed/");
      assert.deepEqual(await moto.keys(rulePrefix), [oldKey]);
    } finally {
      for (const { app, store, server } of started) {
        await server.shutdown();
        await app.uploader.drain(1000);
        store.client.destroy();
      }
      await upstream.shutdown();
    }
  });
});
