import assert from "node:assert/strict";
import { formatSummary, progressBar } from "../lib/warm_report.ts";
import type { WarmCounts } from "../lib/warm_run.ts";

Deno.test("progress bar and summary text", () => {
  const counts: WarmCounts = {
    total: 10,
    done: 5,
    stored: 3,
    present: 1,
    failed: 1,
    duplicates: 2,
    excluded: 0,
    reasons: new Map([["HTTP 404", 1]]),
    interrupted: false,
  };
  assert.equal(
    progressBar(counts, 10),
    "[#####.....]  50% 5/10 (3 stored, 1 already present, 1 failed)",
  );
  counts.reasons.set("not cacheable (content-type)", 3);
  assert.equal(
    formatSummary(counts, 1.25),
    "Warm-up finished: 10 paths in 1.3 s: 3 stored, 1 already present, 1 failed; " +
      "2 duplicate lines skipped\n" +
      "  failed 3 × not cacheable (content-type)\n" +
      "  failed 1 × HTTP 404\n",
  );
});
