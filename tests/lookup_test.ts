import assert from "node:assert/strict";
import { createApp } from "../lib/app.ts";
import { loadConfig } from "../lib/config.ts";
import { objectKey } from "../lib/key.ts";
import { MemoryLogger } from "../lib/log.ts";
import { LocalStore } from "../lib/store/local.ts";
import type {
  OpenedObject,
  PutOptions,
  PutResult,
  Store,
  StoredObject,
} from "../lib/store/store.ts";

/** An upstream that answers images (with `Vary: Accept` when asked) and counts requests. */
function upstream(varyAccept = false) {
  const state = { requests: 0 };
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    if (new URL(req.url).pathname === "/health") return new Response("imgproxy is running");
    state.requests++;
    const webp = varyAccept && (req.headers.get("accept") ?? "").includes("image/webp");
    const headers: Record<string, string> = {
      "content-type": webp ? "image/webp" : "image/png",
      "cache-control": "max-age=3600, public",
    };
    if (varyAccept) headers.vary = "Accept";
    return new Response(webp ? "webp-bytes" : "png-bytes", { headers });
  });
  return { server, state, url: `http://127.0.0.1:${server.addr.port}` };
}

/** A store whose lookups never answer (until aborted), to prove the lookup timeout. */
class StalledStore extends LocalStore {
  override has(_key: string, signal?: AbortSignal): Promise<boolean> {
    return new Promise((_, reject) =>
      signal?.addEventListener("abort", () => reject(signal.reason))
    );
  }
  override open(_key: string, signal?: AbortSignal): Promise<OpenedObject | null> {
    return new Promise((_, reject) =>
      signal?.addEventListener("abort", () => reject(signal.reason))
    );
  }
  override get(_key: string, signal?: AbortSignal): Promise<StoredObject | null> {
    return new Promise((_, reject) =>
      signal?.addEventListener("abort", () => reject(signal.reason))
    );
  }
  override put(key: string, body: Uint8Array, o: PutOptions): Promise<PutResult> {
    return super.put(key, body, o);
  }
}

async function withProxy(
  env: Record<string, string>,
  fn: (url: string, logger: MemoryLogger) => Promise<void>,
  store?: Store,
) {
  const dir = await Deno.makeTempDir();
  const logger = new MemoryLogger();
  const config = loadConfig((n) => ({ CACHE_DIR: dir, ...env })[n]);
  const app = await createApp(config, logger, store ? { store } : {});
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.handler);
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, logger);
  } finally {
    await server.shutdown();
    await app.uploader.drain(1000);
    await Deno.remove(dir, { recursive: true });
  }
}

const PATH = "/insecure/rs:fill:10:10/plain/http://example.com/a.png";

/** Asks until the answer is the 302 of a hit (the upload lands in the background), or gives up. */
async function redirectOnceStored(url: string, headers: HeadersInit = {}): Promise<Response> {
  for (let i = 0; i < 100; i++) {
    const res = await fetch(url, { headers, redirect: "manual" });
    await res.body?.cancel();
    if (res.status === 302) return res;
    await new Promise((r) => setTimeout(r, 20));
  }
  return assert.fail("no redirect after the image was stored");
}

