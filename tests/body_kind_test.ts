/**
 * bodyKind() reads the runtime's fields: these pin its answers on the Deno in use, so an upgrade
 * that moves them fails here rather than quietly sending every body through a stream.
 */
import assert from "node:assert/strict";
import { bodyKind, streamState } from "../lib/body_kind.ts";

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

Deno.test("streamState() follows a stream to its end or its failure", async () => {
  const open = new ReadableStream({ pull() {} });
  assert.equal(streamState(open), "readable");
  await open.cancel();
  assert.equal(streamState(open), "closed");
  const read = new Blob([new Uint8Array(3)]).stream();
  await new Response(read).bytes();
  assert.equal(streamState(read), "closed");
  const failed = new ReadableStream({ start: (c) => c.error(new Error("cut")) });
  assert.equal(streamState(failed), "errored");
  // Read natively by the runtime: no sign of a client that left.
  const file = await Deno.open(new URL(import.meta.url));
  assert.equal(streamState(file.readable), "unknown");
  await file.readable.cancel();
});
