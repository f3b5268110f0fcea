/**
 * bodyKind() reads the runtime's fields: these pin its answers on the Deno in use, so an upgrade
 * that moves them fails here rather than quietly sending every body through a stream.
 */
import assert from "node:assert/strict";
import { bodyKind } from "../lib/body_kind.ts";

Deno.test("bodyKind() tells bodies held whole from streams without reading them", () => {
  const bytes = new Response(new Uint8Array(1234));
  assert.deepEqual(bodyKind(bytes), { kind: "whole", length: 1234 });
  assert.equal(bytes.bodyUsed, false);
  assert.deepEqual(bodyKind(new Response("ok\n")), { kind: "whole", length: 3 });
  assert.deepEqual(bodyKind(new Response("é")), { kind: "whole", length: 2 });
  assert.deepEqual(bodyKind(new Response("x", { status: 404, headers: { a: "b" } })), {
    kind: "whole",
    length: 1,
  });
  assert.deepEqual(bodyKind(new Response(null, { status: 302 })), { kind: "none" });
  assert.deepEqual(bodyKind(new Response(new ReadableStream())), { kind: "stream" });
  assert.deepEqual(bodyKind(new Response(new Blob([new Uint8Array(3)]).stream())), {
    kind: "stream",
  });
});

Deno.test("bodyKind() of a body turned into a stream is a stream", async () => {
  const res = new Response(new Uint8Array(10));
  const body = res.body!;
  assert.deepEqual(bodyKind(res), { kind: "stream" });
  await body.cancel();
});
