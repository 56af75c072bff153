#!/usr/bin/env bash
# Builds the ekv service image (Dockerfile) from the local base image, with
# the build context's node_modules (`--target context`: the base image has no
# npm). Skips the build when the image's ekv.sources label already matches the
# inputs (sources, manifests, Dockerfile, base image id); --force rebuilds.
#
#   service.sh TAG BASE_IMAGE [--force]   e.g. service.sh ekv/ekv:dev ekv/node-base:24
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="${1:?usage: service.sh TAG BASE_IMAGE [--force]}"
base="${2:?usage: service.sh TAG BASE_IMAGE [--force]}"
force="${3:-}"
cd "$root"

# What goes into the image; node_modules is represented by the lock's install hash.
inputs_hash() {
  {
    docker image inspect --format '{{.Id}}' "$base"
    cat node_modules/.ekv-lock-hash 2>/dev/null || sha256sum package-lock.json
    find Dockerfile .dockerignore package.json package-lock.json docker libs services test/package.json \
      -type f -not -path '*/test/*' -not -path '*/node_modules/*' -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

want="$(inputs_hash)"
have="$(docker image inspect --format '{{ index .Config.Labels "ekv.sources" }}' "$tag" 2>/dev/null || true)"
if [ "$force" != "--force" ] && [ "$have" = "$want" ]; then
  echo "present"
  exit 0
fi
old_id="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
start=$SECONDS
log="$(mktemp /tmp/ekv-image-service.XXXXXX.log)"
if ! docker build --target context --build-arg "BASE_IMAGE=$base" --label "ekv.sources=$want" \
  -t "$tag" . >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "service.sh: docker build failed (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
# The image this one replaced is now untagged: remove it unless a container uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "built in $((SECONDS - start))s"
