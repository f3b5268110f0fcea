#!/bin/sh
# Installs what CI and the end-to-end suite need on a fresh Debian machine, reusing whatever is
# already there (so a second run takes about a second):
#   - Deno (from npm, the only registry that ships it to our machines),
#   - versitygw (S3 server for the conditional-write and end-to-end suites, via `go install`;
#     without Go >= 1.25 the Go toolchain is fetched from the Go module proxy first, ~65 MB),
#   - moto (S3 server with the bucket lifecycle API, which versitygw lacks: e2e/lifecycle_test.ts;
#     `moto[server]` from PyPI into ~/.cache/imgproxy-cache/moto-venv, about 30 s),
#   - shellcheck (Debian package; lints entrypoint.sh, bin/start and these scripts),
#   - the npm dependencies in Deno's cache (`deno install`), so tests need no registry later.
# imgproxy itself is optional: the end-to-end suite uses it when found (IMGPROXY_BIN, PATH or
# /opt/imgproxy/bin/imgproxy) and a stand-in otherwise, and says which.
#
# Versions are pinned here; the Dockerfile's DENO_VERSION must match (tests/dockerfile_test.ts).
set -eu

DENO_VERSION=2.9.6
VERSITYGW_VERSION=v1.7.0
MOTO_VERSION=5.2.5
GOBIN=${GOBIN:-${HOME:-/root}/go/bin}
export GOBIN

root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
npm_bin=$(npm prefix -g 2>/dev/null || true)/bin
PATH=$GOBIN:/usr/local/go/bin:$npm_bin:$PATH
export PATH

log() { printf 'install-deps: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=false
apt_install() {
  if [ "$apt_updated" = false ]; then
    as_root apt-get update -qq
    apt_updated=true
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# Deno ------------------------------------------------------------------------------------------
if command -v deno >/dev/null 2>&1; then
  have=$(deno --version | sed -n 's/^deno \([0-9.]*\).*/\1/p')
  if [ "$have" != "$DENO_VERSION" ]; then
    log "deno $have found (the project pins $DENO_VERSION; keeping it)"
  fi
else
  command -v npm >/dev/null 2>&1 || apt_install npm
  log "installing deno $DENO_VERSION from npm"
  if [ "$(id -u)" -eq 0 ] || [ -w "$(npm prefix -g)" ]; then
    npm install -g --no-fund --no-audit "deno@$DENO_VERSION"
    npm_bin=$(npm prefix -g)/bin
  else
    # Not root and the global prefix is not ours: install under the user's own prefix.
    npm install -g --no-fund --no-audit --prefix "${HOME:-/root}/.local" "deno@$DENO_VERSION"
    npm_bin=${HOME:-/root}/.local/bin
    log "deno is in $npm_bin: add it to PATH"
  fi
  PATH=$npm_bin:$PATH
fi
command -v deno >/dev/null 2>&1 || { log "deno is still not on PATH"; exit 1; }

# versitygw -------------------------------------------------------------------------------------
# It needs Go >= 1.25 to build, newer than Debian's golang. Without one, the Go toolchain itself
# is fetched from the Go module proxy (what GOTOOLCHAIN does) into the cache.
GO_TOOLCHAIN=go1.25.5

go_is_recent() {
  v=$("$1" env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
  [ -n "$v" ] && [ "$v" -ge 25 ]
}

fetch_go() {
  dir=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/imgproxy-cache/$GO_TOOLCHAIN
  if [ ! -x "$dir/bin/go" ]; then
    case $(uname -m) in
      x86_64) arch=amd64 ;;
      aarch64 | arm64) arch=arm64 ;;
      *) log "no Go toolchain for $(uname -m): install Go >= 1.25 (https://go.dev/dl/)"; exit 1 ;;
    esac
    proxy=$(printf '%s' "${GOPROXY:-https://proxy.golang.org}" | cut -d, -f1)
    [ "$proxy" = direct ] || [ "$proxy" = off ] && proxy=https://proxy.golang.org
    zip=golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN.linux-$arch.zip
    log "fetching Go $GO_TOOLCHAIN from $proxy (about 65 MB)"
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
    tmp=$(mktemp -d)
    curl -fsSL -o "$tmp/go.zip" "$proxy/$zip"
    command -v unzip >/dev/null 2>&1 || apt_install unzip
    unzip -q "$tmp/go.zip" -d "$tmp"
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir"
    mv "$tmp/golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-$arch" "$dir"
    rm -rf "$tmp"
    # Module zips keep no file modes.
    chmod +x "$dir/bin/"* "$dir/pkg/tool/"*/*
  fi
  printf '%s\n' "$dir/bin/go"
}

if command -v versitygw >/dev/null 2>&1; then
  :
else
  go=go
  if ! command -v go >/dev/null 2>&1 || ! go_is_recent go; then go=$(fetch_go); fi
  log "installing versitygw $VERSITYGW_VERSION into $GOBIN with $("$go" env GOVERSION)"
  GOTOOLCHAIN=local "$go" install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi

# moto ------------------------------------------------------------------------------------------
# In a virtualenv of its own: Debian's python3 refuses `pip install` into the system (PEP 668).
moto_venv=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/imgproxy-cache/moto-venv
if [ ! -x "$moto_venv/bin/moto_server" ]; then
  log "installing moto $MOTO_VERSION from PyPI into $moto_venv"
  python3 -m venv "$moto_venv" 2>/dev/null || {
    apt_install python3-venv
    python3 -m venv "$moto_venv"
  }
  "$moto_venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# The linter (ShellCheck) ------------------------------------------------------------------------------------
command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck

# npm dependencies into Deno's cache --------------------------------------------------------------
(cd "$root" && deno install --quiet)

log "ready: $(deno --version | head -n 1), versitygw at $(command -v versitygw)," \
  "$(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
if imgproxy=$(command -v "${IMGPROXY_BIN:-imgproxy}" 2>/dev/null) ||
  { [ -x /opt/imgproxy/bin/imgproxy ] && imgproxy=/opt/imgproxy/bin/imgproxy; }; then
  log "imgproxy: $imgproxy ($("$imgproxy" version 2>/dev/null || echo unknown version))"
else
  log "imgproxy: not installed; the end-to-end suite will use its stand-in"
fi
