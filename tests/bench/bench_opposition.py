#!/usr/bin/python3
"""Bench rows for the opposition list (make bench; docs/upload.md "The
opposition list"): every physical card read is checked against it, and
that check must not make a read slower.

- Vitale 2 read, CardInserted -> CardRead as a watcher sees it, with
  100,000 serials on the stored list (loaded into memory at start-up),
  beside the same reads by the same daemon and state directory with an
  empty list, in the same run.
- The time from start-up to the list of 100,000 being in memory
  (GetStatus opposition.loaded), beside the time to READY.
Env: B, BENCH_OPP_N (reads each way, default 30), BENCH_OPP_SERIALS
(default 100000). Skips (exit 77) without pcscd/vpcd."""
import os
import sqlite3
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, os.path.join(TOP, "tests", "world"))
if not os.path.exists("/usr/lib/pcsc/drivers/serial/libifdvpcd.so"):
    sys.exit(77)
from harness import Watch  # noqa: E402
from test_readers import R0, readers_daemon  # noqa: E402
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402

N = int(os.environ.get("BENCH_OPP_N", "30"))
SERIALS = int(os.environ.get("BENCH_OPP_SERIALS", "100000"))
T = "io.vitaled.Terminal."


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def reads(d, host):
    w = Watch(d.sock)
    walls = []
    try:
        for i in range(N + 2):
            host.insert("vitale2")
            w.expect("CardInserted", reader=R0, ignore=("DriverUp", "ReaderAdded", "CardRemoved"))
            t0 = time.monotonic()
            e = w.expect("CardRead", reader=R0)
            if i >= 2:  # two warm-up rounds
                walls.append(time.monotonic() - t0)
            if e.get("opposed"):
                raise RuntimeError("the bench card is not meant to be on the list")
            host.remove()
        w.expect("CardRemoved", reader=R0)
    finally:
        w.close()
    return statistics.median(walls) * 1000


def opposition(d):
    return d.result(T + "GetStatus")[1]["opposition"]


def main():
    tmp = tempfile.mkdtemp(prefix="bench_opposition.")
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=world.socket)
    d = readers_daemon(tmp, env)
    host = None
    try:
        world.start()
        d.start()
        host = CardHost(world.port, log=os.path.join(tmp, "h.log"))
        if opposition(d)["serials"] != 0:
            raise RuntimeError("a new state directory with a list")
        empty = reads(d, host)
        d.stop()
        db = sqlite3.connect(os.path.join(d.state, "queue.db"))
        with db:
            db.executemany("INSERT INTO opposition (serial) VALUES (?)",
                           (("9%019d" % (i * 7919),) for i in range(SERIALS)))
        db.close()
        t0 = time.monotonic()
        d.start()
        ready = time.monotonic() - t0
        while not opposition(d)["loaded"]:
            if time.monotonic() - t0 > 60:
                raise RuntimeError("the list not loaded in 60 s: %r" % opposition(d))
            time.sleep(0.01)
        loaded = time.monotonic() - t0
        if opposition(d)["serials"] != SERIALS:
            raise RuntimeError("loaded %r" % opposition(d))
        full = reads(d, host)
        row("Vitale 2 read with %d serials on the opposition list (ms, median of %d)" % (SERIALS, N),
            "%.2f" % full, "%.2f (the same daemon, empty list)" % empty, "%.2f" % (full / empty))
        row("start-up to %d opposition serials in memory (ms)" % SERIALS, "%.0f" % (loaded * 1000),
            "%.0f (start-up to READY)" % (ready * 1000), "%.2f" % (loaded / ready))
    finally:
        if host:
            try:
                host.close()
            except Exception:
                pass
        d.stop()
        world.stop()


if __name__ == "__main__":
    main()
