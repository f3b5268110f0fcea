/**
 * Writes one 100 KB object with LocalStore into the directory given as the first argument and
 * prints the outcome as JSON: `{"stored":true}` or the error's retryable flag and message, with
 * the names left in the directory. Run by tests under a file-size limit (`ulimit -f`).
 */
import { LocalStore } from "../../lib/store/local.ts";

const dir = Deno.args[0]!;
const store = new LocalStore(dir);
try {
  await store.put("abc", new Uint8Array(100_000), {
    contentType: "image/png",
    cacheControl: null,
    ifAbsent: true,
  });
  console.log(JSON.stringify({ stored: true }));
} catch (err) {
  const e = err as Error & { retryable?: boolean };
  const files = [...Deno.readDirSync(dir)].map((f) => f.name);
  console.log(JSON.stringify({ retryable: e.retryable, message: e.message, files }));
}
