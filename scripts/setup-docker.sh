#!/usr/bin/env bash
# Makes a Docker engine reachable and builds the local images the tests use.
# No registry is reachable from this machine kind, so every image is built
# from files already on it (scripts/images/):
#   ekv/nats:2.9.10     Debian's nats-server + its libraries
#   ekv/node-base:24    Node 24 + its libraries and classic-level's, user ekv
#   ekv/ekv:dev         the service image (Dockerfile, --target context) on
#                       ekv/node-base:24; rebuilt when its inputs changed
# and installs Debian's docker-compose (v1) when missing, for the compose check.
#
#   setup-docker.sh [--rebuild] [--check]
#     --rebuild  rebuild the images even when present
#     --check    exit 0 if an engine is reachable or can be provisioned here
#                (root on Debian), 1 otherwise; changes nothing
#
# When no engine answers and we are root on Debian: installs docker.io if
# dockerd is missing and starts dockerd in the background (log:
# /tmp/ekv-dockerd.log). Idempotent; a second run takes a few seconds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ -x "$root/.tools/node/bin/node" ]; then export PATH="$root/.tools/node/bin:$PATH"; fi

NATS_IMAGE="ekv/nats:2.9.10"
NODE_IMAGE="ekv/node-base:24"
SERVICE_IMAGE="ekv/ekv:dev"
DOCKERD_LOG="${EKV_DOCKERD_LOG:-/tmp/ekv-dockerd.log}"

say() { printf 'setup-docker: %s\n' "$*"; }
die() {
  printf 'setup-docker: error: %s\n' "$*" >&2
  exit 1
}

rebuild=0
check=0
for arg in "$@"; do
  case "$arg" in
    --rebuild) rebuild=1 ;;
    --check) check=1 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

engine_up() { command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; }
can_provision() { [ "$(id -u)" -eq 0 ] && [ -f /etc/debian_version ]; }

if [ "$check" -eq 1 ]; then
  if engine_up || can_provision; then exit 0; else exit 1; fi
fi

# --- engine -------------------------------------------------------------------
if ! engine_up; then
  can_provision || die "no Docker engine is reachable, and it can only be provisioned as root on Debian"
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io (apt)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq docker.io >/tmp/ekv-apt.log 2>&1; then
      say "apt-get install failed; running apt-get update first"
      apt-get update -qq >>/tmp/ekv-apt.log 2>&1 || die "apt-get update failed (see /tmp/ekv-apt.log)"
      apt-get install -y -qq docker.io >>/tmp/ekv-apt.log 2>&1 ||
        die "apt-get install docker.io failed (see /tmp/ekv-apt.log)"
    fi
  fi
  if pgrep -x dockerd >/dev/null 2>&1; then
    say "dockerd is running but not answering yet; waiting"
  else
    say "starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: the engine outlives this script and its terminal.
    setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    if engine_up; then break; fi
    sleep 1
  done
  engine_up || die "dockerd did not answer within 60s; last lines of $DOCKERD_LOG:
$(tail -n 20 "$DOCKERD_LOG" 2>/dev/null)"
fi
say "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) reachable"

# --- docker-compose (v1) ---------------------------------------------------------
# Debian packages Compose v1 only; the e2e suite checks docker-compose.yml with
# it (test/e2e/compose.test.ts). Best effort: without it that test says why.
if ! command -v docker-compose >/dev/null 2>&1 && can_provision; then
  say "installing docker-compose (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq docker-compose >>/tmp/ekv-apt.log 2>&1 ||
    { apt-get update -qq >>/tmp/ekv-apt.log 2>&1 && apt-get install -y -qq docker-compose >>/tmp/ekv-apt.log 2>&1; } ||
    say "warning: apt-get install docker-compose failed (see /tmp/ekv-apt.log)"
fi

# --- images -------------------------------------------------------------------
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

build() {
  local tag="$1" script="$2"
  if [ "$rebuild" -eq 0 ] && have_image "$tag"; then
    say "image $tag present"
    return
  fi
  say "building image $tag"
  bash "$root/scripts/images/$script" "$tag"
  verify "$tag"
}

verify() {
  local tag="$1" out
  case "$tag" in
    "$NATS_IMAGE")
      out="$(docker run --rm "$tag" --version 2>&1)" || die "$tag does not run: $out"
      ;;
    "$NODE_IMAGE")
      out="$(docker run --rm "$tag" node -e "require('node:crypto').randomBytes(8); console.log(process.version)" 2>&1)" ||
        die "$tag does not run: $out"
      # classic-level's native module loads and a LevelDB opens, as user ekv.
      local probe
      probe="$(docker run --rm -v "$root/node_modules:/app/node_modules:ro" "$tag" node -e "
        const { ClassicLevel } = require('classic-level')
        const db = new ClassicLevel('/tmp/db')
        db.put('k', 'v').then(() => db.get('k')).then((v) => db.close().then(() => {
          console.log(require('node:os').userInfo().username + ' leveldb=' + v)
        }))" 2>&1)" || die "$tag cannot load classic-level: $probe"
      out="$out, $probe"
      ;;
  esac
  say "verified $tag: $out"
}

build "$NATS_IMAGE" nats.sh
build "$NODE_IMAGE" node-base.sh

# The service image is rebuilt whenever the sources changed (service.sh keeps
# a hash of its inputs in a label), so the end-to-end suite tests this tree.
force=""
if [ "$rebuild" -eq 1 ]; then force=--force; fi
out="$(bash "$root/scripts/images/service.sh" "$SERVICE_IMAGE" "$NODE_IMAGE" $force)" ||
  die "building $SERVICE_IMAGE failed"
if [ "$out" = present ]; then
  say "image $SERVICE_IMAGE present (sources unchanged)"
else
  say "image $SERVICE_IMAGE $out"
  probe="$(docker run --rm "$SERVICE_IMAGE" ekv --help 2>&1 | head -n 1)" || die "$SERVICE_IMAGE does not run: $probe"
  say "verified $SERVICE_IMAGE: $probe"
fi
