/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof`): self time by function and by
 * source (file or package), and total time under chosen functions.
 *
 * Usage: deno run --allow-read bench/profile.ts FILE.cpuprofile [TOP]
 */
interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
const [file, topArg] = Deno.args;
if (file === undefined) {
  console.error("usage: profile.ts FILE.cpuprofile [TOP]");
  Deno.exit(2);
}
const top = Number(topArg ?? 30);
const prof = JSON.parse(await Deno.readTextFile(file)) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
};
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map<number, number>();
let total = 0;
prof.samples.forEach((id, i) => {
  const dt = prof.timeDeltas[i] ?? 0;
  self.set(id, (self.get(id) ?? 0) + dt);
  total += dt;
});
const source = (url: string) => {
  const m =
    /node_modules\/\.deno\/([^/]+)|\/npm\/[^/]+\/([^/]+(?:\/[^/]+)?)\/\d+\.\d+\.\d+\/|\/(@[^/]+\/[^/]+|[^/@][^/]*)\/\d+\.\d+\.\d+\//
      .exec(url);
  if (m) return "npm:" + (m[1] ?? m[2] ?? m[3]);
  if (url.startsWith("ext:") || url.startsWith("node:")) {
    return url.split("/").slice(0, 2).join("/");
  }
  if (url === "") return "(native/vm)";
  // Project files by their path in the repository (lib/…, bench/…), whatever the checkout's
  // directory is called.
  const m2 = /^file:\/\/.*\/((?:lib|bench|tests|e2e)\/.*)$/.exec(url);
  return m2 ? m2[1]! : url.replace(/^file:\/\/.*\//, "");
};
const agg = (key: (n: Node) => string) => {
  const m = new Map<string, number>();
  for (const [id, t] of self) {
    const k = key(byId.get(id)!);
    m.set(k, (m.get(k) ?? 0) + t);
  }
  return [...m].sort((a, b) => b[1] - a[1]);
};
const idle = agg((n) => n.callFrame.functionName).find(([k]) => k === "(idle)")?.[1] ?? 0;
const busy = total - idle;
// Percentages are of the busy (non-idle) time.
const pct = (t: number) => `${(100 * t / busy).toFixed(1).padStart(5)}%`;
console.log(
  `total ${(total / 1e6).toFixed(2)} s sampled, busy ${(busy / 1e6).toFixed(2)} s; % of busy:`,
);
self.forEach((_, id) => byId.get(id)!.callFrame.functionName === "(idle)" && self.delete(id));
console.log(`\nself time by source:`);
for (const [k, t] of agg((n) => source(n.callFrame.url)).slice(0, top)) {
  console.log(`${pct(t)}  ${k}`);
}
console.log(`\nself time by function:`);
for (
  const [k, t] of agg((n) =>
    `${n.callFrame.functionName || "(anonymous)"} ${source(n.callFrame.url)}:${
      n.callFrame.lineNumber + 1
    }`
  ).slice(0, top)
) {
  console.log(`${pct(t)}  ${k}`);
}
// Inclusive time of each project function (lib/*), i.e. time with it on the stack.
const incl = new Map<string, number>();
for (const [id, t] of self) {
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const n = byId.get(cur)!;
    const src = source(n.callFrame.url);
    if (!src.startsWith("lib") && !src.startsWith("npm:")) continue;
    const k = `${n.callFrame.functionName || "(anonymous)"} ${src}${
      src.startsWith("lib") ? `:${n.callFrame.lineNumber + 1}` : ""
    }`;
    if (seen.has(k)) continue;
    seen.add(k);
    incl.set(k, (incl.get(k) ?? 0) + t);
  }
}
console.log(`\ntotal time by function (lib/ and npm packages):`);
for (const [k, t] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${pct(t)}  ${k}`);
}
