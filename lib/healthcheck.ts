/**
 * `deno run lib/healthcheck.ts URL`: exits 0 when URL answers 200 within 4 s, else prints why
 * and exits 1. Run by bin/healthcheck (the container's HEALTHCHECK) against /readyz.
 */
import { timeLimit } from "./timers.ts";

if (import.meta.main) {
  const url = Deno.args[0];
  if (url === undefined) {
    console.error("usage: healthcheck.ts URL");
    Deno.exit(2);
  }
  let code = 1;
  try {
    // Ref'd, and never cleared: the process exits right after.
    const res = await fetch(url, {
      signal: timeLimit(4000, "no answer within 4 s", { ref: true }).signal,
    });
    const text = (await res.text()).trim();
    if (res.status === 200) code = 0;
    else console.error(`${url}: ${res.status} ${text.replaceAll("\n", "; ")}`);
  } catch (err) {
    console.error(`${url}: ${(err as Error)?.message ?? String(err)}`);
  }
  Deno.exit(code);
}
