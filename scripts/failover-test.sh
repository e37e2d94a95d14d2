#!/usr/bin/env bash
# Losing the database machine: a pg_auto_failover monitor, a PostgreSQL primary and its
# synchronous standby on loopback ports in a temporary directory; `offpay serve` processes on the
# multi-host URL under load; the primary's machine lost (every process of the node, keeper,
# postmaster and backends, SIGSTOPped then SIGKILLed at once); the standby promoted. The driver is
# crates/cli/tests/failover.rs, which checks that nothing acknowledged is lost, nothing is
# half-applied and the ledger balances, and prints the time to recover and the retryable errors.
#
# Usage: scripts/failover-test.sh [--release] [--default-timeouts] [--keep]
#   --release           build and run offpay with optimisations (a longer first build)
#   --default-timeouts  keep pg_auto_failover's default health checks and demote timeout (about
#                       20 s + 30 s before the standby takes writes) instead of the fast ones below
#   --keep              leave the clusters' directory (logs, data) behind
# Environment: OFFPAY_FAILOVER_SERVERS (offpay processes, default 2), OFFPAY_FAILOVER_LOAD_SECONDS
#   (load kept up after the recovery, default 10), OFFPAY_POSTGRES_BIN (default
#   /usr/lib/postgresql/15/bin), OFFPAY_FAILOVER_CARGO_ARGS (which packages and features cargo
#   builds the test with, default "-p offpay"; scripts/test.sh passes its own so that nothing is
#   built twice), CARGO_TARGET_DIR as usual.
#
# `scripts/failover-test.sh kill-primary` is what the test runs to kill the primary (it reads
# OFFPAY_FAILOVER_STATE, the directory this script made).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_BIN=${OFFPAY_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
CLUSTER_USER=postgres
DATABASE=offpay

# The monitor's failure detection, when not --default-timeouts (pg_auto_failover's defaults in
# brackets): a node is checked every HEALTH_CHECK_PERIOD_MS [5000] and is unhealthy after
# HEALTH_CHECK_MAX_RETRIES [2] failed checks HEALTH_CHECK_RETRY_DELAY_MS [2000] apart and
# UNHEALTHY_TIMEOUT_MS [20000] without a report from its keeper; the promoted standby takes
# writes once PRIMARY_DEMOTE_TIMEOUT_MS [30000] has passed without the old primary confirming it
# stepped down (so that two primaries never take writes at once).
HEALTH_CHECK_PERIOD_MS=1000
HEALTH_CHECK_TIMEOUT_MS=1000
HEALTH_CHECK_MAX_RETRIES=1
HEALTH_CHECK_RETRY_DELAY_MS=500
UNHEALTHY_TIMEOUT_MS=3000
PRIMARY_DEMOTE_TIMEOUT_MS=5000
# Upper bound on each wait for the clusters to reach a state.
STATE_WAIT_SECONDS=120

is_root() { [ "$(id -u)" = 0 ]; }

# Runs a command as the cluster user (PostgreSQL refuses root), with pg_autoctl's files kept in
# the state directory.
as_cluster_user() {
  local environment=(PATH="$PG_BIN:/usr/bin:/bin" PG_CONFIG="$PG_BIN/pg_config"
    XDG_CONFIG_HOME="$STATE/config" XDG_DATA_HOME="$STATE/share" XDG_RUNTIME_DIR="$STATE/run")
  if is_root; then
    runuser -u "$CLUSTER_USER" -- env "${environment[@]}" "$@"
  else
    env "${environment[@]}" "$@"
  fi
}

sql() { # PORT DATABASE SQL
  as_cluster_user psql -X -q -A -t -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}

# Every process under PID, PID included.
process_tree() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END {
      found[root] = 1; changed = 1
      while (changed) {
        changed = 0
        for (pid in parent) if (!(pid in found) && (parent[pid] in found)) { found[pid] = 1; changed = 1 }
      }
      for (pid in found) print pid
    }'
}

kill_tree() { # SIGNAL PID
  local pids
  pids=$(process_tree "$2")
  [ -n "$pids" ] && kill "-$1" $pids 2>/dev/null || true
}

# The node pg_auto_failover has as primary now: "NAME PORT".
current_primary() {
  sql "$(cat "$STATE/monitor.port")" pg_auto_failover \
    "SELECT nodename || ' ' || nodeport FROM pgautofailover.node
      WHERE reportedstate IN ('single', 'primary', 'wait_primary')
        AND goalstate IN ('single', 'primary', 'wait_primary')
      ORDER BY nodeid LIMIT 1"
}

