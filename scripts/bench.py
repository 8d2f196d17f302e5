#!/usr/bin/env python3
"""Every row of the performance table (issue "close to the API's limit,
cheap on the API, cheap on the CPU") measured in one run, side by side with
its goal. Run through scripts/bench.sh, which builds the release binary.

Rows:
  backfill   CPU-seconds per million events, simulator -> file (json), limits off
  floor      the same simulator read by a bare HTTP client: bodies only,
             parsed into a serde_json Value, parsed by the forwarder's page
             parser (cargo bench --bench floor): what the backfill row can
             not go below
  quota      share of a 10 req/s API's ceiling reached with 0-400 ms latency,
             default config, and how many 429s it drew
  quota1s    the same with 0-1 s latency
  steady     API requests in steady state at 25 events/s, against the minimum
             (new events / page size, plus one request per poll)
  idle       CPU of a quiet tenant, poll 2 s, three sinks
  rss        resident memory, three sinks, live tenant
  encode     events/s per core of every format (cargo bench --bench encode)
  kafka      Kafka sink / bare rdkafka producer (only when tansu is installed;
             cargo bench -p auditfwd-sink-kafka)

Environment: BENCH_EVENTS (backfill size, default 300000), BENCH_SECS (length
of the timed rows, default 60), BENCH_ROWS (space-separated subset).
The simulator runs on the same host; its CPU is not counted.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "auditfwd")
TICK = os.sysconf("SC_CLK_TCK")
EVENTS = int(os.environ.get("BENCH_EVENTS", "300000"))
SECS = float(os.environ.get("BENCH_SECS", "60"))
ROWS = os.environ.get(
    "BENCH_ROWS", "backfill floor quota quota1s steady idle rss encode kafka"
).split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


class Sim:
    """One `auditfwd simulate` process."""

    def __init__(self, *args):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [BIN, "simulate", "--port", str(self.port), "--seed", "7", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(600):
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the simulator did not start")

    def stats(self):
        return json.loads(get(f"http://127.0.0.1:{self.port}/_sim/stats"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Forwarder:
    """`auditfwd run` on a generated config; CPU and memory from /proc."""

    def __init__(self, sim, source_extra="", sinks=1, telemetry=True):
        self.dir = tempfile.mkdtemp(prefix="auditfwd-bench-")
        self.metrics_port = free_port()
        sink_text = "".join(
            f'\n[[sink]]\nname = "files{i}"\ntype = "file"\npath = "{self.dir}/out{i}/events.jsonl"\n'
            for i in range(sinks)
        )
        tele = f'\n[telemetry]\nlisten = "127.0.0.1:{self.metrics_port}"\n' if telemetry else ""
        text = f"""[state]
