/**
 * The start-up wait for imgproxy's `/health`, over real sockets: it polls until a 200, gives up
 * at its deadline (never before, on the monotonic clock), and ends at once when aborted.
 */
import assert from "node:assert/strict";
import { waitForImgproxy } from "../lib/app.ts";
import { MemoryLogger } from "../lib/log.ts";
import { freePort } from "./support/net_fs.ts";

/** A `/health` that answers `statuses` in turn (the last one from then on). */
function healthServer(statuses: number[]) {
  let requests = 0;
  const first = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    assert.equal(new URL(req.url).pathname, "/health");
    const status = statuses[Math.min(requests++, statuses.length - 1)]!;
    first.resolve();
    return new Response(null, { status });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    firstRequest: first.promise,
    requests: () => requests,
    close: () => server.shutdown(),
  };
}

Deno.test("waitForImgproxy: polls until /health answers 200", async () => {
  const imgproxy = healthServer([503, 503, 200]);
  try {
    const logger = new MemoryLogger();
    assert.equal(await waitForImgproxy(imgproxy.url, 60_000, logger, 5), true);
    assert.equal(imgproxy.requests(), 3);
    assert.equal(logger.find("imgproxy is ready").length, 1);
  } finally {
    await imgproxy.close();
  }
});

Deno.test("waitForImgproxy: false at its deadline, not before (a wall-clock step changes nothing), with the last answer logged", async () => {
  const logger = new MemoryLogger();
  const started = performance.now();
  const url = `http://127.0.0.1:${freePort()}`;
  // The wall clock steps an hour ahead once the wait has begun (NTP, a VM resumed).
  const wallClock = Date.now;
  let reads = 0;
  Date.now = () => wallClock() + (reads++ > 0 ? 3_600_000 : 0);
  try {
    assert.equal(await waitForImgproxy(url, 300, logger, 20), false);
  } finally {
    Date.now = wallClock;
  }
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 299, `gave up after ${elapsed} ms`); // 1 ms: timers count whole ms
  const [line] = logger.find("imgproxy did not become ready in time");
  assert.ok(line?.includes("ERROR"), logger.lines.join("\n"));
  assert.match(line!, /timeoutSec=0\.3 last=/);
});

Deno.test("waitForImgproxy: an abort ends the wait between polls at once", async () => {
  const imgproxy = healthServer([503]);
  try {
    const logger = new MemoryLogger();
    const stop = new AbortController();
    // A minute between polls and ten for the whole wait: only the abort can end it in time.
    const waiting = waitForImgproxy(imgproxy.url, 600_000, logger, 60_000, stop.signal);
    await imgproxy.firstRequest;
    stop.abort();
    const started = performance.now();
    assert.equal(await waiting, false);
    assert.ok(performance.now() - started < 30_000);
    assert.equal(imgproxy.requests(), 1);
    assert.deepEqual(logger.find("did not become ready"), []);
  } finally {
    await imgproxy.close();
  }
});
