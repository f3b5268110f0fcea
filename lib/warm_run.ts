/**
 * A warm run: the list's unique targets ({@linkcode plan}), worked through by a bounded number
 * of workers ({@linkcode warmAll}), each outcome counted ({@linkcode WarmCounts}).
 */
import { type CacheRules, ruleFor, type RuleVerdict } from "./cache_rules.ts";
import { objectKey, pathOf } from "./key.ts";
import type { ListEntry } from "./path_list.ts";
import type { UploadOutcomes } from "./upload_outcomes.ts";
import { type Outcome, type WarmApp, warmOne, type WarmSettings } from "./warm_one.ts";

/** Counts of a run. */
export interface WarmCounts {
  /** Paths to process (unique targets plus unusable lines). */
  total: number;
  done: number;
  stored: number;
  present: number;
  failed: number;
  /** Lines naming a key already listed earlier (not processed again). */
  duplicates: number;
  /** Lines the cache rules leave out (never requested). */
  excluded: number;
  /** Failures by reason. */
  reasons: Map<string, number>;
  interrupted: boolean;
}

/** Counts for a run of `total` paths, nothing done yet. */
export function newCounts(total: number, duplicates = 0, excluded = 0): WarmCounts {
  return {
    total,
    done: 0,
    stored: 0,
    present: 0,
    failed: 0,
    duplicates,
    excluded,
    reasons: new Map(),
    interrupted: false,
  };
}

/** Records one outcome in the counts. */
export function count(counts: WarmCounts, outcome: Outcome): void {
  counts.done++;
  if (outcome.kind === "stored") counts.stored++;
  else if (outcome.kind === "present") counts.present++;
  else {
    counts.failed++;
    counts.reasons.set(outcome.reason, (counts.reasons.get(outcome.reason) ?? 0) + 1);
  }
}

/** Settings of a whole run. */
export interface WarmAllOptions extends WarmSettings {
  concurrency: number;
  /** Aborted: take no new paths; those in flight finish. */
  signal?: AbortSignal;
  /** Called after each path. */
  onResult?: (target: string, outcome: Outcome, counts: WarmCounts) => void;
}

/**
 * Unique targets of a list (by key), with the duplicate count, the unusable lines and the lines
 * the cache rules leave out (the proxy would neither look them up nor store them).
 */
export function plan(entries: ListEntry[], folder: string, rules?: CacheRules): {
  targets: string[];
  duplicates: number;
  invalid: { line: number; error: string; text: string }[];
  excluded: { line: number; target: string; why: NonNullable<RuleVerdict> }[];
} {
  const seen = new Set<string>();
  const targets: string[] = [];
  const invalid: { line: number; error: string; text: string }[] = [];
  const excluded: { line: number; target: string; why: NonNullable<RuleVerdict> }[] = [];
  let duplicates = 0;
  for (const e of entries) {
    if ("error" in e) {
      invalid.push(e);
      continue;
    }
    const why = rules === undefined ? null : ruleFor(rules, pathOf(e.target));
    if (why !== null) {
      excluded.push({ line: e.line, target: e.target, why });
      continue;
    }
    const key = objectKey(pathOf(e.target), folder);
    if (seen.has(key)) duplicates++;
    else {
      seen.add(key);
      targets.push(e.target);
    }
  }
  return { targets, duplicates, invalid, excluded };
}

/** Runs `targets` through {@linkcode warmOne} with at most `concurrency` at a time. */
export async function warmAll(
  app: WarmApp,
  outcomes: UploadOutcomes,
  targets: readonly string[],
  counts: WarmCounts,
  options: WarmAllOptions,
): Promise<WarmCounts> {
  let next = 0;
  const worker = async () => {
    while (next < targets.length) {
      if (options.signal?.aborted) {
        counts.interrupted = true;
        return;
      }
      const target = targets[next++]!;
      const outcome = await warmOne(app, outcomes, target, options);
      if (outcome === null) {
        counts.interrupted = true;
        return;
      }
      count(counts, outcome);
      options.onResult?.(target, outcome, counts);
    }
  };
  const n = Math.max(1, Math.min(options.concurrency, targets.length));
  await Promise.all(Array.from({ length: n }, worker));
  if (options.signal?.aborted && counts.done < counts.total) counts.interrupted = true;
  return counts;
}
