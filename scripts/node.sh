#!/usr/bin/env bash
# Runs the project's Node (24, provisioned by setup.sh into .tools/node when the
# machine's node is older than 22) with the given arguments.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$root/.tools/node/bin/node" ]; then export PATH="$root/.tools/node/bin:$PATH"; fi
exec node "$@"
