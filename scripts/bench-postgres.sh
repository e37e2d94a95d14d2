#!/usr/bin/env bash
# The PostgreSQL server benchmark of issue 16, side by side with pgledger, in one run:
#   1. `offpay bench server` (one transfer per HTTP request between two of ten accounts) against
#      1, 2 and 3 `offpay serve` processes on one new database each, with 1, 8 and 32 clients;
#   2. pgledger's `pgledger_create_transfer` driven by pgbench at the same client counts, when a
#      database holding pgledger exists (see docs/PERFORMANCE.md for how to load one);
#   3. `offpay bench ledger`'s one-transfer-per-transaction baseline on PostgreSQL.
#   bash scripts/bench-postgres.sh [SECONDS]
# Environment: OFFPAY_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432), the server
# holding the scratch databases; OFFPAY_BENCH_PGLEDGER_DB (default pgledger); OFFPAY_BENCH_BIN,
# an offpay binary to measure instead of this tree's release build (an older commit's, to put
# the two side by side); OFFPAY_BENCH_CLIENT_BIN, the offpay binary whose `bench server` drives
# the load (default: the one measured), so that two servers can be driven by the same client;
# OFFPAY_BENCH_CLIENTS (default 1,8,32) and OFFPAY_BENCH_PROCESSES (default "1 2 3"), to measure
# fewer cases for longer.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
server=${OFFPAY_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
pgledger_db=${OFFPAY_BENCH_PGLEDGER_DB:-pgledger}
clients=${OFFPAY_BENCH_CLIENTS:-1,8,32}
if [ -n "${OFFPAY_BENCH_BIN:-}" ]; then
  offpay=$OFFPAY_BENCH_BIN
else
  cargo build -q --release -p offpay
  offpay=$PWD/${CARGO_TARGET_DIR:-target}/release/offpay
fi
client=${OFFPAY_BENCH_CLIENT_BIN:-$offpay}
echo "######## $("$offpay" --version) ($offpay), load from $client"
scratch=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
psql_admin() { psql "$server/postgres" -qtAc "$1"; }

start() { # data-dir database-url log; appends the server's base URL to `bases`
  OFFPAY_LOG=warn "$offpay" serve --listen 127.0.0.1:0 --data-dir "$1" --database-url "$2" \
    >/dev/null 2>"$3" &
  pids+=($!)
  for _ in $(seq 1 600); do
    address=$(grep -o 'listening on http://[0-9.:]*' "$3" | head -1 | sed 's/listening on //' || true)
    if [ -n "$address" ]; then bases+=("$address"); return; fi
    sleep 0.1
  done
  echo "the server did not start: $(cat "$3")" >&2
  exit 1
}

for processes in ${OFFPAY_BENCH_PROCESSES:-1 2 3}; do
  database=offpay_bench_$$_$processes
  psql_admin "DROP DATABASE IF EXISTS $database" && psql_admin "CREATE DATABASE $database"
  url="$server/$database"
  mkdir -p "$scratch/p0"
  bases=()
  start "$scratch/p0" "$url" "$scratch/p0.log"
  for index in $(seq 1 $((processes - 1))); do
    cp -a "$scratch/p0" "$scratch/p$index"
    start "$scratch/p$index" "$url" "$scratch/p$index.log"
  done
  flags=()
  for base in "${bases[@]}"; do flags+=(--server "$base"); done
  echo "######## offpay bench server: $processes process(es), clients $clients, ${seconds} s each"
  "$client" bench server "${flags[@]}" --token-file "$scratch/p0/admin.token" \
    --clients "$clients" --seconds "$seconds"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  rm -rf "$scratch"/p*
  psql_admin "DROP DATABASE $database"
done

if psql "$server/$pgledger_db" -qtAc "SELECT 1 FROM bench_accounts LIMIT 1" >/dev/null 2>&1; then
  cat >"$scratch/transfer.sql" <<'SQL'
\set a random(1, 10)
\set b random(1, 9)
SELECT pgledger_create_transfer((SELECT id FROM bench_accounts WHERE n = :a), (SELECT id FROM bench_accounts WHERE n = 1 + (:a + :b - 1) % 10), 1);
SQL
  for count in ${clients//,/ }; do
    threads=$(( count < 2 ? count : 2 ))
    echo "######## pgledger (pgbench), $count client(s)"
    pgbench -n -f "$scratch/transfer.sql" -c "$count" -j "$threads" -T "$seconds" \
      "$server/$pgledger_db" 2>&1 | grep -E '^tps'
  done
else
  echo "######## pgledger: no database $pgledger_db with bench_accounts; skipped"
fi

database=offpay_bench_$$_ledger
psql_admin "DROP DATABASE IF EXISTS $database" && psql_admin "CREATE DATABASE $database"
echo "######## offpay bench ledger on PostgreSQL (batched, and one transfer per transaction)"
"$offpay" bench ledger --database-url "$server/$database" --transfers 200000 2>&1 | tail -12
psql_admin "DROP DATABASE $database"
