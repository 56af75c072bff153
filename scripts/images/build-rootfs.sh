#!/usr/bin/env bash
# Builds a minimal root filesystem in a directory from files of this machine:
# each copied file plus every shared library `ldd` lists for it (and for any
# extra ELF file named with --libs-of), copied at the path ldd reports.
#
#   build-rootfs.sh DIR [--copy SRC DEST]... [--libs-of FILE]...
#
# DEST is a path inside DIR (e.g. /usr/local/bin/node). Fails when ldd reports
# a library as "not found".
set -euo pipefail

die() {
  printf 'build-rootfs: error: %s\n' "$*" >&2
  exit 1
}

[ $# -ge 1 ] || die "usage: build-rootfs.sh DIR [--copy SRC DEST]... [--libs-of FILE]..."
dir="$1"
shift
mkdir -p "$dir"

elves=()
while [ $# -gt 0 ]; do
  case "$1" in
    --copy)
      [ $# -ge 3 ] || die "--copy needs SRC DEST"
      [ -f "$2" ] || die "no such file: $2"
      install -D -m 0755 "$(readlink -f "$2")" "$dir$3"
      elves+=("$2")
      shift 3
      ;;
    --libs-of)
      [ $# -ge 2 ] || die "--libs-of needs FILE"
      [ -f "$2" ] || die "no such file: $2"
      elves+=("$2")
      shift 2
      ;;
    *) die "unknown argument: $1" ;;
  esac
done

# ldd lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
# "/lib64/ld-linux-x86-64.so.2 (0x...)" or "linux-vdso.so.1 (0x...)" (virtual).
libs=()
for elf in "${elves[@]}"; do
  out="$(ldd "$elf" 2>&1)" || die "ldd $elf failed: $out"
  if grep -q 'not found' <<<"$out"; then die "ldd $elf: $(grep 'not found' <<<"$out")"; fi
  if grep -q 'not a dynamic executable\|statically linked' <<<"$out"; then continue; fi
  while read -r lib; do libs+=("$lib"); done < <(
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
  )
done

for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
  install -D -m 0755 "$(readlink -f "$lib")" "$dir$lib"
done
printf '%s\n' "${libs[@]}" | sort -u
