#!/usr/bin/env bash
# Builds the Node base image from this machine's Node 24 binary (no registry
# needed): /usr/local/bin/node plus the libraries ldd lists for it and for
# classic-level's native module, a non-root user ekv (10001:10001) and /tmp.
# Service images add their code and node_modules on top.
#
#   node-base.sh TAG   e.g. node-base.sh ekv/node-base:24
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="${1:?usage: node-base.sh TAG}"

node="$root/.tools/node/bin/node"
[ -x "$node" ] || node="$(command -v node)"
major="$("$node" -p 'process.versions.node.split(".")[0]')"
[ "$major" = "${tag##*:}" ] || {
  echo "node-base.sh: $node is v$major, tag $tag wants ${tag##*:} (run scripts/setup.sh)" >&2
  exit 1
}
native="$root/node_modules/classic-level/prebuilds/linux-x64/classic-level.node"
[ -f "$native" ] || {
  echo "node-base.sh: $native is missing (run scripts/setup.sh)" >&2
  exit 1
}

work="$(mktemp -d /tmp/ekv-image-node.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
"$here/build-rootfs.sh" "$rootfs" --copy "$node" /usr/local/bin/node --libs-of "$native" >/dev/null

mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/home/ekv" "$rootfs/app"
chmod 1777 "$rootfs/tmp"
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
ekv:x:10001:10001:ekv:/home/ekv:/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
ekv:x:10001:
GROUP
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

# Everything is root's except the user's home, whatever user builds the image.
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 --exclude=./home/ekv -cf "$work/image.tar" .
tar -C "$rootfs" --numeric-owner --owner=10001 --group=10001 -rf "$work/image.tar" ./home/ekv
docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  -c 'ENV HOME=/home/ekv' \
  -c 'USER 10001:10001' \
  -c 'WORKDIR /app' \
  -c 'CMD ["node"]' \
  -c "LABEL org.opencontainers.image.title=ekv-node-base ekv.node=$("$node" --version)" \
  "$work/image.tar" "$tag" >/dev/null