if [ "${1:-}" = kill-primary ]; then
  STATE=${OFFPAY_FAILOVER_STATE:?set by scripts/failover-test.sh}
  read -r name port < <(current_primary)
  root=$(cat "$STATE/$name.pid")
  # Freeze the whole node first so that nothing in it forks or writes between the listing and
  # the kill, then kill every process of it at once, as a machine that loses power.
  kill_tree STOP "$root"
  pids=$(process_tree "$root")
  kill -KILL $pids
  echo "==> killed the primary $name (port $port): $(echo $pids | wc -w) processes, $(date +%T.%N)"
  exit 0
fi

read -r -a cargo_args <<<"${OFFPAY_FAILOVER_CARGO_ARGS:--p offpay}"
release=()
tuned=1
keep=0
for argument in "$@"; do
  case "$argument" in
    --release) release=(--release) ;;
    --default-timeouts) tuned=0 ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--release] [--default-timeouts] [--keep]" >&2; exit 2 ;;
  esac
done

need_apt=()
command -v pg_autoctl >/dev/null || need_apt+=(postgresql-15-auto-failover pg-auto-failover-cli)
[ -x "$PG_BIN/initdb" ] || need_apt+=(postgresql-15)
if [ ${#need_apt[@]} -gt 0 ]; then
  if is_root; then
    echo "==> installing ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing ${need_apt[*]}: install them (as root) first" >&2
    exit 1
  fi
fi

echo "==> building offpay and the failover test"
cargo test "${release[@]}" "${cargo_args[@]}" --test failover --no-run 2>&1 | tail -n 3

STATE=$(mktemp -d /tmp/offpay-failover.XXXXXX)
chmod 755 "$STATE"
mkdir -p "$STATE/config" "$STATE/share" "$STATE/run"
is_root && chown -R "$CLUSTER_USER:" "$STATE"
export OFFPAY_FAILOVER_STATE=$STATE

cleanup() {
  local status=$?
  for file in "$STATE"/*.pid; do
    [ -e "$file" ] && kill_tree TERM "$(cat "$file")"
  done
  sleep 2
  for file in "$STATE"/*.pid; do
    [ -e "$file" ] && kill_tree KILL "$(cat "$file")"
  done
  wait 2>/dev/null || true
  if [ "$keep" = 1 ]; then
    echo "==> kept $STATE"
  else
    rm -rf "$STATE"
  fi
  exit $status
}
trap cleanup EXIT

# Three loopback ports nothing listens on.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && ! grep -qx "$port" "$STATE/ports" 2>/dev/null; then
      echo "$port" >>"$STATE/ports"
      echo "$port"
      return
    fi
  done
}
MONITOR_PORT=$(free_port)
NODE1_PORT=$(free_port)
NODE2_PORT=$(free_port)
echo "$MONITOR_PORT" >"$STATE/monitor.port"
MONITOR_URL="postgres://autoctl_node@127.0.0.1:$MONITOR_PORT/pg_auto_failover?sslmode=disable"

start_node() { # NAME: pg_autoctl run in the background, its pid kept for kill-primary and cleanup
  as_cluster_user setsid pg_autoctl run --pgdata "$STATE/$1" >"$STATE/$1.log" 2>&1 &
  echo $! >"$STATE/$1.pid"
}

wait_for() { # DESCRIPTION COMMAND...: until COMMAND succeeds, at most STATE_WAIT_SECONDS
  local description=$1
  shift
  for _ in $(seq 1 $((STATE_WAIT_SECONDS * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "gave up waiting for $description; logs in $STATE" >&2
  keep=1
  exit 1
}

states() {
  sql "$MONITOR_PORT" pg_auto_failover \
    "SELECT string_agg(nodename || ':' || reportedstate || '/' || goalstate, ' ' ORDER BY nodeid)
       FROM pgautofailover.node"
}
states_are() { [ "$(states)" = "$1" ]; }

echo "==> pg_auto_failover monitor on 127.0.0.1:$MONITOR_PORT ($STATE)"
as_cluster_user pg_autoctl create monitor --pgdata "$STATE/monitor" --pgport "$MONITOR_PORT" \
  --pgctl "$PG_BIN/pg_ctl" --hostname 127.0.0.1 --auth trust --no-ssl >"$STATE/create-monitor.log" 2>&1
as_cluster_user pg_autoctl config set --pgdata "$STATE/monitor" postgresql.listen_addresses 127.0.0.1 >/dev/null
start_node monitor
wait_for "the monitor" sql "$MONITOR_PORT" pg_auto_failover "SELECT 1"
if [ "$tuned" = 1 ]; then
  for setting in "health_check_period = $HEALTH_CHECK_PERIOD_MS" \
    "health_check_timeout = $HEALTH_CHECK_TIMEOUT_MS" \
    "health_check_max_retries = $HEALTH_CHECK_MAX_RETRIES" \
    "health_check_retry_delay = $HEALTH_CHECK_RETRY_DELAY_MS" \
    "node_considered_unhealthy_timeout = $UNHEALTHY_TIMEOUT_MS" \
    "primary_demote_timeout = $PRIMARY_DEMOTE_TIMEOUT_MS"; do
    sql "$MONITOR_PORT" pg_auto_failover "ALTER SYSTEM SET pgautofailover.$setting" >/dev/null
  done
  sql "$MONITOR_PORT" pg_auto_failover "SELECT pg_reload_conf()" >/dev/null
fi

create_node() { # NAME PORT
  as_cluster_user pg_autoctl create postgres --pgdata "$STATE/$1" --pgport "$2" --listen 127.0.0.1 \
    --pgctl "$PG_BIN/pg_ctl" --hostname 127.0.0.1 --name "$1" --dbname "$DATABASE" \
    --monitor "$MONITOR_URL" --auth trust --no-ssl >"$STATE/create-$1.log" 2>&1
  start_node "$1"
}
echo "==> primary node1 on 127.0.0.1:$NODE1_PORT"
create_node node1 "$NODE1_PORT"
wait_for "node1 to run alone" states_are "node1:single/single"
echo "==> standby node2 on 127.0.0.1:$NODE2_PORT"
create_node node2 "$NODE2_PORT"
wait_for "node1 primary with node2 its secondary" states_are "node1:primary/primary node2:secondary/secondary"
standby_names=$(sql "$NODE1_PORT" "$DATABASE" "SHOW synchronous_standby_names")
synchronous_commit=$(sql "$NODE1_PORT" "$DATABASE" "SHOW synchronous_commit")
sync_state=$(sql "$NODE1_PORT" "$DATABASE" "SELECT string_agg(application_name || ' ' || sync_state, ', ') FROM pg_stat_replication")
echo "==> replication: synchronous_standby_names = $standby_names, synchronous_commit = $synchronous_commit, standbys: $sync_state"
if [ -z "$standby_names" ] || [ "$synchronous_commit" != on ] || ! grep -Eq "sync|quorum" <<<"$sync_state"; then
  echo "the standby is not synchronous: an acknowledged commit would not be on both nodes" >&2
  exit 1
fi

export OFFPAY_FAILOVER_TEST=1
export OFFPAY_FAILOVER_DATABASE_URL="postgres://postgres@127.0.0.1:$NODE1_PORT,127.0.0.1:$NODE2_PORT/$DATABASE?target_session_attrs=read-write"
export OFFPAY_FAILOVER_KILL="bash $PWD/scripts/failover-test.sh kill-primary"
export OFFPAY_FAILOVER_REPORT="$STATE/report.json"
echo "==> offpay on $OFFPAY_FAILOVER_DATABASE_URL; load, then the primary's machine lost"
cargo test "${release[@]}" "${cargo_args[@]}" --test failover -- --nocapture 2>&1 | grep -v "^\s*$" | tee "$STATE/test.log" | grep -E "^(==>|failover|primary|test |thread|  left|  right)|panicked|error" || true
if ! grep -q "test result: ok. 1 passed" "$STATE/test.log"; then
  echo "the failover test failed; its output:" >&2
  cat "$STATE/test.log" >&2
  keep=1
  exit 1
fi

echo "==> pg_auto_failover's view (events since the kill)"
as_cluster_user pg_autoctl show events --pgdata "$STATE/monitor" --count 12 | cut -c1-200
as_cluster_user pg_autoctl show state --pgdata "$STATE/monitor"
echo "==> figures"
cat "$OFFPAY_FAILOVER_REPORT"
echo
echo "==> failover test passed"
