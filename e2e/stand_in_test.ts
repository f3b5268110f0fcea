/** The stand-in's signature check is imgproxy's (the facts file's test vector). */
import assert from "node:assert/strict";
import { sign, sourceOf } from "./support/stand_in_imgproxy.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("stand-in imgproxy: signatures match imgproxy's test vector; sources parse", () => {
  const path =
    "/rs:fill:300:400:0/g:sm/aHR0cDovL2V4YW1w/bGUuY29tL2ltYWdl/cy9jdXJpb3NpdHku/anBn.png";
  assert.equal(
    sign(enc("secret"), enc("hello"), path),
    "oKfUtW34Dvo2BGQehJFR4Nr0_rIjOtdtzJ3QFsUcXH8",
  );
  assert.equal(sign(enc("secret"), enc("hello"), path, 8), "oKfUtW34Dvo");
  assert.equal(sourceOf(path.slice(1).split("/")), "http://example.com/images/curiosity.jpg");
  assert.equal(
    sourceOf(["rs:fit:1:1", "plain", "http:", "x.test", "a.jpg@png"]),
    "http://x.test/a.jpg",
  );
});
