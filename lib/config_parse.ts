/**
 * Reading the environment: a blank value counts as unset, and every bad value is collected as a
 * problem naming the variable, what it expects and what it got. Values that may hold secrets
 * are never echoed.
 */
import type { BindAddress, EnvReader } from "./config_types.ts";
import type { VariableName } from "./config_variables.ts";

/** Shows a URL for an error message without any user:password part. */
export function redactUrl(value: string): string {
  const start = value.indexOf("//");
  if (start === -1) return value;
  const slash = value.indexOf("/", start + 2);
  const authority = value.slice(start + 2, slash === -1 ? undefined : slash);
  const at = authority.lastIndexOf("@");
  if (at === -1) return value;
  return value.slice(0, start + 2) + "***" + value.slice(start + 2 + at);
}

/** Reads the variables of `VARIABLES`, collecting their problems in `problems`. */
export class Parser {
  readonly problems: string[] = [];
  constructor(private readonly read: EnvReader) {}

  raw(name: VariableName): string | undefined {
    const v = this.read(name);
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  }

  string(name: VariableName, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  int(name: VariableName, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      this.problems.push(
        `${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`,
      );
      return fallback;
    }
    return Number(v);
  }

  bool(name: VariableName, fallback: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const lower = v.toLowerCase();
    if (["1", "t", "true", "yes", "on"].includes(lower)) return true;
    if (["0", "f", "false", "no", "off"].includes(lower)) return false;
    this.problems.push(`${name}: expected true or false, got ${JSON.stringify(v)}`);
    return fallback;
  }

  oneOf<T extends string>(name: VariableName, values: readonly T[], fallback: T): T {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if ((values as readonly string[]).includes(v)) return v as T;
    this.problems.push(`${name}: expected one of ${values.join(", ")}, got ${JSON.stringify(v)}`);
    return fallback;
  }

  /** An http(s) URL without credentials, query or fragment; returned without trailing "/". */
  url(name: VariableName, value: string): string {
    let u: URL;
    try {
      u = new URL(value);
    } catch {
      this.problems.push(
        `${name}: expected an http(s) URL such as http://127.0.0.1:8081, got ${
          JSON.stringify(redactUrl(value))
        }`,
      );
      return value;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      this.problems.push(`${name}: expected an http or https URL, got ${u.protocol} scheme`);
    } else if (u.username !== "" || u.password !== "") {
      this.problems.push(
        `${name}: credentials in the URL are not allowed` +
          (name.startsWith("S3_") ? "; use the AWS_* variables" : ""),
      );
    } else if (u.search !== "" || u.hash !== "") {
      // The query may hold a presigned signature: show only where the URL points.
      this.problems.push(
        `${name}: expected a URL without query or fragment, got ${u.origin}${u.pathname}?...`,
      );
    }
    return u.href.replace(/\/+$/, "");
  }

  /** A regular expression (JavaScript syntax, no flags); null when unset. */
  regex(name: VariableName): RegExp | null {
    const v = this.raw(name);
    if (v === undefined) return null;
    try {
      return new RegExp(v);
    } catch (err) {
      this.problems.push(
        `${name}: expected a regular expression, got ${JSON.stringify(v)} (${
          (err as Error).message
        })`,
      );
      return null;
    }
  }

  bind(name: VariableName, fallback: string): BindAddress {
    const v = this.raw(name) ?? fallback;
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(v);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port > 65535) {
      this.problems.push(
        `${name}: expected host:port, :port or [ipv6]:port with a port up to 65535, got ${
          JSON.stringify(v)
        }`,
      );
      return { hostname: "0.0.0.0", port: 8080 };
    }
    const hostname = m[1] ?? (m[2] === "" ? "0.0.0.0" : m[2]!);
    return { hostname, port };
  }

  /** One lower-case name out of `names`, or the fallback (with a problem) for anything else. */
  named<T>(name: VariableName, names: Record<string, T>, fallback: T): T {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const found = Object.hasOwn(names, v.toLowerCase()) ? names[v.toLowerCase()] : undefined;
    if (found !== undefined) return found;
    this.problems.push(
      `${name}: expected one of ${Object.keys(names).join(", ")}, got ${JSON.stringify(v)}`,
    );
    return fallback;
  }
}
