/**
 * Whether `fetch` would send a request through a proxy named in the environment
 * (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, lowercase too), unless `NO_PROXY` (or, when
 * `NO_PROXY` is unset, `no_proxy`) names the host, with the runtime's rules: comma-separated
 * entries; an IP address or a network in CIDR form for IP hosts; `*` for every host name (not
 * an IP address, as the runtime has it); a domain for itself and its subdomains
 * (`.example.com` and `example.com` alike). Connections the program opens itself must not go
 * direct where `fetch` would use the proxy: when in doubt this says proxied.
 */

/** Reads one environment variable; undefined when unset or unreadable. */
export type EnvGet = (name: string) => string | undefined;

const PROXY_VARIABLES = [
  "ALL_PROXY",
  "all_proxy",
  "HTTPS_PROXY",
  "https_proxy",
  "HTTP_PROXY",
  "http_proxy",
];

/** Every variable read here (for the permission flags). */
export const PROXY_ENV = [...PROXY_VARIABLES, "NO_PROXY", "no_proxy"];

/**
 * True when a proxy variable is set (any of them, whatever the URL's scheme: the runtime's own
 * choice between them is left to `fetch`) and `NO_PROXY` does not name `url`'s host.
 */
export function proxiedByEnv(url: URL, get: EnvGet): boolean {
  if (!PROXY_VARIABLES.some((name) => (get(name) ?? "") !== "")) return false;
  // As the runtime reads them: `NO_PROXY` when set, even empty; `no_proxy` only otherwise.
  const noProxy = get("NO_PROXY") ?? get("no_proxy") ?? "";
  return !noProxyMatches(noProxy, url.hostname);
}

/** Whether a `NO_PROXY` list names `host` (a URL's hostname, IPv6 in brackets). */
export function noProxyMatches(list: string, host: string): boolean {
  const h = host.startsWith("[") ? host.slice(1, -1) : host;
  const ip = parseIpv4(h);
  for (const raw of list.split(",")) {
    const entry = raw.trim();
    if (entry === "") continue;
    // As the runtime has it, `*` names every host name, not IP addresses.
    if (entry === "*") {
      if (ip === null && !h.includes(":")) return true;
      continue;
    }
    const cidr = /^([0-9.]+)\/(\d{1,2})$/.exec(entry);
    if (cidr !== null) {
      const net = parseIpv4(cidr[1]!);
      const bits = Number(cidr[2]);
      if (ip !== null && net !== null && bits <= 32) {
        const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
        if (((ip & mask) >>> 0) === ((net & mask) >>> 0)) return true;
      }
      continue;
    }
    if (parseIpv4(entry) !== null || entry.includes(":")) {
      // An address (IPv6 ones compared as written).
      if (entry.toLowerCase() === h.toLowerCase()) return true;
      continue;
    }
    if (ip !== null || h.includes(":")) continue;
    // Compared as written, as the runtime does (a URL's hostname is lowercase).
    const d = entry.startsWith(".") ? entry.slice(1) : entry;
    if (h === d || h.endsWith(`.${d}`)) return true;
  }
  return false;
}

function parseIpv4(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m === null) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}
