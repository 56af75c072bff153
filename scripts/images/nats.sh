#!/usr/bin/env bash
# Builds the NATS image from this machine's Debian nats-server (no registry
# needed): /nats-server plus the libraries ldd lists, loaded with docker import.
#
#   nats.sh TAG        e.g. nats.sh ekv/nats:2.9.10
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tag="${1:?usage: nats.sh TAG}"
bin="$(command -v nats-server)" || {
  echo "nats.sh: nats-server is not installed (run scripts/setup.sh)" >&2
  exit 1
}

work="$(mktemp -d /tmp/ekv-image-nats.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$here/build-rootfs.sh" "$work/rootfs" --copy "$bin" /nats-server >/dev/null
mkdir -p "$work/rootfs/tmp" && chmod 1777 "$work/rootfs/tmp"

tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/image.tar" .
docker import \
  -c 'ENTRYPOINT ["/nats-server"]' \
  -c 'EXPOSE 4222 6222 8222' \
  -c "LABEL org.opencontainers.image.title=ekv-nats ekv.source=$bin" \
  "$work/image.tar" "$tag" >/dev/null
