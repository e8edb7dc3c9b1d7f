#!/usr/bin/env bash
# Make sure Debian's Prometheus (`prometheus` and `promtool`, 2.42 on Debian 12) is installed for
# the alerting tests: `promtool test rules` on docker/prometheus/alerts.test.yml and a real
# Prometheus scraping a running `tickcast up` (tests/ops/test_prometheus_live.py).
# Quiet and non-interactive; needs root (or sudo without a password) only when it must install.
# The package's service is never started here: the tests run their own Prometheus on a free
# loopback port with a temporary config and data directory.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure-prometheus: promtool/prometheus are missing and installing them needs root;" \
             "run 'sudo apt-get install prometheus' (Debian) and retry" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-prometheus: promtool/prometheus are missing and this system has no apt-get;" \
         "install Prometheus 2.x so that 'promtool' and 'prometheus' are on PATH (the alerting tests need them)" >&2
    exit 1
fi

echo "ensure-prometheus: installing Debian prometheus (one time)..." >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# policy-rc.d 101: the package must not start its own service (no init system in CI; the
# tests start their own server). Removed again afterwards if we created it.
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
fi
status=0
{ $SUDO apt-get update -qq && \
  $SUDO apt-get install -y -qq --no-install-recommends prometheus; } >"$log" 2>&1 || status=$?
if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
if [ "$status" -ne 0 ]; then
    tail -n 20 "$log" >&2
    echo "ensure-prometheus: apt-get could not install prometheus (see above); the alerting tests need promtool" >&2
    exit 1
fi
if ! command -v promtool >/dev/null 2>&1; then
    echo "ensure-prometheus: apt-get finished but promtool is not on PATH" >&2
    exit 1
fi
echo "ensure-prometheus: $(promtool --version 2>&1 | head -n1) installed" >&2
