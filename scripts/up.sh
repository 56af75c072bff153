#!/usr/bin/env bash
# `npm run up`: provisions (scripts/setup.sh), then runs the local supervisor
# scripts/up.ts with Node 24, passing the arguments through
# (--fresh, --no-encryption; EKV_NATS_PORT). See CONTRACT §8. It starts NATS
# with the §9 permissions, the keystores, consensus nodes and the admin
# service, waits for a leader and prints `ekv ready leader=<node>`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
if [ -x "$root/.tools/node/bin/node" ]; then export PATH="$root/.tools/node/bin:$PATH"; fi
exec node "$root/scripts/up.ts" "$@"
