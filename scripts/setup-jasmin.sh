#!/usr/bin/env bash
# Installs the SMS gateway tier of the tests: Jasmin 0.11.1 (PyPI) in a venv of
# its own, with Debian's rabbitmq-server and redis-server, which the dev kit
# (ivr_auth_devkit.jasmin) runs as private instances on free loopback ports.
# Idempotent and cached: a venv whose stamp matches is left alone
# (IVR_AUTH_JASMIN_REFRESH=1 rebuilds it). Root or sudo; about 20 s from
# nothing, under a second after that.
#
#   IVR_AUTH_JASMIN_VENV  where the venv goes (default below; the dev kit looks
#                         there unless told otherwise)
#
# Jasmin 0.11.1 loses every receipt mapping of a message sent through it
# (upstream issues #1236 and #1218): its submit_sm_resp handler reads
# `_pdu.response`, the last PDU of a long message's loop, where it means `r`,
# the response in hand. The fix is applied here to the installed file, and
# the script fails when the lines it fixes are not found.
set -euo pipefail
# shellcheck source=scripts/apt-lib.sh
source "$(dirname "$0")/apt-lib.sh"
require_root setup-jasmin

VENV=${IVR_AUTH_JASMIN_VENV:-/var/lib/ivr-auth-dev/jasmin}
JASMIN_VERSION=0.11.1
# Jasmin pins its direct dependencies (~=); Twisted 23.10's own are pinned here
# to versions it is known to import with on Python 3.11, so that a later
# release of one of them cannot break the gateway between two runs.
PINS=(
  "jasmin==$JASMIN_VERSION"
  "zope.interface==8.7"
  "attrs==26.1.0"
  "Automat==25.4.16"
  "incremental==24.11.0"
  "constantly==23.10.4"
  "hyperlink==21.0.0"
)
PACKAGES=(rabbitmq-server redis-server)
PATCH_ID="listeners-r-response-v1"
STAMP="$VENV/.ivr-auth-stamp"
STAMP_TEXT="jasmin=$JASMIN_VERSION patch=$PATCH_ID pins=${PINS[*]}"

stop_services() {
  # Debian's packages start and enable their system services (and Erlang's
  # port mapper on 4369 where systemd runs); the tests run their own
  # instances, and a system broker on 5672/6379 is not what they use.
  for svc in rabbitmq-server redis-server epmd.socket epmd.service; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
}

if ! have_all "${PACKAGES[@]}"; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
  stop_services
  echo "setup-jasmin: installed ${PACKAGES[*]} (their system services stopped and disabled)"
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ] && [ "${IVR_AUTH_JASMIN_REFRESH:-0}" != 1 ] \
  && "$VENV/bin/python" -c 'import jasmin.managers.listeners' 2>/dev/null; then
  echo "setup-jasmin: Jasmin $JASMIN_VERSION already in $VENV"
  exit 0
fi

PYTHON=$(command -v python3.11 || command -v python3)
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup-jasmin: Jasmin $JASMIN_VERSION is run on Python 3.11 here; $PYTHON is $("$PYTHON" -V)" >&2
  exit 1
fi
$SUDO rm -rf "$VENV"
$SUDO mkdir -p "$(dirname "$VENV")"
$SUDO "$PYTHON" -m venv "$VENV"
$SUDO "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"

# The AMQP 0-9-1 specification Jasmin's broker client loads is in its source
# distribution (misc/config/resource), not in the installed package.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$SUDO "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
  -d "$work" "jasmin==$JASMIN_VERSION"
tar -xzf "$work/jasmin-$JASMIN_VERSION.tar.gz" -C "$work" "jasmin-$JASMIN_VERSION/misc/config/resource/amqp0-9-1.xml"
$SUDO mkdir -p "$VENV/etc/resource"
$SUDO cp "$work/jasmin-$JASMIN_VERSION/misc/config/resource/amqp0-9-1.xml" "$VENV/etc/resource/"

listeners=$("$VENV/bin/python" -c 'import jasmin.managers.listeners as m; print(m.__file__)')
# Four occurrences on three lines, all in the DLR built from a submit_sm_resp.
found=$(grep -c '_pdu\.response\.' "$listeners" || true)
if [ "$found" != 3 ]; then
  echo "setup-jasmin: expected 3 lines reading '_pdu.response.' in $listeners, found $found;" >&2
  echo "  Jasmin's receipt-mapping code changed: check upstream issues #1236/#1218 and this script's fix" >&2
  exit 1
fi
$SUDO sed -i 's/_pdu\.response\./r.response./g' "$listeners"
if grep -q '_pdu\.response\.' "$listeners" || [ "$(grep -c 'dlr = DLR(pdu_type=r\.response\.id' "$listeners")" != 2 ]; then
  echo "setup-jasmin: the receipt-mapping fix did not apply to $listeners" >&2
  exit 1
fi
$SUDO find "$(dirname "$listeners")" -name 'listeners*.pyc' -delete

"$VENV/bin/python" -c 'import jasmin, jasmin.managers.listeners, jasmin.routing.router' >/dev/null
echo "$STAMP_TEXT" | $SUDO tee "$STAMP" >/dev/null
echo "setup-jasmin: Jasmin $("$VENV/bin/python" -c 'import jasmin; print(jasmin.get_release())') in $VENV (receipt-mapping fix applied)"
