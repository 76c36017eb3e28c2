# Shared by scripts/setup-system.sh and scripts/setup-prompts.sh (sourced,
# not run): root or sudo, package checks, and this machine's own Debian
# apt sources, which both reuse to add suites or components.

# Sets SUDO ("" as root, "sudo" otherwise); exits when neither is possible.
# $1: the calling script's name, for the message.
require_root() {
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "$1: must run as root or with sudo available" >&2; exit 1
    fi
  fi
}

# True when every package named is installed.
have_all() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
  return 0
}

# True when apt offers a version of package $1.
has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

# Prints "URIs|Suites" for each enabled deb entry in the apt sources (deb822
# stanzas and one-line entries alike), skipping the files named in $@ (the
# callers' own additions).
debian_entries() {
  local f skip own
  shopt -s nullglob
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    own=0
    for skip in "$@"; do [ "$f" = "$skip" ] && own=1; done
    [ "$own" = 1 ] && continue
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
