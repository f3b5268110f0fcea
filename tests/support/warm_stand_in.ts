/**
 * A stand-in imgproxy for the warm-up tests: /health 200, "missing" paths 404, "text" paths 200
 * text/plain, any other path a PNG; it records every raw target and the most requests it had in
 * flight at once.
 */
import { rawTarget } from "../../lib/context.ts";

export interface StandIn {
  url: string;
  targets: string[];
  health: number;
  maxInFlight: number;
  /** Called with each image request's target as it arrives. */
  onRequest: (target: string) => void;
  close(): Promise<void>;
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function pngFor(target: string): Uint8Array {
  return new Uint8Array([...PNG_MAGIC, ...new TextEncoder().encode(target)]);
}

export function startStandIn(delayMs = 0): StandIn {
  let inFlight = 0;
  const state: StandIn = {
    url: "",
    targets: [],
    health: 0,
    maxInFlight: 0,
    onRequest: () => {},
    close: () => server.shutdown(),
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const target = rawTarget(req)!;
    if (target === "/health") {
      state.health++;
      return new Response("imgproxy is running");
    }
    state.targets.push(target);
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    state.onRequest(target);
    try {
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      if (target.includes("missing")) return new Response("Not Found", { status: 404 });
      if (target.includes("text")) {
        return new Response("hello", { headers: { "content-type": "text/plain" } });
      }
      return new Response(pngFor(target) as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": "image/png", "cache-control": "max-age=31536000, public" },
      });
    } finally {
      inFlight--;
    }
  });
  state.url = `http://127.0.0.1:${server.addr.port}`;
  return state;
}

/** Runs `fn` with a stand-in imgproxy and an empty CACHE_DIR, and the environment naming them. */
export async function withSetup(
  delayMs: number,
  fn: (s: StandIn, env: Record<string, string>, dir: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "warm-test-" });
  const standIn = startStandIn(delayMs);
  try {
    await fn(standIn, {
      IMGPROXY_URL: standIn.url,
      CACHE_DIR: dir,
      HEALTH_CHECK_TIMEOUT_IN_SEC: "5",
    }, dir);
  } finally {
    await standIn.close();
    await Deno.remove(dir, { recursive: true });
  }
}
