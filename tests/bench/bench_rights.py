#!/usr/bin/python3
"""Bench row for the online rights check (make bench): a Vitale 2 inserted
-> rights shown (CardRights checked, from the test insurer over mutual TLS on
loopback) beside the read alone (CardInserted -> CardRead), as a watcher sees
them, in the same run on the same insertions; the ratio is rights/read.
Env: B, BENCH_RIGHTS_N (default 30). Skips (exit 77) without pcscd/vpcd or
the insurer's Python modules."""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, os.path.join(TOP, "tests", "world"))
sys.path.insert(0, os.path.join(TOP, "tests", "insurer"))
if not os.path.exists("/usr/lib/pcsc/drivers/serial/libifdvpcd.so"):
    sys.exit(77)
try:
    import insurer  # noqa: E402
    import mkpki  # noqa: E402
    from cryptography.hazmat.primitives import serialization  # noqa: E402
except ImportError:
    sys.exit(77)
import harness  # noqa: E402
import sheetlib  # noqa: E402
from test_readers import R0  # noqa: E402
from test_rights import TERMINAL, conf  # noqa: E402
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402

N = int(os.environ.get("BENCH_RIGHTS_N", "30"))


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def main():
    tmp = harness.mktemp("bench_rights.")
    pki = os.path.join(tmp, "pki")
    mkpki.init_pki(pki, terminal_id=TERMINAL)
    key, _, pub = sheetlib.make_key(tmp)
    chain = os.path.join(tmp, "chain.pem")
    with open(chain, "wb") as f:
        f.write(mkpki.issue_practitioner(pki, pub).public_bytes(serialization.Encoding.PEM))
    ins = insurer.InsurerProcess(pki, os.path.join(tmp, "insurer"))
    ins.__enter__()
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=world.socket)
    d = harness.Daemon(conf=conf(tmp, pki, ins.url, key, chain).replace(
        "log_level = debug", "log_level = info"), tmp=tmp, env=env, timeout=10.0)
    h = None
    reads, rights = [], []
    try:
        world.start()
        d.start()
        w = harness.Watch(d)
        h = CardHost(world.port, log=os.path.join(tmp, "h0.log"))
        for i in range(N + 1):
            h.insert("vitale2")
            w.wait_for("CardInserted", reader=R0)
            t0 = time.monotonic()
            w.wait_for("CardRead", reader=R0)
            t1 = time.monotonic()
            e = w.wait_for("CardRights", reader=R0, timeout=10)
            t2 = time.monotonic()
            if e["state"] != "checked":
                raise harness.Failure("CardRights %r" % e)
            if i:  # the first one pays the TLS handshake: shown apart
                reads.append((t1 - t0) * 1000)
                rights.append((t2 - t0) * 1000)
            else:
                first = (t2 - t0) * 1000
            h.remove()
            w.wait_for("CardRemoved", reader=R0)
        w.close()
    finally:
        if h:
            h.close()
        harness.stop_all()
        world.stop()
        ins.__exit__(None, None, None)
    mr, mg = statistics.median(reads), statistics.median(rights)
    row("Vitale 2 inserted -> rights shown (CardRights checked), median of %d" % N,
        "%.1f ms" % mg, "inserted -> CardRead: %.1f ms" % mr, "%.2fx" % (mg / mr))
    row("rights check alone (CardRead -> CardRights), median", "%.1f ms" % statistics.median(
        [g - r for g, r in zip(rights, reads)]), "first card (TLS handshake): %.1f ms" % first, "-")


if __name__ == "__main__":
    main()