Deno.test("CACHE_MODE=read answers a stored image from the store without asking imgproxy", async () => {
  const up = upstream();
  try {
    await withProxy({ IMGPROXY_URL: up.url, CACHE_MODE: "read" }, async (url) => {
      const miss = await fetch(url + PATH);
      assert.equal(miss.headers.get("x-cache"), "MISS");
      assert.equal(await miss.text(), "png-bytes");
      // Ask again until the background write has landed; a hit must not reach imgproxy.
      for (let i = 0; i < 100; i++) {
        const before = up.state.requests;
        const res = await fetch(url + PATH);
        const body = await res.text();
        if (res.headers.get("x-cache") === "HIT") {
          assert.equal(body, "png-bytes");
          assert.equal(res.headers.get("content-type"), "image/png");
          assert.equal(res.headers.get("cache-control"), "max-age=3600, public");
          assert.equal(up.state.requests, before);
          return;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.fail(`no HIT after the image was stored (upstream requests: ${up.state.requests})`);
    });
  } finally {
    await up.server.shutdown();
  }
});

Deno.test("CACHE_MODE=redirect answers a stored image with a 302 to PUBLIC_BASE_URL + key", async () => {
  const up = upstream();
  try {
    const env = {
      IMGPROXY_URL: up.url,
      CACHE_MODE: "redirect",
      PUBLIC_BASE_URL: "https://cdn.example.com/images/",
      S3_FOLDER: "processed",
    };
    await withProxy(env, async (url) => {
      await (await fetch(url + PATH)).bytes();
      const res = await redirectOnceStored(url + PATH);
      assert.equal(
        res.headers.get("location"),
        `https://cdn.example.com/images/${objectKey(PATH, "processed")}`,
      );
      assert.equal(res.headers.get("x-cache"), "HIT");
      // Short and shareable by default, so a CDN or browser need not ask on every view.
      assert.equal(res.headers.get("cache-control"), "public, max-age=60");
      assert.equal(res.headers.get("vary"), null, "the key does not depend on Accept");
    });
    await withProxy(
      { ...env, REDIRECT_CACHE_CONTROL: "public, max-age=600, stale-while-revalidate=60" },
      async (url) => {
        await (await fetch(url + PATH)).bytes();
        const res = await redirectOnceStored(url + PATH);
        assert.equal(
          res.headers.get("cache-control"),
          "public, max-age=600, stale-while-revalidate=60",
        );
      },
    );
  } finally {
    await up.server.shutdown();
  }
});

Deno.test("CACHE_MODE=redirect without PUBLIC_BASE_URL is a configuration error", () => {
  assert.throws(
    () => loadConfig((n) => ({ CACHE_MODE: "redirect" } as Record<string, string>)[n]),
    /PUBLIC_BASE_URL/,
  );
});

Deno.test("a store lookup that does not answer in time falls through to imgproxy", async () => {
  const up = upstream();
  const dir = await Deno.makeTempDir();
  try {
    const env = { IMGPROXY_URL: up.url, CACHE_MODE: "read", STORE_LOOKUP_TIMEOUT_MS: "50" };
    await withProxy(env, async (url, logger) => {
      const started = performance.now();
      const res = await fetch(url + PATH);
      assert.equal(await res.text(), "png-bytes");
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-cache-lookup"), "error");
      assert.ok(performance.now() - started < 5000);
      assert.equal(up.state.requests, 1);
      assert.equal(logger.find("Store lookup failed").length, 1);
    }, new StalledStore(dir));
  } finally {
    await up.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("read mode serves each Accept variant from its own key once imgproxy negotiates", async () => {
  const up = upstream(true);
  try {
    const env = { IMGPROXY_URL: up.url, CACHE_MODE: "read", CACHE_VARIANTS: "accept" };
    await withProxy(env, async (url) => {
      const webp = { accept: "image/webp,*/*" };
      assert.equal(await (await fetch(url + PATH, { headers: webp })).text(), "webp-bytes");
      assert.equal(await (await fetch(url + PATH)).text(), "png-bytes");
      const before = up.state.requests;
      let hits = 0;
      for (let i = 0; i < 100 && hits < 2; i++) {
        hits = 0;
        const a = await fetch(url + PATH, { headers: webp });
        const b = await fetch(url + PATH);
        const [ta, tb] = [await a.text(), await b.text()];
        assert.equal(ta, "webp-bytes");
        assert.equal(tb, "png-bytes");
        if (a.headers.get("x-cache") === "HIT") hits++;
        if (b.headers.get("x-cache") === "HIT") hits++;
        if (hits < 2) await new Promise((r) => setTimeout(r, 20));
        // Every answer depends on Accept now, the plain variant's hit included (a CDN in front
        // must not give the PNG to a browser that takes WebP).
        assert.equal(a.headers.get("vary"), "Accept", `webp ${a.headers.get("x-cache")}`);
        assert.equal(b.headers.get("vary"), "Accept", `plain ${b.headers.get("x-cache")}`);
      }
      assert.equal(hits, 2);
      assert.ok(up.state.requests >= before);
    });
  } finally {
    await up.server.shutdown();
  }
});

Deno.test("read mode learns which formats imgproxy produces: a client that also takes AVIF hits the stored WebP", async () => {
  // This upstream negotiates WebP only (like IMGPROXY_AUTO_WEBP alone), and the proxy is not
  // told so: it learns it from the first answer.
  const up = upstream(true);
  try {
    const env = { IMGPROXY_URL: up.url, CACHE_MODE: "read" };
    await withProxy(env, async (url) => {
      const older = { accept: "image/webp,*/*" };
      const chrome = { accept: "image/avif,image/webp,image/*,*/*;q=0.8" };
      const first = await fetch(url + PATH, { headers: older });
      assert.equal(await first.text(), "webp-bytes");
      assert.equal(first.headers.get("x-cache"), "MISS");
      for (let i = 0; i < 100; i++) {
        const before = up.state.requests;
        const res = await fetch(url + PATH, { headers: chrome });
        assert.equal(await res.text(), "webp-bytes");
        if (res.headers.get("x-cache") === "HIT") {
          assert.equal(up.state.requests, before);
          assert.equal(res.headers.get("content-type"), "image/webp");
          return;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.fail("the WebP stored for one Accept was never a hit for another");
    });
  } finally {
    await up.server.shutdown();
  }
});

Deno.test("redirect mode: once imgproxy negotiates, the plain variant's 302 carries Vary: Accept too", async () => {
  const up = upstream(true);
  try {
    const env = {
      IMGPROXY_URL: up.url,
      CACHE_MODE: "redirect",
      CACHE_VARIANTS: "accept",
      PUBLIC_BASE_URL: "https://cdn.example",
    };
    await withProxy(env, async (url) => {
      const plain = { accept: "image/png" };
      assert.equal(await (await fetch(url + PATH, { headers: plain })).text(), "png-bytes");
      const res = await redirectOnceStored(url + PATH, plain);
      assert.equal(res.headers.get("location"), `https://cdn.example/${objectKey(PATH)}`);
      assert.equal(res.headers.get("vary"), "Accept");
      assert.equal(res.headers.get("cache-control"), "public, max-age=60");
    });
  } finally {
    await up.server.shutdown();
  }
});

Deno.test("read mode streams a hit from the local store without reading it whole first", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new LocalStore(dir);
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i & 0xff);
    await store.put(objectKey(PATH), big, {
      contentType: "image/png",
      cacheControl: null,
      ifAbsent: true,
    });
    const opened = await store.open(objectKey(PATH));
    assert.ok(opened !== null);
    assert.equal(opened.contentLength, big.byteLength);
    assert.ok(opened.body instanceof ReadableStream);
    await opened.body.cancel();
    const up = upstream();
    try {
      await withProxy({ IMGPROXY_URL: up.url, CACHE_MODE: "read" }, async (url) => {
        const res = await fetch(url + PATH);
        assert.equal(res.headers.get("x-cache"), "HIT");
        assert.equal(res.headers.get("content-length"), String(big.byteLength));
        assert.deepEqual(await res.bytes(), big);
        assert.equal(up.state.requests, 0);
      }, store);
    } finally {
      await up.server.shutdown();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with IMGPROXY_SECRET a read-mode hit needs imgproxy's Authorization too", async () => {
  const up = upstream();
  const dir = await Deno.makeTempDir();
  try {
    const store = new LocalStore(dir);
    await store.put(objectKey(PATH), new TextEncoder().encode("stored"), {
      contentType: "image/png",
      cacheControl: null,
      ifAbsent: true,
    });
    const env = { IMGPROXY_URL: up.url, CACHE_MODE: "read", IMGPROXY_SECRET: "s3cret" };
    await withProxy(env, async (url) => {
      const anonymous = await fetch(url + PATH);
      assert.equal(await anonymous.text(), "png-bytes"); // went to imgproxy, which decides
      assert.equal(up.state.requests, 1);
      // A wrong secret, of the same length or a longer one with the right prefix, is no hit.
      for (const wrong of ["Bearer s3creX", "Bearer s3cret2", "bearer s3cret", "s3cret"]) {
        const res = await fetch(url + PATH, { headers: { authorization: wrong } });
        assert.equal(await res.text(), "png-bytes", wrong);
      }
      assert.equal(up.state.requests, 5);
      const authorised = await fetch(url + PATH, { headers: { authorization: "Bearer s3cret" } });
      assert.equal(authorised.headers.get("x-cache"), "HIT");
      assert.equal(await authorised.text(), "stored");
      assert.equal(up.state.requests, 5);
    }, store);
  } finally {
    await up.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A store whose open() ignores the abort signal and answers late (a stalled disk). */
class DeafStore extends LocalStore {
  cancelled = false;
  override open(_key: string): Promise<OpenedObject | null> {
    return new Promise((resolve) =>
      setTimeout(() =>
        resolve({
          body: new ReadableStream<Uint8Array>({
            cancel: () => {
              this.cancelled = true;
            },
          }),
          contentLength: null,
          contentType: "image/png",
          cacheControl: null,
        }), 300)
    );
  }
}

Deno.test("a store that ignores the lookup timeout cannot hold the request, and its late hit is let go", async () => {
  const up = upstream();
  const dir = await Deno.makeTempDir();
  const store = new DeafStore(dir);
  try {
    const env = { IMGPROXY_URL: up.url, CACHE_MODE: "read", STORE_LOOKUP_TIMEOUT_MS: "50" };
    await withProxy(env, async (url) => {
      const started = performance.now();
      const res = await fetch(url + PATH);
      assert.equal(await res.text(), "png-bytes");
      assert.ok(performance.now() - started < 280, `took ${performance.now() - started} ms`);
      assert.equal(res.headers.get("x-cache-lookup"), "error");
      await new Promise((r) => setTimeout(r, 350));
      assert.equal(store.cancelled, true);
    }, store);
  } finally {
    await up.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
