#!/usr/bin/env bash
# Writes .ci/advisory-db.tar.gz and .ci/advisory-db.source anew from a clone of the RustSec
# advisory database (CI cannot reach it; run this where you can):
#   git clone --depth 1 https://github.com/rustsec/advisory-db /tmp/advisory-db
#   scripts/refresh-advisory-db.sh /tmp/advisory-db
# then run scripts/gates.sh, and commit both files with the advisories the check now reports
# fixed or ignored (with a reason) in deny.toml.
set -euo pipefail
clone="${1:?usage: scripts/refresh-advisory-db.sh PATH_TO_ADVISORY_DB_CLONE}"
cd "$(dirname "$0")/.."
commit=$(git -C "$clone" rev-parse HEAD)
date=$(git -C "$clone" show -s --format=%cI HEAD)
git -C "$clone" archive --format=tar HEAD crates LICENSE.txt README.md | gzip -9n >.ci/advisory-db.tar.gz
sed -i "s/^commit=.*/commit=$commit/; s/^date=.*/date=$date/" .ci/advisory-db.source
echo "advisory snapshot: $commit of $date"
