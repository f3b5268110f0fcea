/**
 * The shared timer mechanisms: the waits every caller goes through (after, sleep, every: each
 * keeps the process up or not, as asked), and one deadline for steps taken in turn (shutdown's
 * responses in flight, then its upload drain).
 */
import assert from "node:assert/strict";
import {
  after,
  Deadline,
  Deadlines,
  every,
  sleep,
  StallWatch,
  timeLimit,
  withDeadline,
} from "../lib/timers.ts";

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

Deno.test("after(): calls back once, never early, and a cancelled call never comes", async () => {
  const started = performance.now();
  const order: string[] = [];
  const cancelled = after(10, () => order.push("cancelled"), { ref: true });
  cancelled();
  cancelled(); // cancelling twice is harmless
  const fired = Promise.withResolvers<number>();
  after(30, () => {
    order.push("fired");
    fired.resolve(performance.now() - started);
  }, { ref: true });
  // Timers fire in the order they are due: by the time the later one has, the cancelled one
  // would have too.
  const elapsed = await fired.promise;
  assert.ok(elapsed >= 29, `fired after ${elapsed} ms`); // 1 ms: timers count whole ms
  assert.deepEqual(order, ["fired"]);
});

Deno.test("sleep(): true once the time has passed", async () => {
  const started = performance.now();
  assert.equal(await sleep(20, { ref: true }), true);
  assert.ok(performance.now() - started >= 19);
});

Deno.test("sleep(): an abort wakes it at once with false", async () => {
  // A sleep that ignored the abort would not end within the test (its timer being cleared is
  // checked in a process of its own, below: Deno's test sanitizers do not see timers).
  const wake = new AbortController();
  const sleeping = sleep(3_600_000, { ref: true, signal: wake.signal });
  wake.abort();
  assert.equal(await sleeping, false);
  assert.equal(await sleep(3_600_000, { ref: true, signal: wake.signal }), false, "aborted before");
});

Deno.test("every(): calls back repeatedly until stopped, then never again", async () => {
  let calls = 0;
  const third = Promise.withResolvers<void>();
  const stop = every(5, () => {
    if (++calls === 3) third.resolve();
  }, { ref: true });
  await third.promise;
  stop();
  const at = calls;
  // Several periods later, still no call.
  await sleep(50, { ref: true });
  assert.equal(calls, at);
  stop(); // stopping twice is harmless
});

Deno.test("timeLimit(): aborts with a TimeoutError once the time has passed, not before", async () => {
  const started = performance.now();
  const limit = timeLimit(20, "no answer within 0.02 s", { ref: true });
  const aborted = Promise.withResolvers<void>();
  limit.signal.addEventListener("abort", () => aborted.resolve(), { once: true });
  await aborted.promise;
  assert.ok(performance.now() - started >= 19);
  assert.equal(limit.timedOut, true);
  assert.equal((limit.signal.reason as DOMException).name, "TimeoutError");
  assert.equal((limit.signal.reason as DOMException).message, "no answer within 0.02 s");
  limit.clear();
});

Deno.test("timeLimit(): follows the caller's signal, with its reason, until cleared", () => {
  const caller = new AbortController();
  const limit = timeLimit(3_600_000, "late", { ref: true, signal: caller.signal });
  caller.abort("stopping");
  assert.equal(limit.signal.reason, "stopping");
  assert.equal(limit.timedOut, false);
  limit.clear();
  const gone = timeLimit(3_600_000, "late", { ref: true, signal: caller.signal });
  assert.equal(gone.signal.reason, "stopping", "a signal aborted before is followed at once");
  gone.clear();
  const other = new AbortController();
  const cleared = timeLimit(3_600_000, "late", { ref: true, signal: other.signal });
  cleared.clear();
  other.abort();
  assert.equal(cleared.signal.aborted, false, "a cleared limit no longer follows");
});

