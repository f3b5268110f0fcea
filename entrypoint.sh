#!/bin/sh
# The container's wait-and-exit supervisor: runs imgproxy and imgproxy-cache side by side and
# stops the pair as soon as either stops.
#
# - imgproxy listens on INTERNAL_IMGPROXY_BIND (default 127.0.0.1:8081) whatever IMGPROXY_BIND
#   says: IMGPROXY_BIND is the proxy's own address (as in the original program). Every other
#   IMGPROXY_* variable reaches imgproxy unchanged.
# - The proxy is started by bin/start, with the permission flags lib/permissions.ts computes
#   (exactly what `deno task start` runs); this script's arguments go to `deno run` (the
#   Dockerfile passes --cached-only). IMGPROXY_URL defaults to the internal address.
# - When either process exits, the other gets SIGTERM, then SIGKILL after STOP_GRACE_PERIOD_IN_SEC,
#   and the script exits with the status of the one that exited first (128+N when a signal N
#   killed it).
# - SIGTERM or SIGINT to the script goes to both; the proxy finishes the responses in flight and
#   drains its uploads (UPLOAD_DRAIN_TIMEOUT_IN_SEC) within the grace period. The script then
#   exits 0 if both stopped cleanly, else the first non-zero status (the proxy's first). A second
#   signal is passed on too (the proxy then exits without waiting).
# - Both children are always waited for: no zombies, no orphans.
#
# Settings (none starts with IMGPROXY_, so none reaches imgproxy by accident):
#   IMGPROXY_BIN             imgproxy executable (default: imgproxy)
#   INTERNAL_IMGPROXY_BIND   imgproxy's address (default: 127.0.0.1:8081)
#   STOP_GRACE_PERIOD_IN_SEC how long a stopped process may take before SIGKILL
#                            (default: UPLOAD_DRAIN_TIMEOUT_IN_SEC + 10, i.e. 18)
#   DENO                     the deno executable bin/start runs (default: deno)
set -u

root=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

# The proxy's log format (LOG_FORMAT, else imgproxy's IMGPROXY_LOG_FORMAT), so that with json
# every line of the container is one JSON object.
log_format=$(printf '%s' "${LOG_FORMAT:-${IMGPROXY_LOG_FORMAT:-}}" | tr '[:upper:]' '[:lower:]')

log() {
  case $log_format in
  json | gcp)
    # Messages are one line; backslashes and double quotes are all JSON needs escaped here.
    msg=$(printf '%s' "entrypoint: $2" | sed 's/\\/\\\\/g; s/"/\\"/g')
    printf '{"time":"%s","level":"%s","msg":"%s"}\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$1" \
      "$msg" >&2
    ;;
  *) printf '%s %s entrypoint: %s\n' "$(date -u '+%Y/%m/%d %H:%M:%S')" "$1" "$2" >&2 ;;
  esac
}

is_uint() {
  case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac
}

