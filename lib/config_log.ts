/**
 * The log settings: `LOG_FORMAT` and `LOG_LEVEL`, following imgproxy's own when unset.
 */
import type { EnvReader } from "./config_types.ts";
import { Parser } from "./config_parse.ts";
import type { Level, LogFormat, LogSettings } from "./log.ts";

/** imgproxy's log formats, as the proxy writes them: its key=value and colour formats as text. */
const IMGPROXY_FORMATS: Record<string, LogFormat> = {
  pretty: "text",
  structured: "text",
  json: "json",
  gcp: "json",
};

const LEVELS: Record<string, Level> = {
  debug: "DEBUG",
  info: "INFO",
  warn: "WARN",
  error: "ERROR",
};

/**
 * `LOG_FORMAT` and `LOG_LEVEL`; unset, they follow imgproxy's `IMGPROXY_LOG_FORMAT` and
 * `IMGPROXY_LOG_LEVEL`, so both programs in one container write alike.
 */
export function parseLog(p: Parser): LogSettings {
  const imgproxyFormat = p.named("IMGPROXY_LOG_FORMAT", IMGPROXY_FORMATS, "text");
  const imgproxyLevel = p.named("IMGPROXY_LOG_LEVEL", LEVELS, "INFO");
  return {
    format: p.named("LOG_FORMAT", { text: "text", json: "json" } as const, imgproxyFormat),
    level: p.named("LOG_LEVEL", LEVELS, imgproxyLevel),
  };
}

/**
 * The log settings alone, leniently (a bad value counts as unset): to write the configuration's
 * own problems in the format the operator asked for. {@linkcode loadConfig} reports bad values.
 */
export function logSettings(read: EnvReader): LogSettings {
  return parseLog(new Parser(read));
}
