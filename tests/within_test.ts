import assert from "node:assert/strict";
import { within } from "./support/within.ts";

Deno.test("within: a wait that never settles fails naming what it waited for", async () => {
  const never = new Promise<void>(() => {});
  await assert.rejects(within("the upload of img/abc", never, 20), {
    message: "the upload of img/abc: not settled within 20 ms",
  });
});

Deno.test("within: a settled wait passes its value through and leaves no timer behind", async () => {
  assert.equal(await within("a value", Promise.resolve(7)), 7);
  await assert.rejects(within("a failure", Promise.reject(new Error("boom"))), { message: "boom" });
});
