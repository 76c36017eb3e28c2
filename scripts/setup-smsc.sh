#!/usr/bin/env bash
# Installs the development kit's test SMSC: Node.js and npm from the
# distribution when missing, then the npm `smpp` package pinned in
# devkit/ivr_auth_devkit/smsc/package-lock.json, with `npm ci`, into a
# cached directory. Idempotent: the install is redone only when the lock
# file changed (its hash is kept beside node_modules). Root or sudo.
#
#   IVR_AUTH_SMSC_DIR  where node_modules goes (default below; the dev kit
#                      looks there too)
#
# npm fetches from the registry its own configuration names, never from a
# host written here.
set -euo pipefail
# shellcheck source=scripts/apt-lib.sh
source "$(dirname "$0")/apt-lib.sh"
require_root setup-smsc

SOURCE=$(cd "$(dirname "$0")/../devkit/ivr_auth_devkit/smsc" && pwd)
DIR=${IVR_AUTH_SMSC_DIR:-/var/lib/ivr-auth-dev/smsc}
STAMP="$DIR/package-lock.sha256"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

want=$(sha256sum "$SOURCE/package-lock.json" | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "$DIR/node_modules/smpp/package.json" ]; then
  echo "setup-smsc: smpp $(node -p "require('$DIR/node_modules/smpp/package.json').version") already in $DIR"
  exit 0
fi

$SUDO mkdir -p "$DIR"
$SUDO cp "$SOURCE/package.json" "$SOURCE/package-lock.json" "$DIR/"
# --ignore-scripts: the SMSC's dependencies need no build step, and none runs as root.
(cd "$DIR" && $SUDO npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
echo "$want" | $SUDO tee "$STAMP" >/dev/null
# Readable by whoever runs the tests.
$SUDO chmod -R a+rX "$DIR"
echo "setup-smsc: smpp $(node -p "require('$DIR/node_modules/smpp/package.json').version") in $DIR (node $(node --version))"