Deno.test("Deadlines: each call back comes once its delay has passed, never before; a cancelled one never", async () => {
  const deadlines = new Deadlines(40, 10);
  const started = performance.now();
  const fired: string[] = [];
  const both = Promise.withResolvers<void>();
  const cancel = deadlines.add(() => fired.push("cancelled"));
  deadlines.add(() => fired.push("a"));
  deadlines.add(() => {
    fired.push("b");
    both.resolve(); // the last of its slot: the others have been called by now
  });
  cancel();
  // Held up by a ref'd wait: the deadlines' own timers keep no process up.
  const holding = after(60_000, () => {}, { ref: true });
  await both.promise;
  holding();
  assert.ok(performance.now() - started >= 39, `after ${performance.now() - started} ms`);
  assert.deepEqual(fired.sort(), ["a", "b"]);
});

Deno.test("StallWatch: what has waited past the limit is stalled, not before; what is not waiting, never", async () => {
  const watch = new StallWatch(20);
  const stalled = Promise.withResolvers<number>();
  let busyStalls = 0;
  const started = performance.now();
  const waiting = { since: performance.now(), stall: () => stalled.resolve(performance.now()) };
  const busy = { since: -1, stall: () => busyStalls++ };
  watch.watch(waiting);
  watch.watch(busy);
  const holding = after(60_000, () => {}, { ref: true });
  const at = await stalled.promise;
  holding();
  assert.ok(at - started >= 19, `stalled after ${at - started} ms`);
  assert.equal(busyStalls, 0);
  watch.unwatch(busy); // the last one: the watch's timer stops
});

