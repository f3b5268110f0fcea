import assert from "node:assert/strict";
import type { AdmissionRules, BypassReason } from "../lib/admission.ts";
import { BypassNotices } from "../lib/bypass_notice.ts";
import { MemoryLogger } from "../lib/log.ts";

const RULES: AdmissionRules = {
  cacheVariants: "off",
  fallbackMaxAge: 60,
  cookiePassthrough: true,
  maxObjectBytes: 1000,
};

function noticesFor(rules: AdmissionRules = RULES) {
  const logger = new MemoryLogger();
  return { logger, notices: new BypassNotices(logger, rules) };
}

Deno.test("BypassNotices: a configuration-caused reason is said once, naming what to change", () => {
  const { logger, notices } = noticesFor();
  const vary = new Headers({ vary: "Accept" });
  for (let i = 0; i < 5; i++) notices.note("vary", vary);
  assert.deepEqual(logger.lines.length, 1);
  assert.match(logger.lines[0]!, /WARN .*CACHE_VARIANTS=off.*set CACHE_VARIANTS=accept/);
  const rows: [BypassReason, Record<string, string>, RegExp][] = [
    ["too-large", { "content-length": "5000" }, /UPLOAD_MAX_OBJECT_BYTES.*contentLength=5000/],
    ["fallback-image", { "cache-control": "max-age=60" }, /IMGPROXY_FALLBACK_IMAGE_HTTP_CODE/],
    ["cache-control", { "cache-control": "no-cache" }, /IMGPROXY_TTL=0/],
    ["cookie", {}, /IMGPROXY_COOKIE_PASSTHROUGH/],
  ];
  for (const [reason, headers, text] of rows) {
    const before: number = logger.lines.length;
    notices.note(reason, new Headers(headers));
    notices.note(reason, new Headers(headers));
    assert.equal(logger.lines.length, before + 1, reason);
    assert.match(logger.lines.at(-1)!, text);
  }
});

Deno.test("BypassNotices: Vary on client hints is its own notice, also with variants on", () => {
  const { logger, notices } = noticesFor({ ...RULES, cacheVariants: "accept" });
  const hints = new Headers({ vary: "Accept, Sec-CH-DPR, DPR, Sec-CH-Width, Width" });
  notices.note("vary", hints);
  notices.note("vary", hints);
  assert.equal(logger.lines.length, 1);
  assert.match(logger.lines[0]!, /IMGPROXY_ENABLE_CLIENT_HINTS/);
  assert.match(logger.lines[0]!, /vary="Accept, Sec-CH-DPR/);
});

Deno.test("BypassNotices: reasons about one request or answer are never said", () => {
  const { logger, notices } = noticesFor();
  const reasons: BypassReason[] = [
    "method",
    "status",
    "content-type",
    "content-encoding",
    "set-cookie",
    "authorization",
    "rule",
  ];
  for (const reason of reasons) notices.note(reason, new Headers());
  assert.deepEqual(logger.lines, []);
});
