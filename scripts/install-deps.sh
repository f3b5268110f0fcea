#!/bin/sh
# Installs what CI and the end-to-end suite need on a fresh Debian machine, reusing whatever is
# already there (so a second run takes about a second):
#   - Deno (from npm, the only registry that ships it to our machines),
#   - versitygw (S3 server for the conditional-write and end-to-end suites, via `go install`;
#     without a recent Go the Go toolchain is fetched as a module first, ~65 MB),
#   - imgproxy, built from the source named by IMGPROXY_SRC (a tarball or directory; Debian's
#     libvips-dev and pkg-config; ~3-4 min the first time on 2 cores, cached after that),
#   - moto (S3 server with the bucket lifecycle API, which versitygw lacks: e2e/lifecycle_test.ts;
#     the Python package `moto[server]` into ~/.cache/imgproxy-cache/moto-venv, about 30 s),
#   - shellcheck (Debian package; lints entrypoint.sh, bin/start and these scripts),
#   - nginx (Debian package; the end-to-end suite runs the documented nginx recipe),
#   - an /etc/hosts entry for e2e-images.s3.localhost (virtual-hosted S3; root only),
#   - the npm dependencies in Deno's cache (`deno install`, and the tests' own packages from
#     tests/deno.lock), so tests need no registry later.
# Without IMGPROXY_SRC, imgproxy is optional: the end-to-end suite uses it when found
# (IMGPROXY_BIN when set, else PATH, GOBIN or ~/go/bin) and a stand-in otherwise, and says which
# (unless E2E_EXPECT_IMGPROXY demands a real one).
#
#   IMGPROXY_SRC=path/to/imgproxy-4.0.12-src.tar.gz sh scripts/install-deps.sh
#
# Versions are pinned here; the Dockerfile's DENO_VERSION must match (tests/dockerfile_test.ts).
set -eu

DENO_VERSION=2.9.6
VERSITYGW_VERSION=v1.7.0
MOTO_VERSION=5.2.5
GOBIN=${GOBIN:-${HOME:-/root}/go/bin}
export GOBIN

root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
cache=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/imgproxy-cache
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

# Go ------------------------------------------------------------------------------------------
# versitygw needs Go >= 1.25 and imgproxy 4 needs Go >= 1.26.5, newer than Debian's golang-go
# (1.19). Without a recent enough Go, the toolchain itself is fetched as the module
# golang.org/toolchain through whatever module proxy the installed Go is configured with
# (`go env GOPROXY`), which is what GOTOOLCHAIN does in newer Go versions.
GO_TOOLCHAIN=go1.26.8

go_is_recent() { # go binary, minimum "1.MINOR.PATCH"
  have=$("$1" env GOVERSION 2>/dev/null | sed -n 's/^go\([0-9][0-9.]*\).*/\1/p')
  [ -n "$have" ] || return 1
  [ "$(printf '%s\n%s\n' "$2" "$have" | sort -t. -k1,1n -k2,2n -k3,3n | head -n 1)" = "$2" ]
}

