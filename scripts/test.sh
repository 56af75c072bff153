#!/usr/bin/env bash
# `npm test`: provisions (scripts/setup.sh), picks how tests get NATS, then runs
# the Vitest projects `unit` and `integration` with Node 24.
#
#   npm test [-- <vitest args>]      e.g. npm test -- libs/crypto
#                                         npm test -- --project unit
#
# NATS for integration tests (EKV_TEST_NATS, read by test/src):
#   container  testcontainers with the local image ekv/nats:2.9.10; chosen when
#              CI is set, when asked for, or when a Docker engine is reachable
#              or can be provisioned here (root on Debian)
#   process    nats-server child processes; chosen otherwise
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'test: %s\n' "$*"; }

bash scripts/setup.sh
if [ -x "$root/.tools/node/bin/node" ]; then export PATH="$root/.tools/node/bin:$PATH"; fi

ci=0
case "${CI:-}" in "" | 0 | false) ;; *) ci=1 ;; esac

mode="${EKV_TEST_NATS:-}"
case "$mode" in
  container | process | "") ;;
  *)
    printf 'test: error: EKV_TEST_NATS must be container or process, not %s\n' "$mode" >&2
    exit 2
    ;;
esac
if [ "$ci" -eq 1 ] || [ "$mode" = container ]; then
  bash scripts/setup-docker.sh
  mode=container
  why="${CI:+CI is set}"
  why="${why:-EKV_TEST_NATS=container}"
elif [ "$mode" = process ]; then
  why="EKV_TEST_NATS=process"
elif bash scripts/setup-docker.sh --check; then
  bash scripts/setup-docker.sh
  mode=container
  why="a Docker engine is reachable or was provisioned"
else
  mode=process
  why="no Docker engine is reachable and none can be provisioned here"
fi
export EKV_TEST_NATS="$mode"
if [ "$mode" = container ]; then export TESTCONTAINERS_RYUK_DISABLED=true; fi
say "NATS mode: $mode ($why)"

vitest() { node node_modules/vitest/vitest.mjs run --passWithNoTests "$@"; }

# With an explicit --project, run just that; otherwise unit first, then
# integration, and fail if either failed.
for arg in "$@"; do
  case "$arg" in --project | --project=*) exec node node_modules/vitest/vitest.mjs run --passWithNoTests "$@" ;; esac
done

# The end-to-end project runs the system from its Docker images, so it needs
# container mode (CI always has it; without a Docker engine it is skipped, said so).
projects="unit integration"
if [ "$mode" = container ]; then projects="$projects e2e"; else say "e2e tests skipped: no Docker engine (NATS mode $mode)"; fi

status=0
summary=""
for project in $projects; do
  say "$project tests (EKV_TEST_NATS=$mode)"
  if vitest --project "$project" "$@"; then result=passed; else result=failed; status=1; fi
  summary="$summary${summary:+, }$project $result"
done
say "summary: $summary"
exit "$status"
