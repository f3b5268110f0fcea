/**
 * The stand-in imgproxy held to the real one: the same requests go to real imgproxy and to the
 * stand-in (e2e/support/stand_in_imgproxy.ts), started with the same settings, and what the
 * proxy depends on must agree: status, Content-Type, Cache-Control, Vary, Content-Length (set,
 * and the body's length), the bodies of HEAD/OPTIONS/health/error answers, the headers of
 * fallback images, and conditional requests (ETag, Last-Modified, the source's 304). Image bytes differ by design (the stand-in processes nothing), so image
 * requests ask for the source's own format.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  banner,
  FIXTURES,
  get,
  type Proc,
  SourceServer,
  STAND_IN,
  startImgproxy,
  waitForHealth,
} from "./support/harness.ts";
import { sign } from "./support/stand_in_imgproxy.ts";

const IMG = await banner("differential_test.ts");

/** What the proxy depends on in one answer. */
interface Shape {
  status: number;
  contentType: string | null;
  cacheControl: string | null;
  vary: string | null;
  /** "body length" when Content-Length is set and matches the body, else what it is. */
  contentLength: string | null;
  /** The body, for answers that are not images. */
  text: string | null;
  etag: string | null;
  lastModified: string | null;
}

async function shapeOf(url: string, init: RequestInit = {}): Promise<Shape> {
  const res = await get(url, init);
  const type = res.headers.get("content-type");
  const length = res.headers.get("content-length");
  return {
    status: res.status,
    contentType: type,
    cacheControl: res.headers.get("cache-control"),
    vary: res.headers.get("vary"),
    contentLength: length === String(res.body.byteLength) ? "body length" : length,
    text: type?.startsWith("image/") ? null : new TextDecoder().decode(res.body),
    etag: res.headers.get("etag"),
    lastModified: res.headers.get("last-modified"),
  };
}

/** One request; `path` is given the signature by `Pair.url`. */
interface Case {
  name: string;
  path: string;
  init?: RequestInit;
  /** Cache-Control max-ages computed from the clock may differ by this many seconds. */
  clockSlack?: boolean;
}

/** Real imgproxy and the stand-in, started with the same environment. */
class Pair {
  private constructor(
    readonly real: { proc: Proc; url: string },
    readonly standIn: { proc: Proc; url: string },
    readonly signPath: (path: string) => string,
  ) {}

  static async start(env: Record<string, string>): Promise<Pair> {
    const real = await startImgproxy(IMG.bin, env);
    const standIn = await startImgproxy(STAND_IN, env);
    const pair = new Pair(real, standIn, (path) => {
      if (!env.IMGPROXY_KEY) return `/insecure${path}`;
      const key = Buffer.from(env.IMGPROXY_KEY, "hex");
      return `/${sign(key, Buffer.from(env.IMGPROXY_SALT ?? "", "hex"), path)}${path}`;
    });
    try {
      await waitForHealth(real.url, real.proc);
      await waitForHealth(standIn.url, standIn.proc);
    } catch (err) {
      await pair.close();
      throw err;
    }
    return pair;
  }

  /** Sends `c` to both and asserts the shapes agree. */
  async compare(c: Case): Promise<Shape> {
    const path = c.path.startsWith("!") ? c.path.slice(1) : this.signPath(c.path);
    // One after the other: this build of imgproxy is not to be loaded with concurrent WebP.
    const real = await shapeOf(this.real.url + path, c.init);
    const standIn = await shapeOf(this.standIn.url + path, c.init);
    if (c.clockSlack) {
      const a = maxAge(real.cacheControl);
      const b = maxAge(standIn.cacheControl);
      assert.ok(
        a !== null && b !== null && Math.abs(a - b) <= 2,
        `${c.name}: max-age ${a} (real) vs ${b} (stand-in)`,
      );
      real.cacheControl = standIn.cacheControl = "compared above";
    }
    assert.deepEqual(
      standIn,
      real,
      `${c.name} (${c.init?.method ?? "GET"} ${path}): stand-in differs from real imgproxy`,
    );
    return real;
  }

  async close(): Promise<void> {
    await this.real.proc.stop();
    await this.standIn.proc.stop();
  }
}

const maxAge = (cc: string | null) => {
  const m = /max-age=(\d+)/.exec(cc ?? "");
  return m ? Number(m[1]) : null;
};

const now = () => Math.floor(Date.now() / 1000);

