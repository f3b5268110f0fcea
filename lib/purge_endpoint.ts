/**
 * `POST /purge` on the metrics listener: the body lists raw request paths, one a line (the
 * format of `deno task warm` lists), and every stored variant of each is removed from the store
 * and from the uploader's memory of recently stored keys.
 *
 * It exists only when `ADMIN_TOKEN` is set, and demands `Authorization: Bearer <ADMIN_TOKEN>`,
 * compared in constant time. A list with an unusable line is refused whole (400), so a typo
 * never half-applies.
 */
import type { Logger } from "./log.ts";
import { parseList } from "./path_list.ts";
import { type PurgeOutcome, purgePaths, type PurgeTarget } from "./purge.ts";
import { sameSecret, sha256 } from "./secret.ts";

/** Settings of the endpoint. */
export interface PurgeEndpointOptions {
  token: string;
  target: PurgeTarget;
  logger: Logger;
  /** The largest body accepted (default 1 MiB, about 10,000 paths). */
  maxBodyBytes?: number;
}

const DEFAULT_MAX_BODY = 1 << 20;

function reply(status: number, body: unknown, extra: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...extra },
  });
}

/** Reads a body up to `limit` bytes; null when it is longer. */
async function readLimited(req: Request, limit: number): Promise<string | null> {
  if (req.body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body) {
    size += chunk.byteLength;
    if (size > limit) return null; // leaving the loop cancels the rest of the body
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

/** The handler of `POST /purge`. */
export function purgeEndpoint(options: PurgeEndpointOptions): (req: Request) => Promise<Response> {
  const expected = sha256(`Bearer ${options.token}`);
  const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  return async (req) => {
    if (req.method !== "POST") {
      await req.body?.cancel();
      return reply(405, { error: "use POST" }, { allow: "POST" });
    }
    if (!sameSecret(req.headers.get("authorization"), expected)) {
      await req.body?.cancel();
      return reply(401, { error: "Authorization: Bearer <ADMIN_TOKEN> required" }, {
        "www-authenticate": 'Bearer realm="purge"',
      });
    }
    const text = await readLimited(req, limit);
    if (text === null) return reply(413, { error: `the list is over ${limit} bytes` });
    const entries = parseList(text);
    const invalid = entries.flatMap((e) =>
      "error" in e ? [{ line: e.line, error: e.error, text: e.text }] : []
    );
    if (invalid.length > 0) return reply(400, { error: "unusable lines, nothing purged", invalid });
    const paths = entries.flatMap((e) => "target" in e ? [e.target] : []);
    const outcomes: PurgeOutcome[] = await purgePaths(options.target, paths);
    const failed = outcomes.filter((o) => o.error !== undefined);
    const deleted = outcomes.reduce((n, o) => n + o.keys.length, 0);
    options.logger.log(failed.length > 0 ? "ERROR" : "INFO", "Purged", {
      paths: paths.length,
      objects: deleted,
      failed: failed.length,
    });
    return reply(failed.length > 0 ? 502 : 200, {
      paths: paths.length,
      deleted,
      failed: failed.length,
      results: outcomes,
    });
  };
}
