#!/usr/bin/python3
"""Bench rows for the daemon core: start to READY, GetStatus round trip,
idle CPU, RSS. Each beside a baseline from the same run."""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import B, VITALED, Daemon, Notify, mktemp, track  # noqa: E402

TOOLS = os.path.join(B, "tools")
IDLE_S = float(os.environ.get("BENCH_IDLE_S", "30"))


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def start_to_ready():
    """Wall time from exec to READY=1, median of 7; baseline: exec + config
    check of the same binary (vitaled --check-config), which does no serving."""
    times = []
    for _ in range(7):
        tmp = mktemp()
        with Notify(os.path.join(tmp, "n.sock"), timeout=10) as n:
            d = Daemon(env=n.env(), tmp=tmp, wait=False)
            t0 = time.monotonic()
            d.start()
            times.append(n.wait_for("READY=1") - t0)
            d.stop()
    base = []
    for _ in range(7):
        t0 = time.monotonic()
        subprocess.run([VITALED, "--check-config"], stdout=subprocess.DEVNULL, check=True)
        base.append(time.monotonic() - t0)
    a, b = statistics.median(times) * 1000, statistics.median(base) * 1000
    row("start → READY=1 (ms, median of 7)", "%.1f" % a, "%.1f (exec + --check-config)" % b, "%.2f" % (a / b))


def round_trip(d):
    """GetStatus round trips by build/tools/vl_bench, a C client on one
    connection, on purpose instead of harness.Varlink: the figure is
    vitaled's, not Python's; the baseline is the same client against its own
    echo server."""
    out = subprocess.run([os.path.join(TOOLS, "vl_bench"), d.sock, "5000"], capture_output=True, text=True, check=True).stdout.split()
    base = subprocess.run([os.path.join(TOOLS, "vl_bench"), "--echo", "5000"], capture_output=True, text=True, check=True).stdout.split()
    med, p99 = float(out[0]), float(out[1])
    bmed, bp99 = float(base[0]), float(base[1])
    row("GetStatus round trip (µs, median / p99 of 5000)", "%.1f / %.1f" % (med, p99),
        "%.1f / %.1f (unix-socket echo of the same size)" % (bmed, bp99), "%.2f" % (med / bmed))


def idle_cpu(d):
    c0 = d.cpu_s()
    t0 = time.monotonic()
    time.sleep(IDLE_S)
    dt = time.monotonic() - t0
    used = d.cpu_s() - c0
    row("idle CPU over %.0f s (ms of CPU)" % dt, "%.0f" % (used * 1000), "%.0f (the whole window)" % (dt * 1000),
        "%.5f" % (used / dt))


def rss(d):
    p = track(subprocess.Popen([os.path.join(TOOLS, "vl_bench"), "--rss-baseline", "3"]))
    time.sleep(0.5)
    with open("/proc/%d/status" % p.pid) as f:
        base = [int(line.split()[1]) for line in f if line.startswith("VmRSS:")][0]
    p.wait()
    r = d.rss_kb()
    row("RSS after start (KiB)", "%d" % r, "%d (a process linked with the same libraries)" % base, "%.2f" % (r / base))


def main():
    start_to_ready()
    with Daemon() as d:
        round_trip(d)
        rss(d)
        idle_cpu(d)


if __name__ == "__main__":
    main()