Deno.test({
  name:
    `differential: signed URLs, negotiation, errors, HEAD/OPTIONS, expires:, Cache-Control passthrough, conditional requests — stand-in matches ${IMG.label}`,
  ignore: !IMG.real,
  fn: async (t) => {
    const sources = new SourceServer();
    const pair = await Pair.start({
      IMGPROXY_KEY: "0123456789abcdef0123456789abcdef",
      IMGPROXY_SALT: "fedcba9876543210fedcba9876543210",
      IMGPROXY_AUTO_WEBP: "true",
      IMGPROXY_TTL: "3600",
      IMGPROXY_CACHE_CONTROL_PASSTHROUGH: "true",
    });
    const src = (name: string) => `${sources.base}/${name}`;
    const png = { headers: { accept: "image/png,image/*;q=0.8" } };
    const cases: Case[] = [
      { name: "health", path: "!/health" },
      { name: "favicon", path: "!/favicon.ico" },
      {
        name: "image (the source's format)",
        path: `/rs:fit:20:20/plain/${src("logo.png")}`,
        init: png,
      },
      {
        name: "HEAD of an image",
        path: `/rs:fit:20:20/plain/${src("logo.png")}`,
        init: { method: "HEAD" },
      },
      {
        name: "OPTIONS of an image",
        path: `/rs:fit:20:20/plain/${src("logo.png")}`,
        init: { method: "OPTIONS" },
      },
      {
        name: "HEAD of a bad signature",
        path: "!/bad/rs:fit:20:20/plain/x",
        init: { method: "HEAD" },
      },
      { name: "POST", path: `/rs:fit:20:20/plain/${src("logo.png")}`, init: { method: "POST" } },
      {
        name: "DELETE",
        path: `/rs:fit:20:20/plain/${src("logo.png")}`,
        init: { method: "DELETE" },
      },
      {
        name: "bad signature",
        path: `!/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/rs:fit:20:20/plain/${src("logo.png")}`,
      },
      { name: "unsigned", path: `!/insecure/rs:fit:20:20/plain/${src("logo.png")}` },
      { name: "source 404", path: `/rs:fit:20:20/plain/${src("missing.png")}`, init: png },
      { name: "source 403", path: `/rs:fit:20:20/plain/${src("status/403/a.png")}`, init: png },
      { name: "source 500", path: `/rs:fit:20:20/plain/${src("status/500/a.png")}`, init: png },
      { name: "source 503", path: `/rs:fit:20:20/plain/${src("status/503/a.png")}`, init: png },
      {
        name: "source unreachable",
        path: "/rs:fit:20:20/plain/http://127.0.0.1:1/a.png",
        init: png,
      },
      {
        name: "expired exp:",
        path: `/exp:${now() - 60}/rs:fit:20:20/plain/${src("logo.png")}`,
        init: png,
      },
      {
        name: "exp: in 100 s",
        path: `/exp:${now() + 100}/rs:fit:20:20/plain/${src("logo.png")}`,
        init: png,
        clockSlack: true,
      },
      {
        name: "exp: beyond the TTL",
        path: `/exp:${now() + 86400}/rs:fit:20:20/plain/${src("logo.png")}`,
        init: png,
      },
      {
        name: "Cache-Control passthrough",
        path: `/rs:fit:20:20/plain/${src("cache-control/777/logo.png")}`,
        init: png,
      },
      {
        name: "source validators",
        path: `/rs:fit:20:20/plain/${src("validators/logo.png")}`,
        init: png,
      },
      ...[
        ["If-None-Match matching → 304", "if-none-match", '"v1-logo.png"'],
        ["If-None-Match not matching → 200", "if-none-match", '"v0"'],
        ["If-Modified-Since not older → 304", "if-modified-since", "Thu, 22 Oct 2015 07:28:00 GMT"],
        ["If-Modified-Since older → 200", "if-modified-since", "Tue, 20 Oct 2015 07:28:00 GMT"],
      ].map(([name, header, value]) => ({
        name: name!,
        path: `/rs:fit:20:20/plain/${src("validators/logo.png")}`,
        init: { headers: { ...png.headers, [header!]: value! } },
      })),
    ];
    try {
      for (const c of cases) await t.step(c.name, () => pair.compare(c).then(() => {}));
      await t.step("the image and the negotiated answer carry Vary: Accept", async () => {
        const image = await pair.compare(cases[2]!);
        assert.equal(image.vary, "Accept");
        assert.equal(image.cacheControl, "max-age=3600, public");
        // WebP requested: the format differs (the stand-in does not transcode), Vary does not.
        const path = pair.signPath(`/rs:fit:20:20/plain/${src("logo.png")}`);
        const webp = { headers: { accept: "image/webp,image/*" } };
        const real = await shapeOf(pair.real.url + path, webp);
        const standIn = await shapeOf(pair.standIn.url + path, webp);
        assert.equal(real.contentType, "image/webp");
        assert.deepEqual({ ...standIn, contentType: null }, { ...real, contentType: null });
      });
    } finally {
      await pair.close();
      await sources.close();
    }
  },
});

Deno.test({
  name:
    `differential: fallback images (status, Content-Type, Cache-Control) — stand-in matches ${IMG.label}`,
  ignore: !IMG.real,
  fn: async (t) => {
    const sources = new SourceServer();
    const fallback = Buffer.from(await Deno.readFile(`${FIXTURES}/logo.png`)).toString("base64");
    const src = (name: string) => `${sources.base}/${name}`;
    const png = { headers: { accept: "image/png" } };
    try {
      for (
        const [label, env] of [
          ["FALLBACK_IMAGE_TTL=60", { IMGPROXY_FALLBACK_IMAGE_TTL: "60" }],
          ["FALLBACK_IMAGE_HTTP_CODE=404", { IMGPROXY_FALLBACK_IMAGE_HTTP_CODE: "404" }],
          ["no FALLBACK_IMAGE_TTL", {}],
        ] as const
      ) {
        const pair = await Pair.start({ IMGPROXY_FALLBACK_IMAGE_DATA: fallback, ...env });
        try {
          await t.step(
            `${label}: source 404, source 500, unreachable, exp:, a good source`,
            async () => {
              await pair.compare({
                name: "source 404",
                path: `/rs:fit:20:20/plain/${src("missing.png")}`,
                init: png,
              });
              await pair.compare({
                name: "source 500",
                path: `/rs:fit:20:20/plain/${src("status/500/a.png")}`,
                init: png,
              });
              await pair.compare({
                name: "unreachable",
                path: "/rs:fit:20:20/plain/http://127.0.0.1:1/a.png",
                init: png,
              });
              await pair.compare({
                name: "source 404 with exp: in 30 s",
                path: `/exp:${now() + 30}/rs:fit:20:20/plain/${src("missing.png")}`,
                init: png,
                clockSlack: true,
              });
              await pair.compare({
                name: "good source",
                path: `/rs:fit:20:20/plain/${src("logo.png")}`,
                init: png,
              });
            },
          );
        } finally {
          await pair.close();
        }
      }
    } finally {
      await sources.close();
    }
  },
});