# Prints a go binary of at least version $1, fetching GO_TOOLCHAIN into the cache if needed.
recent_go() {
  if command -v go >/dev/null 2>&1 && go_is_recent go "$1"; then
    command -v go
    return
  fi
  dir=$cache/$GO_TOOLCHAIN
  if [ ! -x "$dir/bin/go" ] || ! go_is_recent "$dir/bin/go" "$1"; then
    case $(uname -m) in
      x86_64) arch=amd64 ;;
      aarch64 | arm64) arch=arm64 ;;
      *) log "no Go toolchain for $(uname -m): install Go >= $1"; exit 1 ;;
    esac
    command -v go >/dev/null 2>&1 || apt_install golang-go ca-certificates >&2
    module=golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-$arch
    log "fetching $module through $(go env GOPROXY) (about 65 MB)"
    # Outside any module, so that no go.mod around the caller's directory matters.
    src=$(cd / && GOFLAGS=-mod=mod go mod download -json "$module" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
    if [ -z "$src" ] || [ ! -d "$src" ]; then log "could not fetch $module"; exit 1; fi
    mkdir -p "$cache"
    rm -rf "$dir" "$dir.tmp"
    cp -R "$src" "$dir.tmp"
    # The module cache is read-only and module zips keep no file modes.
    chmod -R u+w "$dir.tmp"
    chmod +x "$dir.tmp/bin/"* "$dir.tmp/pkg/tool/"*/*
    mv "$dir.tmp" "$dir"
  fi
  printf '%s\n' "$dir/bin/go"
}

# versitygw -------------------------------------------------------------------------------------
if ! command -v versitygw >/dev/null 2>&1; then
  go=$(recent_go 1.25.0)
  log "installing versitygw $VERSITYGW_VERSION into $GOBIN with $("$go" env GOVERSION)"
  GOTOOLCHAIN=local "$go" install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi

# imgproxy --------------------------------------------------------------------------------------
# Built from the source given in IMGPROXY_SRC (a release's source tarball or an unpacked source
# directory): the Go module proxy refuses the imgproxy module, so `go install` cannot get it.
# The binary is cached under the sha256 of the source, the Go version and the libvips version,
# so a second run reuses it, and linked into GOBIN as `imgproxy`, where the end-to-end suite
# finds it. Without IMGPROXY_SRC, an imgproxy already installed is used as it is.
source_sha256() {
  if [ -d "$1" ]; then
    (cd "$1" && find . -type f ! -path './.git/*' | LC_ALL=C sort | xargs -d '\n' sha256sum) |
      sha256sum | cut -d' ' -f1
  else
    sha256sum <"$1" | cut -d' ' -f1
  fi
}

build_imgproxy() {
  src=$1
  [ -e "$src" ] || { log "IMGPROXY_SRC=$src does not exist"; exit 1; }
  pkg-config --exists vips 2>/dev/null || apt_install libvips-dev pkg-config >&2
  go=$(recent_go 1.26.5)
  key=$(source_sha256 "$src")-$("$go" env GOVERSION)-vips$(pkg-config --modversion vips)
  out=$cache/imgproxy/$key
  if [ -x "$out/imgproxy" ] && "$out/imgproxy" version >/dev/null 2>&1; then
    log "imgproxy $("$out/imgproxy" version) from $src: cached in $out"
  else
    log "building imgproxy from $src with $("$go" env GOVERSION) and libvips $(pkg-config --modversion vips)"
    work=$(mktemp -d)
    if [ -d "$src" ]; then
      cp -R "$src/." "$work/src"
    else
      mkdir "$work/src"
      tar xzf "$src" -C "$work/src" --strip-components=1
    fi
    [ -f "$work/src/go.mod" ] || { log "$src holds no go.mod at its top"; exit 1; }
    started=$(date +%s)
    (cd "$work/src" && CGO_ENABLED=1 GOTOOLCHAIN=local "$go" build -trimpath -o "$work/imgproxy" ./cli)
    mkdir -p "$out"
    mv "$work/imgproxy" "$out/imgproxy"
    rm -rf "$work"
    log "built imgproxy $("$out/imgproxy" version) in $(($(date +%s) - started)) s into $out"
  fi
  mkdir -p "$GOBIN"
  ln -sf "$out/imgproxy" "$GOBIN/imgproxy"
}

if [ -n "${IMGPROXY_SRC:-}" ]; then build_imgproxy "$IMGPROXY_SRC"; fi

# moto ------------------------------------------------------------------------------------------
# In a virtualenv of its own: Debian's python3 refuses `pip install` into the system (PEP 668).
moto_venv=$cache/moto-venv
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

# nginx (Debian package; e2e/nginx_recipe_test.ts runs the documented nginx recipe) -------------
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx

# A name for virtual-hosted S3 -------------------------------------------------------------------
# The end-to-end suite also runs versitygw with virtual-hosted addressing, where the bucket
# e2e-images is the host e2e-images.s3.localhost. Names under localhost are loopback (RFC 6761),
# but glibc's resolver does not resolve them by itself: a hosts entry does.
e2e_s3_host=e2e-images.s3.localhost
if ! getent hosts "$e2e_s3_host" >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    printf '127.0.0.1 %s\n' "$e2e_s3_host" >>/etc/hosts
    log "added $e2e_s3_host to /etc/hosts (virtual-hosted S3 in the end-to-end suite)"
  else
    log "the end-to-end suite needs '127.0.0.1 $e2e_s3_host' in /etc/hosts: add it as root"
  fi
fi

# npm dependencies into Deno's cache --------------------------------------------------------------
# deno.lock holds what the proxy runs; the test and bench tasks lock their own packages (s3rver,
# parsers) in tests/deno.lock, so cache those with that lockfile.
(cd "$root" && deno install --quiet &&
  deno cache --quiet --lock=tests/deno.lock tests/*_test.ts e2e/*_test.ts bench/*.ts)

log "ready: $(deno --version | head -n 1), versitygw at $(command -v versitygw)," \
  "$(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
# PATH starts with GOBIN here: where the suite looks too.
if imgproxy=$(command -v "${IMGPROXY_BIN:-imgproxy}" 2>/dev/null); then
  log "imgproxy: $imgproxy ($("$imgproxy" version 2>/dev/null || echo unknown version))"
else
  log "imgproxy: not installed; the end-to-end suite will use its stand-in"
fi
