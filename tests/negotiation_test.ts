import assert from "node:assert/strict";
import {
  answerVariant,
  FormatNegotiation,
  formatOf,
  type NegotiatedFormat,
  predictVariant,
} from "../lib/negotiation.ts";

const CHROME = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";
const SAFARI = "image/webp,image/avif,image/jxl,image/heic,image/*;q=0.8,*/*;q=0.5";

function answer(type: string, vary: string | null = "Accept", status = 200): Response {
  const headers: Record<string, string> = { "content-type": type };
  if (vary !== null) headers.vary = vary;
  return new Response(null, { status, headers });
}

Deno.test("formatOf() names only the negotiated formats", () => {
  assert.equal(formatOf("image/webp"), "webp");
  assert.equal(formatOf("IMAGE/AVIF; q=1"), "avif");
  assert.equal(formatOf("image/jxl"), "jxl");
  assert.equal(formatOf("image/jpeg"), null);
  assert.equal(formatOf(null), null);
});

Deno.test("predictVariant() takes imgproxy's order, jxl, avif, webp, among the formats it produces", () => {
  const all = new Set<NegotiatedFormat>(["jxl", "avif", "webp"]);
  assert.equal(predictVariant(SAFARI, all), "-jxl");
  assert.equal(predictVariant(CHROME, all), "-avif");
  assert.equal(predictVariant(CHROME, new Set(["webp"])), "-webp");
  assert.equal(predictVariant(CHROME, new Set(["jxl"])), "");
  assert.equal(predictVariant("*/*", all), "");
  assert.equal(predictVariant(null, all), "");
});

Deno.test("answerVariant() and predictVariant() agree for every client once the formats are known", () => {
  // imgproxy with AUTO_WEBP and AUTO_AVIF: what it answers each client, and the key of that.
  const enabled = new Set<NegotiatedFormat>(["avif", "webp"]);
  const decide = (accept: string) =>
    accept.includes("image/avif")
      ? "image/avif"
      : accept.includes("image/webp")
      ? "image/webp"
      : "image/jpeg";
  for (const accept of [CHROME, SAFARI, "image/webp,*/*", "*/*", "image/jxl"]) {
    assert.equal(answerVariant(accept, decide(accept)), predictVariant(accept, enabled), accept);
  }
});

Deno.test("FormatNegotiation: from imgproxy's settings, predictions start at once", () => {
  const n = new FormatNegotiation(["webp"]);
  assert.equal(n.variesOnAccept, true);
  assert.equal(n.predict(CHROME), "-webp");
  assert.equal(new FormatNegotiation([]).predict(CHROME), "");
});

Deno.test("FormatNegotiation: without settings, learns from the answers that pass through", () => {
  const n = new FormatNegotiation(null);
  assert.equal(n.predict(CHROME), "");
  // Answers that say nothing: not a 200 image, or no Vary.
  n.observe(CHROME, answer("image/webp", "Accept", 404));
  n.observe(CHROME, answer("text/html"));
  assert.equal(n.variesOnAccept, null);
  n.observe(CHROME, answer("image/webp"));
  assert.equal(n.variesOnAccept, true);
  assert.equal(n.predict(CHROME), "-webp");
  assert.equal(n.predict("image/avif"), "");
  // A format the client did not ask for teaches nothing (the URL's own format).
  n.observe("image/webp", answer("image/avif"));
  assert.equal(n.predict(CHROME), "-webp");
  n.observe(CHROME, answer("image/avif"));
  assert.equal(n.predict(CHROME), "-avif");
  assert.deepEqual([...n.formats].sort(), ["avif", "webp"]);
  // imgproxy restarted without negotiation: plain keys again.
  n.observe(CHROME, answer("image/jpeg", null));
  assert.equal(n.predict(CHROME), "");
});
