#!/usr/bin/env bash
# Builds the Asterisk 22 LTS that the embedded stack runs by default on a host
# whose distribution carries no Asterisk 20 or later (Debian 12): a minimal
# Debian unstable (sid) tree, whose `asterisk` is 22.x and needs sid's glibc,
# entered with chroot(8). Idempotent and cached: a tree that already runs
# `asterisk -V` is left alone (IVR_AUTH_ASTERISK22_REFRESH=1 upgrades it).
# Root or sudo; about 35 s and 97 MB of download from nothing, 440 MB on disk.
#
#   IVR_AUTH_ASTERISK22_ROOT  where the tree goes (default below; the dev kit
#                             looks there when stack.asterisk_root is "auto")
#
# The packages come from the Debian archive this machine's own apt sources
# name, never from a host written here. A snapshot mirror serves sid's
# InRelease past its Valid-Until date, so the host's Acquire:: settings are
# copied into the tree for its apt to accept it as the host's apt does.
set -euo pipefail
# shellcheck source=scripts/apt-lib.sh
source "$(dirname "$0")/apt-lib.sh"
require_root setup-asterisk22

ROOT=${IVR_AUTH_ASTERISK22_ROOT:-/var/lib/ivr-auth-dev/asterisk22}
PACKAGES=(asterisk asterisk-core-sounds-en)

in_root() { $SUDO chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

# A distribution that carries Asterisk 20 or later (Ubuntu 24.04: 20.6) needs
# no tree: with stack.asterisk_root "auto" the stack runs the host's own.
host_major=$(asterisk -V 2>/dev/null | sed -n 's/^Asterisk \([0-9]*\)\..*/\1/p' || true)
if [ -n "$host_major" ] && [ "$host_major" -ge 20 ] && [ "${IVR_AUTH_ASTERISK22_ROOT:-}" = "" ]; then
  echo "setup-asterisk22: the host's Asterisk is $host_major; no tree needed"
  exit 0
fi

if [ -x "$ROOT/usr/sbin/asterisk" ] && [ "${IVR_AUTH_ASTERISK22_REFRESH:-0}" != 1 ]; then
  if version=$(in_root /usr/sbin/asterisk -V 2>/dev/null); then
    echo "setup-asterisk22: $version already in $ROOT"
    exit 0
  fi
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# The machine's own Debian archive (a URI ending in /debian).
mirror=""
while IFS='|' read -r uris _suites; do
  for u in $uris; do
    case "${u%/}" in */debian) mirror="${u%/}"; break 2;; esac
  done
done < <(debian_entries)
if [ -z "$mirror" ]; then
  echo "setup-asterisk22: no Debian archive found in this machine's apt sources" >&2
  echo "  to fix: add one to /etc/apt/sources.list(.d), or set stack.asterisk_root to \"host\"" >&2
  echo "  and run an Asterisk 20 or 22 of your own" >&2
  exit 1
fi

$SUDO mkdir -p "$ROOT"
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
  echo "setup-asterisk22: debootstrap sid into $ROOT"
  $SUDO debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    sid "$ROOT" "$mirror" >/dev/null
fi

# The host's Acquire:: settings (Check-Valid-Until and the like), and no
# service started by a package's maintainer scripts inside the tree.
$SUDO mkdir -p "$ROOT/etc/apt/apt.conf.d"
{
  echo "// Copied by ivr-auth scripts/setup-asterisk22.sh from the host's apt configuration."
  apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|Max-ValidTime|Min-ValidTime|http::Proxy|https::Proxy|Retries) ' || true
} | $SUDO tee "$ROOT/etc/apt/apt.conf.d/99ivr-auth-host" >/dev/null
printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$ROOT/usr/sbin/policy-rc.d" >/dev/null
$SUDO chmod 755 "$ROOT/usr/sbin/policy-rc.d"
echo "deb $mirror sid main" | $SUDO tee "$ROOT/etc/apt/sources.list" >/dev/null
# Name resolution for apt inside the tree.
$SUDO cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
in_root apt-get clean
# Directories the stack binds its own at the same paths (see the dev kit's stack/chroot.py).
$SUDO mkdir -p "$ROOT/tmp" && $SUDO chmod 1777 "$ROOT/tmp"
echo "setup-asterisk22: $(in_root /usr/sbin/asterisk -V) in $ROOT"