dir = "{self.dir}/state"
{tele}
[[source]]
name = "bench"
base_url = "http://127.0.0.1:{sim.port}"
api_key = "sim-key"
allow_http = true
{source_extra}
{sink_text}"""
        self.config = os.path.join(self.dir, "auditfwd.toml")
        with open(self.config, "w") as f:
            f.write(text)
        self.log = open(os.path.join(self.dir, "auditfwd.log"), "w")
        self.started = time.time()
        self.proc = subprocess.Popen(
            [BIN, "run", "-c", self.config], stdout=self.log, stderr=self.log
        )

    def cpu(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def status(self, key):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def lines(self, sink=0):
        try:
            with open(os.path.join(self.dir, f"out{sink}", "events.jsonl"), "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def metric(self, name):
        total = 0.0
        for line in get(f"http://127.0.0.1:{self.metrics_port}/metrics").splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait(cond, timeout, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def window(measure):
    """`measure()` before and after SECS seconds, and the seconds between."""
    before, t0 = measure(), time.time()
    time.sleep(SECS)
    after, t1 = measure(), time.time()
    return before, after, t1 - t0


@contextlib.contextmanager
def forwarding(sim_args, source_extra, sinks=1):
    """A simulator run with `sim_args` and a forwarder reading it, both
    stopped when the row is done."""
    sim = Sim(*sim_args)
    fwd = Forwarder(sim, source_extra, sinks=sinks)
    try:
        yield sim, fwd
    finally:
        fwd.stop()
        sim.stop()


def row_backfill():
    with forwarding(["--backlog", str(EVENTS), "--backlog-span", "30d", "--insert-rate", "0",
                     "--order", "newest-first", "--tie-ratio", "0.3"],
                    'start_at = "beginning"\npoll_interval = "1s"\nlookback = "1m"\n'
                    "rate_limit = { requests_per_second = 5000, burst = 100 }\n") as (_, fwd):
        start = time.time()
        if not wait(lambda: fwd.lines() >= EVENTS * 0.98, 1800, 0.5):
            return ("backfill", "did not finish", "")
        # Malformed events go to the dead-letter file; give them a moment.
        time.sleep(1)
        secs = time.time() - start
        cpu = fwd.cpu()
        n = fwd.lines()
        per_m = cpu / n * 1e6
        return ("end to end backfill, simulator -> file (json), limits off",
                f"{per_m:.1f} CPU-s per million ({n / cpu / 1000:.0f}k ev/s per core; "
                f"{n / secs / 1000:.0f}k ev/s wall, {n} events, peak RSS {fwd.status('VmHWM') / 1e6:.0f} MB)",
                "<= 2 CPU-s per million")


def row_floor():
    sim = Sim("--backlog", str(EVENTS), "--backlog-span", "30d", "--insert-rate", "0",
              "--order", "newest-first", "--tie-ratio", "0.3")
    try:
        out = subprocess.run(
            ["cargo", "bench", "--quiet", "--bench", "floor"],
            cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "BENCH_URL": f"http://127.0.0.1:{sim.port}",
                 "BENCH_EVENTS": str(EVENTS)},
        ).stdout
    finally:
        sim.stop()
    figures = dict(re.findall(r"^(fetch(?:\+\w+)?): (\S+) CPU-s", out, re.M))
    return ("floor of the backfill row: a bare HTTP client reading the same pages",
            f"fetch {figures.get('fetch', '?')}, + serde_json Value tree "
            f"{figures.get('fetch+value', '?')}, + auditfwd's page parser "
            f"{figures.get('fetch+parse', '?')} CPU-s per million",
            "(none: what the backfill row can not go below)")


def row_quota(latency_ms=400):
    # The default rate_limit is the API's documented quota, 10 req/s.
    with forwarding(["--backlog", "200000", "--backlog-span", "30d", "--insert-rate", "0",
                     "--rate-limit", "10", "--latency", f"{latency_ms}ms"],
                    'start_at = "beginning"\npoll_interval = "1s"\n') as (sim, fwd):
        # Skip the start (connection set-up, first page).
        wait(lambda: fwd.lines() > 0, 30)
        time.sleep(2)
        (e0, s0), (e1, s1), secs = window(lambda: (fwd.lines(), sim.stats()))
        rate = (e1 - e0) / secs
        ceiling = 10 * 100
        return (f"backfill against a 10 req/s API, 0-{latency_ms} ms latency, default config",
                f"{rate / ceiling * 100:.0f}% of the ceiling ({rate:.0f} of {ceiling} ev/s), "
                f"{s1['throttled'] - s0['throttled']} x 429 in {secs:.0f} s",
                ">= 95%, 0 x 429")


def row_steady():
    with forwarding(["--backlog", "0", "--insert-rate", "25", "--late-ratio", "0.02",
                     "--late-max", "2s"],
                    'poll_interval = "5s"\nlookback = "1m"\n') as (sim, fwd):
        wait(lambda: fwd.lines() > 0, 30)
        time.sleep(6)
        (e0, s0), (e1, s1), secs = window(lambda: (fwd.lines(), sim.stats()))
        requests = s1["requests"] - s0["requests"]
        events = e1 - e0
        polls = secs / 5
        minimum = events / 100 + polls
        return ("API requests in steady state, 25 events/s, poll 5 s, lookback 1 min",
                f"{requests / minimum:.2f} x the minimum ({requests} requests for {events} events "
                f"in {secs:.0f} s; minimum {minimum:.0f})",
                "<= 1.25 x")


def row_idle():
    with forwarding(["--backlog", "0", "--insert-rate", "0"], 'poll_interval = "2s"\n',
                    sinks=3) as (_, fwd):
        time.sleep(5)
        c0, c1, secs = window(fwd.cpu)
        return ("idle CPU, quiet tenant, poll 2 s, 3 sinks",
                f"{(c1 - c0) / secs * 100:.2f}% of a core",
                "<= 0.3%")


def row_rss():
    with forwarding(["--backlog", "2000", "--insert-rate", "25"], 'poll_interval = "2s"\n',
                    sinks=3) as (_, fwd):
        time.sleep(SECS / 2)
        return ("RSS, 3 sinks, live tenant (25 ev/s)",
                f"{fwd.status('VmRSS') / 1e6:.1f} MB (peak {fwd.status('VmHWM') / 1e6:.1f} MB)",
                "<= 25 MB")


def row_encode():
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "--bench", "encode", "--", "--noplot"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout
    figures = []
    for name, value, unit in re.findall(
        r"encode/(\w+)\s+time:.*?\n\s+thrpt:\s+\[\S+ \S+ (\S+) (\S+)", out
    ):
        scale = {"Kelem/s": 1e3, "Melem/s": 1e6, "elem/s": 1}.get(unit, 1)
        figures.append(f"{name} {float(value) * scale / 1000:.0f}k")
    return ("encode, events/s per core", ", ".join(figures) or "no figures (see cargo bench)",
            "every format >= 500k")


def row_kafka():
    tansu = shutil.which("tansu") or os.path.expanduser("~/.cargo/bin/tansu")
    if not os.path.exists(tansu):
        return ("Kafka sink / bare rdkafka producer", "skipped: tansu not installed "
                "(scripts/services.sh installs it)", ">= 0.9")
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "-p", "auditfwd-sink-kafka", "--bench", "kafka_throughput"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout
    ratios = re.findall(r"ratio sink / (bare-\w+)\s+= (\S+)", out)
    return ("Kafka sink / bare rdkafka producer",
            ", ".join(f"{r} vs {m}" for m, r in ratios) or "no figures (see cargo bench)",
            ">= 0.9")


def main():
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} is missing: run scripts/bench.sh, which builds it")
    rows = {"backfill": row_backfill, "floor": row_floor, "quota": row_quota,
            "quota1s": lambda: row_quota(1000), "steady": row_steady,
            "idle": row_idle, "rss": row_rss, "encode": row_encode, "kafka": row_kafka}
    results = []
    for name in ROWS:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        results.append(rows[name]())
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(f"\nauditfwd {subprocess.run([BIN, '--version'], capture_output=True, text=True).stdout.strip()}, "
          f"{os.cpu_count()} cores ({cpu}), {time.strftime('%Y-%m-%d')}\n")
    print("| what | measured | goal |")
    print("|---|---|---|")
    for what, measured, goal in results:
        print(f"| {what} | {measured} | {goal} |")


if __name__ == "__main__":
    main()
