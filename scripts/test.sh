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

status=0
unit=passed
integration=passed
say "unit tests"
vitest --project unit "$@" || {
  status=1
  unit=failed
}
say "integration tests (EKV_TEST_NATS=$mode)"
vitest --project integration "$@" || {
  status=1
  integration=failed
}
say "summary: unit $unit, integration $integration"
exit "$status"
