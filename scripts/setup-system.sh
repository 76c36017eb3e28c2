#!/usr/bin/env bash
# Installs the system packages ivr-auth needs: Asterisk (+ English core sounds),
# SIPp (sip-tester), PostgreSQL, sox. Idempotent; run as root or with sudo.
#
# Debian 12 ships no `asterisk` package. When apt offers no candidate, the
# Debian 11 suites (bullseye, bullseye-security; component main) are added,
# reusing the mirror URIs already configured in this machine's own Debian
# sources, pinned low so that nothing else is pulled from them.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup-system: must run as root or with sudo available" >&2; exit 1
  fi
fi

PACKAGES=(asterisk asterisk-core-sounds-en asterisk-core-sounds-en-gsm sip-tester postgresql postgresql-client sox)

have_all() {
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
  return 0
}

if have_all; then
  echo "setup-system: all packages already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update() { $SUDO apt-get update -qq; APT_UPDATED=1; }

asterisk_candidate() {
  local c
  c=$(apt-cache policy asterisk 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

apt_update
if ! asterisk_candidate; then
  # Collect the URIs of the machine's own Debian archive and security mirrors.
  uris_main=""; uris_sec=""
  shopt -s nullglob
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case "$f" in *ivr-auth-bullseye*) continue;; esac
    if [[ "$f" == *.sources ]]; then
      # deb822: URIs/Suites pairs per stanza
      while IFS='|' read -r uri suites; do
        [ -n "$uri" ] || continue
        for u in $uri; do
          if [[ "$suites" == *-security* ]]; then uris_sec+=" $u"; else uris_main+=" $u"; fi
        done
      done < <(awk 'BEGIN{RS="";FS="\n"} {u="";s="";t=""; for(i=1;i<=NF;i++){ if($i ~ /^URIs:/){sub(/^URIs:[ \t]*/,"",$i);u=$i} if($i ~ /^Suites:/){sub(/^Suites:[ \t]*/,"",$i);s=$i} if($i ~ /^Types:/){t=$i} } if(t ~ /deb( |$)/ && u!="") print u "|" s}' "$f")
    else
      while read -r typ rest; do
        [ "$typ" = "deb" ] || continue
        set -- $rest
        [[ "$1" == \[* ]] && { while [[ "$1" != *\] ]]; do shift; done; shift; }
        uri=$1; suite=${2:-}
        if [[ "$suite" == *-security* ]]; then uris_sec+=" $uri"; else uris_main+=" $uri"; fi
      done < <(grep -E '^[[:space:]]*deb[[:space:]]' "$f")
    fi
  done
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
  } | $SUDO tee /etc/apt/sources.list.d/ivr-auth-bullseye.sources >/dev/null
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