/** Runs `code` (importing the timer module) in a fresh `deno`, returning its code and output. */
async function runAlone(code: string): Promise<{ code: number; stdout: string; ms: number }> {
  const module = new URL("../lib/timers.ts", import.meta.url).href;
  const started = performance.now();
  const out = await new Deno.Command("deno", {
    args: [
      "eval",
      "--no-prompt",
      `import { after, every, sleep, timeLimit } from "${module}";\n${code}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  assert.equal(out.code, 0, text.decode(out.stderr));
  return {
    code: out.code,
    stdout: text.decode(out.stdout),
    ms: performance.now() - started,
  };
}

Deno.test("ref: true keeps the process up until the wait ends; ref: false keeps nothing up", async () => {
  const refd = await runAlone(
    `after(50, () => console.log("after"), { ref: true });
     sleep(60, { ref: true }).then(() => console.log("sleep"));
     const stop = every(20, () => { console.log("every"); stop(); }, { ref: true });`,
  );
  assert.deepEqual(refd.stdout.trim().split("\n").sort(), ["after", "every", "sleep"]);
  // Two minutes each, unref'd: the process ends at once without them (the margin is for a
  // loaded machine; a process they held up would take the two minutes).
  const unrefd = await runAlone(
    `after(120_000, () => console.log("after"), { ref: false });
     every(120_000, () => console.log("every"), { ref: false });
     console.log("end");`,
  );
  assert.equal(unrefd.stdout, "end\n");
  assert.ok(unrefd.ms < 60_000, `took ${unrefd.ms} ms`);
});

Deno.test("a cancelled after(), an aborted sleep(), a stopped every() and a cleared timeLimit() leave no timer behind", async () => {
  // Each ref'd for two minutes: one left armed would hold the process up that long.
  const { stdout, ms } = await runAlone(
    `after(120_000, () => console.log("after"), { ref: true })();
     const wake = new AbortController();
     const slept = sleep(120_000, { ref: true, signal: wake.signal });
     every(120_000, () => console.log("every"), { ref: true })();
     timeLimit(120_000, "late", { ref: true }).clear();
     wake.abort();
     console.log("slept", await slept);`,
  );
  assert.equal(stdout, "slept false\n");
  assert.ok(ms < 60_000, `took ${ms} ms`);
});

Deno.test("one timer mechanism: no timer is armed outside lib/timers.ts", async () => {
  const root = new URL("..", import.meta.url);
  const files = ["main.ts", "serve.ts", "warm.ts", "purge.ts", "mod.ts"];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(new URL(dir, root))) {
      if (e.isDirectory) await walk(`${dir}/${e.name}`);
      else if (e.name.endsWith(".ts")) files.push(`${dir}/${e.name}`);
    }
  };
  await walk("lib");
  assert.ok(files.includes("lib/timers.ts") && files.includes("lib/store/local.ts"));
  const armed: string[] = [];
  for (const file of files) {
    if (file === "lib/timers.ts") continue;
    const lines = (await Deno.readTextFile(new URL(file, root))).split("\n");
    lines.forEach((line, i) => {
      if (/\b(setTimeout|setInterval|AbortSignal\.timeout|Deno\.unrefTimer)\(/.test(line)) {
        armed.push(`${file}:${i + 1}: ${line.trim()}`);
      }
    });
  }
  assert.deepEqual(armed, [], "use after/sleep/every/timeLimit/Deadline(s)/StallWatch instead");
});

Deno.test("Deadlines: one timer at a time for many slots, each call back in order and never early", async () => {
  const armed: number[] = [];
  const real = globalThis.setTimeout;
  // Count the timers the deadlines arm (their waits are the long ones; the test's own are short).
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    if ((ms ?? 0) > 15) armed.push(ms!);
    return real(fn, ms);
  }) as typeof setTimeout;
  const pause = () => new Promise<void>((r) => real(r, 3));
  try {
    const deadlines = new Deadlines(40, 1);
    const due: number[] = [];
    const fired: { i: number; at: number }[] = [];
    const last = Promise.withResolvers<void>();
    const cancels: (() => void)[] = [];
    for (let i = 0; i < 8; i++) {
      due.push(performance.now() + 40);
      cancels.push(deadlines.add(() => {
        fired.push({ i, at: performance.now() });
        if (i === 7) last.resolve();
      }));
      await pause();
    }
    // The first slot's calls all cancelled: the timer moves on to the next slot with calls.
    cancels[0]!();
    cancels[3]!();
    const holding = after(60_000, () => {}, { ref: true });
    await last.promise;
    holding();
    assert.deepEqual(fired.map((f) => f.i), [1, 2, 4, 5, 6, 7]);
    for (const { i, at } of fired) {
      assert.ok(at >= due[i]! - 1, `${i} came ${due[i]! - at} ms early`);
    }
    // One timer pending at a time: armed at the first add, then once per firing at most.
    assert.ok(armed.length <= 1 + fired.length, `${armed.length} timers for ${fired.length} calls`);
    assert.ok(armed.length < 8, `${armed.length} timers armed for 8 slots`);
  } finally {
    globalThis.setTimeout = real;
  }
});

Deno.test("Deadlines: a call back that adds another gets it called after its own delay", async () => {
  const deadlines = new Deadlines(20, 5);
  const done = Promise.withResolvers<number>();
  const started = performance.now();
  deadlines.add(() => {
    const second = performance.now();
    deadlines.add(() => done.resolve(performance.now() - second));
  });
  const holding = after(60_000, () => {}, { ref: true });
  const waited = await done.promise;
  holding();
  assert.ok(waited >= 19, `the second came after ${waited} ms`);
  assert.ok(performance.now() - started >= 39);
});

Deno.test("withDeadline: with the signal already aborted it rejects at once, hands a later result to onLate and leaves no failure unhandled", async () => {
  const aborted = AbortSignal.abort(new DOMException("late", "TimeoutError"));
  const late: string[] = [];
  const value = Promise.withResolvers<string>();
  const racing = withDeadline(value.promise, aborted, (v) => late.push(v));
  await assert.rejects(racing, (e: Error) => e.name === "TimeoutError");
  value.resolve("a connection");
  await value.promise;
  await Promise.resolve();
  assert.deepEqual(late, ["a connection"]);
  // A failure after the abort is no one's: an unhandled one would fail this test.
  const failing = Promise.withResolvers<string>();
  await assert.rejects(
    withDeadline(failing.promise, aborted),
    (e: Error) => e.name === "TimeoutError",
  );
  failing.reject(new Error("refused"));
  await failing.promise.catch(() => {});
});

Deno.test("withDeadline: the work's result before the abort; once aborted, the signal's reason and the late result to onLate", async () => {
  const c = new AbortController();
  assert.equal(await withDeadline(Promise.resolve(1), c.signal), 1);
  const late: number[] = [];
  const work = Promise.withResolvers<number>();
  const racing = withDeadline(work.promise, c.signal, (v) => late.push(v));
  c.abort(new DOMException("gone", "AbortError"));
  await assert.rejects(racing, (e: Error) => e.name === "AbortError");
  work.resolve(2);
  await work.promise;
  await Promise.resolve();
  assert.deepEqual(late, [2]);
});
