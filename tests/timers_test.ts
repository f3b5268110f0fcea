/**
 * The shared timer mechanisms: one deadline for steps taken in turn (shutdown's responses in
 * flight, then its upload drain).
 */
import assert from "node:assert/strict";
import { Deadline } from "../lib/timers.ts";

Deno.test("Deadline: work settled in time is true, and the next step gets what is left", async () => {
  const deadline = new Deadline(60_000);
  assert.equal(await deadline.within(Promise.resolve()), true);
  assert.ok(deadline.remainingMs > 0 && deadline.remainingMs <= 60_000);
  await assert.rejects(deadline.within(Promise.reject(new Error("boom"))), { message: "boom" });
});

Deno.test("Deadline: work still going at the deadline is false, and nothing is left for the next step", async () => {
  const deadline = new Deadline(30);
  const never = new Promise<void>(() => {});
  assert.equal(await deadline.within(never), false);
  // Never early: by the time it says so, the deadline has passed for every later step too.
  assert.equal(deadline.remainingMs, 0);
  assert.equal(await deadline.within(never), false);
});