# A whole number without its leading zeros: "09" is 9 to the proxy, but octal (and invalid) to
# shell arithmetic.
decimal() {
  n=${1#"${1%%[!0]*}"}
  printf '%s' "${n:-0}"
}

# A URL with any user:password@ shown as ***@, for the log.
redacted_url() {
  printf '%s\n' "$1" | sed 's#^\([^/]*//\)[^/]*@#\1***@#'
}

imgproxy_bin=${IMGPROXY_BIN:-imgproxy}
internal_bind=${INTERNAL_IMGPROXY_BIND:-127.0.0.1:8081}
drain=${UPLOAD_DRAIN_TIMEOUT_IN_SEC:-8}
if is_uint "$drain"; then drain=$(decimal "$drain"); else drain=8; fi
grace=${STOP_GRACE_PERIOD_IN_SEC:-$((drain + 10))}
if ! is_uint "$grace"; then
  log ERROR "STOP_GRACE_PERIOD_IN_SEC: expected a whole number of seconds, got \"$grace\""
  exit 2
fi
grace=$(decimal "$grace")
if ! command -v "$imgproxy_bin" >/dev/null 2>&1; then
  log ERROR "imgproxy not found: IMGPROXY_BIN=\"$imgproxy_bin\" is not an executable"
  exit 127
fi

# Flags set by the traps; the work happens in the main loop, never inside a trap.
signal=
signals_seen=0
imgproxy_pid=
proxy_pid=
# shellcheck disable=SC2317 # called from the traps below
on_signal() {
  signal=$1
  signals_seen=$((signals_seen + 1))
  if [ "$signals_seen" -gt 1 ]; then
    # A second signal: pass it on at once (the proxy then exits without draining).
    for pid in $imgproxy_pid $proxy_pid; do kill -TERM "$pid" 2>/dev/null; done
  fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
# A child's exit interrupts the `wait` in nap() at once (the shell reaps it and keeps its status).
trap ':' CHLD

alive() {
  kill -0 "$1" 2>/dev/null
}

# Sleeps up to a second; a trapped signal or a child's exit cuts it short.
nap() {
  sleep 1 &
  napper=$!
  wait "$napper" 2>/dev/null
  kill "$napper" 2>/dev/null
  wait "$napper" 2>/dev/null
  return 0
}

# Collects the exit status of each child once it is gone (a pid is waited for only once).
imgproxy_status=
proxy_status=
collect() {
  if [ -z "$imgproxy_status" ] && ! alive "$imgproxy_pid"; then
    wait "$imgproxy_pid"
    imgproxy_status=$?
  fi
  if [ -z "$proxy_status" ] && ! alive "$proxy_pid"; then
    wait "$proxy_pid"
    proxy_status=$?
  fi
}

IMGPROXY_BIND=$internal_bind "$imgproxy_bin" &
imgproxy_pid=$!
log INFO "started imgproxy pid=$imgproxy_pid bin=$imgproxy_bin bind=$internal_bind"

IMGPROXY_URL=${IMGPROXY_URL:-http://$internal_bind}
export IMGPROXY_URL
sh "$root/bin/start" "$@" &
proxy_pid=$!
log INFO "started imgproxy-cache pid=$proxy_pid imgproxy=$(redacted_url "$IMGPROXY_URL")"

first=
while [ -z "$signal" ]; do
  collect
  if [ -n "$imgproxy_status" ]; then
    first=imgproxy
    break
  fi
  if [ -n "$proxy_status" ]; then
    first=proxy
    break
  fi
  nap
done

if [ -z "$first" ]; then
  log INFO "received SIG$signal: stopping imgproxy-cache and imgproxy (grace ${grace}s)"
  kill -TERM "$proxy_pid" "$imgproxy_pid" 2>/dev/null
elif [ "$first" = imgproxy ]; then
  first_status=$imgproxy_status
  log ERROR "imgproxy exited (status $first_status): stopping imgproxy-cache"
  kill -TERM "$proxy_pid" 2>/dev/null
else
  first_status=$proxy_status
  log ERROR "imgproxy-cache exited (status $first_status): stopping imgproxy"
  kill -TERM "$imgproxy_pid" 2>/dev/null
fi

deadline=$(($(date +%s) + grace))
while { alive "$imgproxy_pid" || alive "$proxy_pid"; } && [ "$(date +%s)" -lt "$deadline" ]; do
  nap
done
for pid in $proxy_pid $imgproxy_pid; do
  if alive "$pid"; then
    log WARN "pid=$pid still running after ${grace}s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
done
while [ -z "$imgproxy_status" ] || [ -z "$proxy_status" ]; do
  collect
  [ -n "$imgproxy_status" ] && [ -n "$proxy_status" ] && break
  nap
done
log INFO "stopped: imgproxy-cache status=$proxy_status imgproxy status=$imgproxy_status"

if [ -n "$first" ]; then
  exit "$first_status"
fi
if [ "$proxy_status" -ne 0 ]; then exit "$proxy_status"; fi
exit "$imgproxy_status"
