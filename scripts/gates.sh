#!/usr/bin/env bash
# The gates CI runs first (they are quick to fail): formatting, clippy on every target (with and
# without the ledger's conformance feature), rustdoc without warnings, and the dependency audit
# with cargo-deny (advisories from the committed RustSec snapshot, licences, bans, sources) of the
# workspace and of fuzz/. Each step prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."

# The cargo-deny release deny.toml is written for; it names the advisory database's directory.
cargo_deny_version="0.20.2"
advisory_db_dir="advisory-db-3157b0e258782691"

step_started=$SECONDS
step() {
  echo "==> gates: $*"
  step_started=$SECONDS
}
took() { echo "    took $((SECONDS - step_started)) s"; }

step "cargo fmt --check (workspace and fuzz/)"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --all --check
took

step "cargo clippy --workspace --all-targets -D warnings"
cargo clippy --quiet --workspace --all-targets -- -D warnings
took

step "cargo clippy --workspace --all-targets --features offpay-ledger/conformance -D warnings"
cargo clippy --quiet --workspace --all-targets --features offpay-ledger/conformance -- -D warnings
took

step "cargo doc --workspace --no-deps with RUSTDOCFLAGS=-D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --workspace --no-deps
took

step "cargo deny (advisories from the committed snapshot, licences, bans, sources)"
if [ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $cargo_deny_version" ]; then
  echo "    installing cargo-deny $cargo_deny_version"
  cargo install --quiet --locked "cargo-deny@$cargo_deny_version"
fi
# cargo-deny reads an advisory database from a git checkout (it takes the database's age from
# its last commit): unpack the snapshot into one, committed at the snapshot's own date.
snapshot_commit=$(sed -n 's/^commit=//p' .ci/advisory-db.source)
snapshot_date=$(sed -n 's/^date=//p' .ci/advisory-db.source)
db_root=$(mktemp -d)
trap 'rm -rf "$db_root"' EXIT
mkdir -p "$db_root/$advisory_db_dir"
tar -xzf .ci/advisory-db.tar.gz -C "$db_root/$advisory_db_dir"
(
  cd "$db_root/$advisory_db_dir"
  git init --quiet
  git add --all
  GIT_AUTHOR_DATE="$snapshot_date" GIT_COMMITTER_DATE="$snapshot_date" \
    git -c user.name=offpay-ci -c user.email=ci@offpay.invalid -c commit.gpgsign=false \
    commit --quiet --message "RustSec advisory-db at $snapshot_commit"
)
age_days=$(( ($(date +%s) - $(date -d "$snapshot_date" +%s)) / 86400 ))
echo "    advisory snapshot: rustsec/advisory-db $snapshot_commit of $snapshot_date ($age_days days old)"
if [ "$age_days" -gt 180 ]; then
  echo "    WARNING: the advisory snapshot is over 180 days old: refresh it (scripts/refresh-advisory-db.sh)"
fi
# cargo-deny reads every target's dependencies; a build fetches only the host's. Fetch them all
# (from the registry, which CI reaches) so that --offline finds them.
cargo fetch --quiet
cargo fetch --quiet --manifest-path fuzz/Cargo.toml
OFFPAY_ADVISORY_DB_PATH="$db_root" cargo deny --offline --log-level warn check --hide-inclusion-graph
OFFPAY_ADVISORY_DB_PATH="$db_root" cargo deny --offline --log-level warn \
  --manifest-path fuzz/Cargo.toml --config deny.toml check --hide-inclusion-graph
took

echo "==> gates: all passed"
