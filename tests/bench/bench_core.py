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


def memory(pid):
    """VmRSS, RssAnon, RssFile (status) and Pss (smaps_rollup), KiB."""
    m = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
                m[line.split(":")[0]] = int(line.split()[1])
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                m["Pss"] = int(line.split()[1])
    return m


def needed():
    """vitaled's DT_NEEDED sonames (readelf -d)."""
    out = subprocess.run(["readelf", "-d", VITALED], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]


def rss(d):
    # The baseline loads vitaled's libraries (LD_PRELOAD of its DT_NEEDED
    # list: the loader pulls the same transitive set and runs the same
    # constructors) and then only sleeps. vl_bench alone is linked with
    # libc only (the linker drops the libraries it does not call), so it
    # is no baseline for the libraries' own cost.
    env = dict(os.environ, LD_PRELOAD=" ".join(needed()))
    p = track(subprocess.Popen([os.path.join(TOOLS, "vl_bench"), "--rss-baseline", "3"], env=env))
    time.sleep(0.5)
    bm = memory(p.pid)
    base = bm["VmRSS"]
    p.wait()
    r = d.rss_kb()
    dm = memory(d.pid)
    row("RSS after start (KiB)", "%d" % r, "%d (an idle process that loads the same libraries)" % base, "%.2f" % (r / base))
    # where it goes: pages of the libraries' files the daemon touched (shared
    # with the page cache and every other process mapping them) against its
    # own anonymous memory (heap, stacks, relocated data); Pss shares the
    # file pages among the processes mapping them
    row("RSS after start, file-backed part (KiB: library code and data touched)", "%d" % dm["RssFile"],
        "%d (the same, idle process)" % bm["RssFile"], "%.2f" % (dm["RssFile"] / bm["RssFile"]))
    row("RSS after start, anonymous part (KiB: heap, thread stacks, relocations)", "%d" % dm["RssAnon"],
        "%d (the same, idle process)" % bm["RssAnon"], "%.2f" % (dm["RssAnon"] / bm["RssAnon"]))
    row("Pss after start (KiB: shared pages divided among their users)", "%d" % dm["Pss"],
        "%d (the same, idle process)" % bm["Pss"], "%.2f" % (dm["Pss"] / bm["Pss"]))


def main():
    start_to_ready()
    with Daemon() as d:
        round_trip(d)
        rss(d)
        idle_cpu(d)


if __name__ == "__main__":
    main()
