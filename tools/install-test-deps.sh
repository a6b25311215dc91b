#!/usr/bin/env bash
# System packages the tests need that pip cannot install: Debian's headless-capable `chromium`, used by
# tests/test_aim_ui.py to render Aim's own UI. Idempotent and quiet; does nothing when already there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-test-deps: could not install chromium (see above)" >&2
    exit 1
fi
