#!/usr/bin/env bash
# Backfill benchmark: a simulated tenant holding N events (default 1M) is
# forwarded from the beginning into a file sink, once per listing order,
# with the release binary. Prints, per order: wall time, events/s, the
# forwarder's peak RSS, the largest the state directory got during the run
# (snapshot + journal) and the dedup ids the cursor held at the end.
#
#   scripts/bench-backfill.sh            # 1,000,000 events, every order
#   scripts/bench-backfill.sh 200000     # fewer
#
# Goals (issue "the cursor never loses an event"): <= 40 MB RSS and a state
# directory <= 5 MB for 1M events in either order.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ORDERS=${ORDERS:-"newest-first oldest-first"}

cargo build --release --quiet
bin=target/release/auditfwd

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

printf '%-14s %10s %9s %11s %12s %12s %10s\n' order events seconds events/s "peak RSS" "max state" "dedup ids"
for order in $ORDERS; do
  dir=$(mktemp -d)
  port=$(free_port)
  "$bin" simulate --port "$port" --backlog "$N" --backlog-span 30d --insert-rate 5 \
    --order "$order" --seed 7 --tie-ratio 0.3 > "$dir/sim.log" 2>&1 &
  sim=$!
  until curl -sf "http://127.0.0.1:$port/_sim/stats" > /dev/null 2>&1; do sleep 0.5; done
  cat > "$dir/auditfwd.toml" <<EOF
[state]
dir = "$dir/state"

[[source]]
name = "bench"
base_url = "http://127.0.0.1:$port"
api_key = "sim-key"
allow_http = true
start_at = "beginning"
poll_interval = "1s"
lookback = "1m"
rate_limit = { requests_per_second = 5000, burst = 100 }

[[sink]]
name = "files"
type = "file"
path = "$dir/out/events.jsonl"
EOF
  start=$(date +%s.%N)
  "$bin" run -c "$dir/auditfwd.toml" > "$dir/auditfwd.log" 2>&1 &
  fwd=$!
  # Sample RSS and the state directory until every event is out.
  python3 - "$fwd" "$dir" "$N" <<'PY' > "$dir/monitor.txt"
import os, sys, time
pid, d, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
peak_state = 0
def lines():
    try:
        with open(os.path.join(d, "out/events.jsonl"), "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
while True:
    size = 0
    for root, _, files in os.walk(os.path.join(d, "state")):
        for f in files:
            try:
                size += os.path.getsize(os.path.join(root, f))
            except FileNotFoundError:
                pass
    peak_state = max(peak_state, size)
    if lines() >= n * 0.98:  # malformed events go to the dead-letter file
        time.sleep(3)
        break
    time.sleep(0.5)
with open(f"/proc/{pid}/status") as f:
    hwm = next(l for l in f if l.startswith("VmHWM")).split()[1]
print(lines(), hwm, peak_state)
PY
  end=$(date +%s.%N)
  kill -TERM "$fwd"; wait "$fwd" || true
  kill "$sim"; wait "$sim" 2>/dev/null || true
  read -r events hwm_kib state_bytes < "$dir/monitor.txt"
  ids=$("$bin" state show -c "$dir/auditfwd.toml" | awk '/dedup ids/ {print $3}')
  secs=$(python3 -c "print(f'{$end - $start:.1f}')")
  rate=$(python3 -c "print(int($events / ($end - $start)))")
  printf '%-14s %10s %9s %11s %9.1f MB %9.2f MB %10s\n' "$order" "$events" "$secs" "$rate" \
    "$(python3 -c "print($hwm_kib/1024)")" "$(python3 -c "print($state_bytes/1048576)")" "$ids"
  rm -rf "$dir"
done
