#!/usr/bin/python3
"""Bench rows for care sheets and the durable queue through the daemon.

- Durable creates per second through the API: a Vitale 2 read once on a
  private pcscd (tests/world), then CreateSheet from that card session, each
  answered after its COMMIT (file signer, ES256), by build/tools/sheet_bench
  (a C client: its own cost stays out), with 1 client and with 8. Baseline:
  build/tools/sqlite_baseline, one insert of a 512-byte blob per
  transaction with the queue's pragmas (WAL, synchronous=FULL, BEGIN
  IMMEDIATE), in the same directory on the same disk, interleaved, medians
  of 3. One client should reach 0.8 of the baseline; 8 clients pass the
  one-fsync-per-sheet bound through group commit (ratio above 1).
- Where a batch's time goes: signing inside the transaction against the
  transaction as a whole (QueueStats pipeline figures).
- Start-up time (exec to READY=1) and RSS with 100,000 sheets in the queue,
  against an empty queue. The 100,000 sheets are real signed sheets put in
  by build/tools/fill_queue (the queue's own code, 1000 per transaction),
  not by 100,000 API calls.

Runs under /var/tmp (on disk where /tmp may be a tmpfs).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import sheetlib as sl  # noqa: E402
from sheetlib import harness  # noqa: E402

TOOLS = os.path.join(harness.B, "tools")
N1 = int(os.environ.get("BENCH_SHEETS_N", "2000"))
ROUNDS = 3
BIG = int(os.environ.get("BENCH_SHEETS_BIG", "100000"))


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def tool(*args):
    return subprocess.run([os.path.join(TOOLS, args[0])] + [str(a) for a in args[1:]],
                          capture_output=True, text=True, check=True, timeout=600).stdout.split()


def start_ready(state, key, n=3):
    """exec → READY=1 (ms, median of n) and RSS (KiB) once ready."""
    times, rss = [], []
    for _ in range(n):
        tmp = harness.mktemp("bench-sheets-start-")
        n = harness.Notify(os.path.join(tmp, "n.sock"), timeout=120)
        d = harness.Daemon(conf=sl.conf(key, log_level="notice"), tmp=tmp, wait=False,
                           args=["--state-dir", state], env=n.env())
        t0 = time.monotonic()
        d.start()
        times.append((n.wait_for("READY=1") - t0) * 1000)
        d.wait_socket()
        sl.call(d, "ListSheets", {"limit": 100})
        rss.append(d.rss_kb())
        d.stop()
        n.close()
    return statistics.median(times), statistics.median(rss)


def main():
    base = tempfile.mkdtemp(prefix="vitaled-bench-sheets-", dir="/var/tmp")
    harness._tmpdirs.append(base)
    key, cert, pub = sl.make_key(base)
    world = None
    params = os.path.join(base, "params.json")
    card = False
    pcsc = all(os.path.exists(p) for p in ("/usr/sbin/pcscd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"))
    env = {}
    if pcsc:
        sys.path.insert(0, os.path.join(TOP, "tests", "world"))
        from world import PcscWorld
        from cardhost import CardHost
        world = PcscWorld(dir=os.path.join(base, "pcsc"))
        world.start()
        env = world.env
    dd = os.path.join(base, "d")
    os.makedirs(dd)
    d = harness.Daemon(conf=sl.conf(key, log_level="notice"), tmp=dd, env=env).start()
    host = None
    try:
        if pcsc:
            host = CardHost(world.port, log=os.path.join(base, "cardhost.log"))
            w = harness.Watch(d)
            host.insert("vitale2")
            w.wait_for("CardRead", timeout=15)
            w.close()
            card = True
            p = {"reader": "Virtual PCD 00 00", "sheet": sl.till_part()}
        else:
            p = sl.degraded()
        with open(params, "w") as f:
            json.dump(p, f)
        tool("sheet_bench", d.sock, 1, 200, params)   # warm-up
        b1, a1, a8, lat1, lat8 = [], [], [], [], []
        st0 = sl.call(d, "QueueStats")[1]["pipeline"]
        for _ in range(ROUNDS):
            b1.append(float(tool("sqlite_baseline", dd, N1, 1, 512)[0]))
            out = tool("sheet_bench", d.sock, 1, N1, params)
            if int(out[1]):
                raise SystemExit("bench_sheets: %s create errors (1 client)" % out[1])
            a1.append(float(out[0]))
            lat1.append(float(out[2]))
            out = tool("sheet_bench", d.sock, 8, 2 * N1, params)
            if int(out[1]):
                raise SystemExit("bench_sheets: %s create errors (8 clients)" % out[1])
            a8.append(float(out[0]))
            lat8.append(float(out[2]))
        st1 = sl.call(d, "QueueStats")[1]["pipeline"]
        what = "card session" if card else "degraded (no pcscd here)"
        bl = statistics.median(b1)
        v1, v8 = statistics.median(a1), statistics.median(a8)
        row("durable creates/s via the API, 1 client (%s → queued, ES256 file key; median latency %.0f µs)"
            % (what, statistics.median(lat1)), "%.0f" % v1,
            "%.0f (SQLite, 1 insert/txn, same pragmas and disk)" % bl, "%.2f" % (v1 / bl))
        row("durable creates/s via the API, 8 clients (group commit; median latency %.0f µs)"
            % statistics.median(lat8), "%.0f" % v8,
            "%.0f (the one-fsync-per-sheet bound: SQLite, 1 insert/txn)" % bl, "%.2f" % (v8 / bl))
        nb = st1["batches"] - st0["batches"]
        ns_ = st1["sheets"] - st0["sheets"]
        sign = (st1["sign_us"] - st0["sign_us"]) / max(1, ns_)
        txn = (st1["txn_us"] - st0["txn_us"]) / max(1, nb)
        row("signing inside the transaction, µs per sheet (%d sheets in %d batches, %.1f per batch, largest %d)"
            % (ns_, nb, ns_ / max(1, nb), st1["max_batch"]), "%.1f" % sign,
            "%.1f (a whole transaction: BEGIN … sign, encrypt, insert … COMMIT)" % txn,
            "%.2f" % (sign / txn if txn else 0))
    finally:
        d.stop()
        if host:
            host.close()
        if world:
            world.stop()
    # 100,000 sheets
    big = os.path.join(base, "big")
    out = tool("fill_queue", big, BIG, key)
    empty = os.path.join(base, "empty")
    t_big, rss_big = start_ready(big, key)
    t_empty, rss_empty = start_ready(empty, key)
    size = os.path.getsize(os.path.join(big, "queue.db")) // (1024 * 1024)
    row("exec → READY=1 with %d sheets in the queue (ms; %d MiB file; its quick_check runs after READY)" % (BIG, size),
        "%.0f" % t_big, "%.0f (empty queue)" % t_empty, "%.1f" % (t_big / t_empty))
    row("RSS with %d sheets in the queue (KiB, after start and one ListSheets)" % BIG, "%d" % rss_big,
        "%d (empty queue)" % rss_empty, "%.2f" % (rss_big / rss_empty))
    row("fill %d signed sheets with tests/tools/fill_queue (s, 1000 per transaction)" % BIG,
        out[1], "-", "-")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
