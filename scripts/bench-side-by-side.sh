#!/usr/bin/env bash
# Runs the ledger, purse sync, SMS webhook and CSC deposit benchmarks side by side, in one run:
# the code at BASE (a commit) and the working tree, each pair back to back. The base is built in a
# worktree of its own under ${TMPDIR:-/tmp} with a target directory of its own.
#   bash scripts/bench-side-by-side.sh BASE [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: bench-side-by-side.sh BASE [ROUNDS]}
rounds=${2:-1}
scratch=${TMPDIR:-/tmp}/offpay-bench-base-$(git rev-parse --short "$base")
[ -d "$scratch/tree" ] || git worktree add --detach "$scratch/tree" "$base" >/dev/null
args=(--warm-up-time 2 --measurement-time 8 --noplot)
run() { # label directory target package bench
  echo "######## $1 $5"
  (cd "$2" && CARGO_TARGET_DIR="$3" cargo bench -q -p "$4" --bench "$5" -- "${args[@]}" 2>&1 |
    grep -E '^[a-z_/0-9 ]+(time:|$)|time:   \[|on-CPU' || true)
}
for _ in $(seq 1 "$rounds"); do
  for pair in "offpay-ledger-bench ledger" "offpay-server purse_sync" "offpay-server sms_webhook" "offpay-server csc_deposit"; do
    set -- $pair
    run before "$scratch/tree" "$scratch/target" "$1" "$2"
    run after . "${CARGO_TARGET_DIR:-target}" "$1" "$2"
  done
done
