#!/usr/bin/env bash
# Installs the system packages ivr-auth needs: Asterisk (+ English core sounds),
# SIPp (sip-tester), PostgreSQL, sox, Chromium (headless, for the
# dashboard's browser test) and baresip (a real softphone for the end-to-end
# tests). Idempotent; run as root or with sudo.
#
# Debian 12 ships no `asterisk` package. When apt offers no candidate, the
# Debian 11 suites (bullseye, bullseye-security; component main) are added,
# reusing the mirror URIs already configured in this machine's own Debian
# sources, pinned low so that nothing else is pulled from them.
set -euo pipefail
# shellcheck source=scripts/apt-lib.sh
source "$(dirname "$0")/apt-lib.sh"
require_root setup-system

PACKAGES=(asterisk asterisk-core-sounds-en asterisk-core-sounds-en-gsm sip-tester baresip-core postgresql postgresql-client sox chromium systemd)
BULLSEYE_FILE=/etc/apt/sources.list.d/ivr-auth-bullseye.sources

if have_all "${PACKAGES[@]}"; then
  echo "setup-system: all packages already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update() { $SUDO apt-get update -qq; APT_UPDATED=1; }

asterisk_candidate() { has_candidate asterisk; }

apt_update
if ! asterisk_candidate; then
  # Collect the URIs of the machine's own Debian archive and security mirrors.
  uris_main=""; uris_sec=""
  while IFS='|' read -r uris suites; do
    for u in $uris; do
      if [[ "$suites" == *-security* ]]; then uris_sec+=" $u"; else uris_main+=" $u"; fi
    done
  done < <(debian_entries "$BULLSEYE_FILE")
  # Keep Debian archive URIs only (a path ending in /debian or /debian-security).
  pick() { for u in $1; do case "$u" in */"$2"|*/"$2"/) echo "${u%/}";; esac; done | sort -u | tr '\n' ' '; }
  main_uris=$(pick "$uris_main" debian)
  sec_uris=$(pick "$uris_sec" debian-security)
  if [ -z "$main_uris" ]; then
    echo "setup-system: apt offers no 'asterisk' package and no Debian mirror was found in the apt sources" >&2
    echo "  to fix: add a Debian archive to /etc/apt/sources.list(.d), or install Asterisk 16+ yourself" >&2
    exit 1
  fi
  {
    echo "# Added by ivr-auth scripts/setup-system.sh: Asterisk from Debian 11."
    echo "Types: deb"
    echo "URIs: $main_uris"
    echo "Suites: bullseye"
    echo "Components: main"
    echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    if [ -n "$sec_uris" ]; then
      echo
      echo "Types: deb"
      echo "URIs: $sec_uris"
      echo "Suites: bullseye-security"
      echo "Components: main"
      echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    fi
  } | $SUDO tee "$BULLSEYE_FILE" >/dev/null
  # Low priority: nothing installed moves to bullseye; only packages that exist
  # nowhere else (asterisk and its own libraries) come from it.
  printf 'Package: *\nPin: release n=bullseye\nPin-Priority: 100\n\nPackage: *\nPin: release n=bullseye-security\nPin-Priority: 100\n' \
    | $SUDO tee /etc/apt/preferences.d/ivr-auth-bullseye >/dev/null
  apt_update
  if ! asterisk_candidate; then
    echo "setup-system: still no 'asterisk' candidate after adding Debian 11 suites" >&2
    echo "  to fix: check that the mirror serves bullseye and bullseye-security, or install Asterisk yourself" >&2
    exit 1
  fi
fi

$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
# Debian's packages start system services; ivr-auth runs its own instances.
for svc in asterisk postgresql; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
echo "setup-system: installed ${PACKAGES[*]}"
