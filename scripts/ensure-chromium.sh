#!/usr/bin/env bash
# Make sure Debian's `chromium` is at /usr/bin/chromium for the browser tests
# (tests/browser drive it with Playwright's executable_path; no browser download at test time).
# Quiet and non-interactive; needs root (or sudo without a password) only when it must install.
set -euo pipefail

BIN=/usr/bin/chromium
if [ -x "$BIN" ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure-chromium: $BIN is missing and installing it needs root;" \
             "run 'sudo apt-get install chromium' (Debian) and retry" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: $BIN is missing and this system has no apt-get;" \
         "install Chromium so that $BIN exists (the browser tests need it)" >&2
    exit 1
fi

echo "ensure-chromium: installing Debian chromium (one time)..." >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "ensure-chromium: apt-get could not install chromium (see above); the browser tests need $BIN" >&2
    exit 1
fi
# Korean glyphs for the ko labels in screenshots; the tests do not need them.
$SUDO apt-get install -y -qq --no-install-recommends fonts-noto-cjk >/dev/null 2>&1 || \
    echo "ensure-chromium: fonts-noto-cjk not installed (Korean text may render as boxes in screenshots)" >&2
if [ ! -x "$BIN" ]; then
    echo "ensure-chromium: apt-get finished but $BIN does not exist" >&2
    exit 1
fi
echo "ensure-chromium: $($BIN --version 2>/dev/null || echo chromium) installed" >&2
