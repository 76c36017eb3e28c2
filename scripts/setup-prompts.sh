#!/usr/bin/env bash
# Installs the text-to-speech tools that `make prompts` renders the call
# prompts with: Open JTalk + its dictionary + the NIT male voice (Japanese),
# flite (English) and sox. Only needed to regenerate prompts/; the rendered
# WAV files are committed. Idempotent; run as root or with sudo.
#
# The Japanese voice (hts-voice-nitech-jp-atr503-m001) is in Debian's contrib
# component. When apt offers no candidate for it, contrib is added for the
# suites of this machine's own Debian entries (same URIs, same suites, nothing
# else), in a sources file of its own.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup-prompts: must run as root or with sudo available" >&2; exit 1
  fi
fi

VOICE_PACKAGE=hts-voice-nitech-jp-atr503-m001
PACKAGES=(open-jtalk open-jtalk-mecab-naist-jdic "$VOICE_PACKAGE" flite sox)
CONTRIB_FILE=/etc/apt/sources.list.d/ivr-auth-contrib.sources

have_all() {
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
  return 0
}

if have_all; then
  echo "setup-prompts: all packages already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
voice_candidate() {
  local c
  c=$(apt-cache policy "$VOICE_PACKAGE" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

# This release's codename (bookworm on Debian 12); its suites are the ones
# whose names are the codename or start with "<codename>-".
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
codename=${codename:-bookworm}
own_suites() { for s in $1; do case "$s" in "$codename"|"$codename"-*) printf '%s ' "$s";; esac; done; }

# Prints "URIs|Suites" for each Debian entry of this release in the apt
# sources (deb822 stanzas and one-line entries alike), our own file excepted.
debian_entries() {
  shopt -s nullglob
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    [ "$f" = "$CONTRIB_FILE" ] && continue
    if [[ "$f" == *.sources ]]; then
      awk 'BEGIN{RS="";FS="\n"} {u="";s="";t="";e=""; for(i=1;i<=NF;i++){ if($i ~ /^URIs:/){sub(/^URIs:[ \t]*/,"",$i);u=$i} if($i ~ /^Suites:/){sub(/^Suites:[ \t]*/,"",$i);s=$i} if($i ~ /^Types:/){t=$i} if($i ~ /^Enabled:[ \t]*no/){e="no"} } if(t ~ /deb( |$)/ && u!="" && e!="no") print u "|" s}' "$f"
    else
      while read -r typ rest; do
        [ "$typ" = "deb" ] || continue
        # shellcheck disable=SC2086
        set -- $rest
        [[ "$1" == \[* ]] && { while [[ "$1" != *\] ]]; do shift; done; shift; }
        echo "$1|${2:-}"
      done < <(grep -E '^[[:space:]]*deb[[:space:]]' "$f")
    fi
  done
}

# Debian archive URIs only (a path ending in /debian or /debian-security).
debian_uris() { for u in $1; do case "$u" in */debian|*/debian/|*/debian-security|*/debian-security/) printf '%s ' "${u%/}";; esac; done; }

$SUDO apt-get update -qq
if ! voice_candidate; then
  stanzas=""
  while IFS='|' read -r uris suites; do
    uris=$(debian_uris "$uris"); suites=$(own_suites "$suites")
    [ -n "$uris" ] && [ -n "$suites" ] || continue
    [ -n "$stanzas" ] && stanzas+=$'\n'
    stanzas+="Types: deb
URIs: ${uris% }
Suites: ${suites% }
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"
  done < <(debian_entries | sort -u)
  if [ -z "$stanzas" ]; then
    echo "setup-prompts: apt offers no '$VOICE_PACKAGE' and no Debian ($codename) entry was found in the apt sources" >&2
    echo "  to fix: enable the contrib component of your Debian mirror, then run this again" >&2
    exit 1
  fi
  printf '# Added by ivr-auth scripts/setup-prompts.sh: contrib, for the Open JTalk voice.\n%s' "$stanzas" \
    | $SUDO tee "$CONTRIB_FILE" >/dev/null
  $SUDO apt-get update -qq
  if ! voice_candidate; then
    echo "setup-prompts: still no '$VOICE_PACKAGE' candidate after adding contrib ($CONTRIB_FILE)" >&2
    exit 1
  fi
fi

$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "setup-prompts: installed ${PACKAGES[*]}"
