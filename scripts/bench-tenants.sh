#!/usr/bin/env bash
# Many-tenants benchmark: one daemon with N sources, each polling a
# simulated tenant every 30 s (lookback 1 min, a low insert rate), into one
# file sink that writes a file per source. Several `auditfwd simulate`
# processes stand behind the sources (one per PER_SIM sources; a simulator
# is one tenant, so the sources sharing it each keep their own cursor).
#
# The daemon runs once to create N cursors, is stopped, and started again.
# Printed: the time from the second start until every source has fetched its
# first page (counted on /metrics), then at rest: RSS in total and per
# tenant, open file descriptors, and CPU per tenant (utime + stime over
# CPU_WINDOW seconds).
#
#   scripts/bench-tenants.sh 500
#   CPU_WINDOW=30 PER_SIM=1000 scripts/bench-tenants.sh 5000
#   BIN=/tmp/auditfwd-old scripts/bench-tenants.sh 500   # another build
#
# Goals (issue "thousands of tenants in one process"): <= 40 kB RSS per
# tenant, descriptors O(1) plus what is really open, start <= 5 s with 5,000
# cursors on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500}
PER_SIM=${PER_SIM:-500}
CPU_WINDOW=${CPU_WINDOW:-60}
KEEP=${KEEP:-}

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin auditfwd
fi
bin=${BIN:-$PWD/target/release/auditfwd}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -z "$KEEP" ]; then rm -rf "$dir"; else echo "kept $dir"; fi
}
trap cleanup EXIT

sims=$(( (N + PER_SIM - 1) / PER_SIM ))
ports=()
for i in $(seq 1 "$sims"); do
  port=$(free_port)
  "$bin" simulate --port "$port" --backlog 0 --insert-rate 0.1 --seed "$i" \
    > "$dir/sim$i.log" 2>&1 &
  pids+=($!)
  ports+=("$port")
done
for port in "${ports[@]}"; do
  until curl -sf "http://127.0.0.1:$port/_sim/stats" > /dev/null 2>&1; do sleep 0.2; done
done

mport=$(free_port)
{
  cat <<EOF
[state]
dir = "$dir/state"

[telemetry]
listen = "127.0.0.1:$mport"
log_level = "warn"

[[sink]]
name = "files"
type = "file"
path = "$dir/out/{source}.jsonl"
EOF
  for i in $(seq 1 "$N"); do
    port=${ports[$(( (i - 1) / PER_SIM ))]}
    cat <<EOF

[[source]]
name = "t$i"
base_url = "http://127.0.0.1:$port"
api_key = "sim-key"
allow_http = true
start_at = "now"
poll_interval = "30s"
lookback = "1m"
EOF
  done
} > "$dir/auditfwd.toml"

# Sources that fetched at least one page since this daemon started (every
# source has the series from its start, at 0).
polled() {
  curl -sf "http://127.0.0.1:$mport/metrics" 2>/dev/null \
    | grep '^auditfwd_pages_fetched_total{' | grep -vc ' 0$' || true
}

# Starts the daemon; sets $fwd and $elapsed (seconds until every source
# polled once).
start_daemon() {
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" run -c "$dir/auditfwd.toml" >> "$dir/auditfwd.log" 2>&1 &
  fwd=$!
  pids+=("$fwd")
  until [ "$(polled)" -ge "$N" ]; do
    if ! kill -0 "$fwd" 2>/dev/null; then
      echo "the daemon exited; log:" >&2; tail -20 "$dir/auditfwd.log" >&2; exit 1
    fi
    sleep 0.05
  done
  t1=$(date +%s.%N)
  elapsed=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
}

start_daemon
first=$elapsed
kill -TERM "$fwd"; wait "$fwd" || true
cursors=$(ls "$dir/state" | grep -c '\.state\.json$' || true)
start_daemon
again=$elapsed

sleep 5
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$fwd/status")
fds=$(ls "/proc/$fwd/fd" | wc -l)
# What the descriptors are: sockets, output files, state files, the rest.
fd_kinds=$(for f in /proc/$fwd/fd/*; do readlink "$f" 2>/dev/null; done \
  | sed -e "s|^$dir/out/.*|output file|" -e "s|^$dir/state/.*|state file|" \
        -e 's|^socket:.*|socket|' -e 's|^pipe:.*|pipe|' -e 's|^anon_inode:\(.*\)|\1|' \
  | sort | uniq -c | sort -rn | awk '{c=$1; $1=""; printf "%s%s %s", sep, c, substr($0,2); sep=", "}')
# Sockets by TCP state (ESTABLISHED, TIME_WAIT does not hold an fd).
tcp_est=$(ss -tnp state established 2>/dev/null | grep -c "pid=$fwd," || true)
threads=$(awk '/^Threads/ {print $2}' "/proc/$fwd/status")
ticks() { awk '{print $14 + $15}' "/proc/$fwd/stat"; }
hz=$(getconf CLK_TCK)
c0=$(ticks); sleep "$CPU_WINDOW"; c1=$(ticks)
rss_kb2=$(awk '/^VmRSS/ {print $2}' "/proc/$fwd/status")
events=$(cat "$dir"/out/*.jsonl 2>/dev/null | wc -l)

python3 - "$N" "$first" "$cursors" "$again" "$rss_kb" "$rss_kb2" "$fds" "$threads" "$c0" "$c1" "$hz" "$CPU_WINDOW" "$events" "$fd_kinds" "$tcp_est" <<'PY'
import sys
n, first, cursors, again, rss, rss2, fds, threads, c0, c1, hz, window, events, fd_kinds, tcp_est = sys.argv[1:]
n = int(n); rss = int(rss); rss2 = int(rss2); window = float(window)
cpu = (int(c1) - int(c0)) / int(hz) / window * 100
rows = [
    ("tenants", f"{n}"),
    ("first start, all polled", f"{first} s"),
    ("cursors on disk", cursors),
    ("restart, all polled", f"{again} s"),
    ("RSS at rest", f"{rss / 1024:.1f} MB -> {rss2 / 1024:.1f} MB after {window:.0f} s"),
    ("RSS per tenant", f"{rss2 / n:.1f} kB"),
    ("open fds", f"{fds} ({int(fds) / n:.2f} per tenant)"),
    ("  of which", fd_kinds),
    ("  TCP established", tcp_est),
    ("threads", threads),
    ("CPU at rest", f"{cpu:.2f}% of a core ({cpu / n * 1000:.4f} m%/tenant)"),
    ("events written", events),
]
for k, v in rows:
    print(f"{k:<26} {v}")
PY
