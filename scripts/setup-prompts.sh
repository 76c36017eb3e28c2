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
# shellcheck source=scripts/apt-lib.sh
source "$(dirname "$0")/apt-lib.sh"
require_root setup-prompts

VOICE_PACKAGE=hts-voice-nitech-jp-atr503-m001
PACKAGES=(open-jtalk open-jtalk-mecab-naist-jdic "$VOICE_PACKAGE" flite sox)
CONTRIB_FILE=/etc/apt/sources.list.d/ivr-auth-contrib.sources

if have_all "${PACKAGES[@]}"; then
  echo "setup-prompts: all packages already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
voice_candidate() { has_candidate "$VOICE_PACKAGE"; }

# This release's codename (bookworm on Debian 12); its suites are the ones
# whose names are the codename or start with "<codename>-".
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
codename=${codename:-bookworm}
own_suites() { for s in $1; do case "$s" in "$codename"|"$codename"-*) printf '%s ' "$s";; esac; done; }

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
  done < <(debian_entries "$CONTRIB_FILE" | sort -u)
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
