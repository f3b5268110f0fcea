/**
 * An S3 error answer's body is read up to a bound: a store that answers an error with an
 * endless body gets its error classified, and the rest of the body is left unread.
 */
import assert from "node:assert/strict";
import { S3Client } from "@aws-sdk/client-s3";
import { loadConfig, type S3StoreConfig } from "../lib/config.ts";
import { s3ClientConfig, S3Store } from "../lib/store/s3.ts";
import { errorBodyText } from "../lib/store/s3_request.ts";
import { StoreError } from "../lib/store/store.ts";
import { within } from "./support/within.ts";

const ERROR_XML = '<?xml version="1.0"?><Error><Code>AccessDenied</Code>' +
  "<Message>Access Denied</Message></Error>";

Deno.test("errorBodyText: a short body whole, a long one cut at the bound, none as empty", async () => {
  assert.equal(await errorBodyText(new Response("abc")), "abc");
  assert.equal(await errorBodyText(new Response("x".repeat(100)), 10), "x".repeat(10));
  assert.equal(await errorBodyText(new Response(null)), "");
  // A bound falling inside a chunk, after several chunks.
  const parts = ["aaaa", "bbbb", "cccc"];
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      const p = parts.shift();
      if (p === undefined) c.close();
      else c.enqueue(new TextEncoder().encode(p));
    },
  });
  assert.equal(await errorBodyText(new Response(body), 6), "aaaabb");
});

Deno.test("S3: an error answer with an endless body is classified, and its body left unread", async () => {
  let served = 0;
  let cancelled!: () => void;
  const gone = new Promise<void>((resolve) => cancelled = resolve);
  const chunk = new TextEncoder().encode(" ".repeat(65536));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    let first = true;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        served++;
        c.enqueue(first ? new TextEncoder().encode(ERROR_XML) : chunk);
        first = false;
      },
      cancel() {
        cancelled();
      },
    });
    return new Response(body, { status: 403, headers: { "content-type": "application/xml" } });
  });
  const env: Record<string, string> = {
    S3_BUCKET: "bkt",
    S3_ENDPOINT: `http://127.0.0.1:${server.addr.port}`,
    S3_REGION: "us-east-1",
    IMGPROXY_URL: "http://i:1",
  };
  const config = loadConfig((n) => env[n]).store as S3StoreConfig;
  const client = new S3Client({
    ...s3ClientConfig(config),
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
  });
  try {
    const err = await within(
      "the GET's error",
      new S3Store(config, client).get("k").then(() => null, (e: unknown) => e),
    );
    assert.ok(err instanceof StoreError, String(err));
    assert.equal(err.code, "AccessDenied");
    assert.equal(err.retryable, false);
    await within("the store's body cancelled", gone);
    // The bound (64 KiB) and the runtime's read-ahead, not the endless body.
    assert.ok(served < 64, `${served} chunks served`);
  } finally {
    client.destroy();
    await server.shutdown();
  }
});
