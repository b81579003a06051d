#!/usr/bin/python3
"""Issue 11, point 4: the queue tells "new" from "lost".

  1. a fresh state dir starts as ever; 5 sheets are made (numbers 1..5);
  2. queue.db truncated to 0 bytes while queue.key and queue.hwm stay:
     vitaled refuses to start (exit 1, no READY), and says why and which
     command recovers (--accept-new-queue); a second try is refused again;
  3. queue.db deleted: refused the same way;
  4. queue.db rolled back to a copy taken after 2 sheets (5 made since):
     refused;
  5. vitaled --accept-new-queue starts, logs at notice what was lost (the
     mark's figures), and the next sheet's number is above every number
     issued before (never 1..5 again); a normal restart after that works.

Prints the time to refuse and the sheets the mark says were lost.
Exit 0 pass, 1 fail.
"""
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sheetlib as sl  # noqa: E402
from sheetlib import harness, call  # noqa: E402

check = harness.check


def make(d, n):
    out = []
    for _ in range(n):
        err, r = call(d, "CreateSheet", sl.degraded())
        check(err is None, "CreateSheet: %s %r" % (err, r))
        out.append(r["seq"])
    return out


def refused(d, what):
    """Start, expect an exit with the loss named; returns seconds to refuse."""
    t0 = time.monotonic()
    d.start(wait=False)
    try:
        rc = d.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        d.kill()
        raise harness.Failure("%s: vitaled started on a lost queue:\n%s" % (what, d.tail()))
    took = time.monotonic() - t0
    log = d.tail(15)
    check(rc == 1, "%s: exit %s, expected 1:\n%s" % (what, rc, log))
    check("--accept-new-queue" in log and "QueueLost" in log,
          "%s: the log names the loss and the recovery command:\n%s" % (what, log))
    line = [l for l in log.splitlines() if "QueueLost" in l][-1]
    print("  %s: refused in %.0f ms: %s" % (what, took * 1000, line.strip()[:400]), flush=True)
    d.stop()
    return took


def main():
    tmp = harness.mktemp("test_queue_loss-")
    key, cert, pub = sl.make_key(tmp)
    d = harness.Daemon(conf=sl.conf(key, log_level="info"), tmp=tmp)
    try:
        d.start()
        check(make(d, 2) == [1, 2], "a fresh install numbers from 1")
        d.stop()
        backup = os.path.join(tmp, "backup.db")
        shutil.copy2(os.path.join(d.state, "queue.db"), backup)
        d.start()
        check(make(d, 3) == [3, 4, 5], "numbers go on after a restart")
        d.stop()
        db = os.path.join(d.state, "queue.db")
        saved = os.path.join(tmp, "saved.db")
        shutil.copy2(db, saved)

        os.truncate(db, 0)
        refused(d, "queue.db truncated to 0 bytes")
        refused(d, "the same, a second start")
        os.unlink(db)
        refused(d, "queue.db deleted")
        shutil.copy2(backup, db)
        refused(d, "queue.db rolled back to a copy with 2 of 5 sheets")

        # the explicit recovery
        d.args = ["--accept-new-queue"]
        d.start()
        d.args = []
        log = d.log_text()
        lines = [l for l in log.splitlines() if "accept-new-queue" in l and "lost" in l]
        check(lines, "the accepted loss is logged:\n%s" % d.tail())
        print("  accepted: %s" % lines[-1].strip()[:400], flush=True)
        check("3 sheets lost" in lines[-1], "the mark's figures: 5 recorded, 2 held, 3 lost")
        seqs = make(d, 2)
        check(min(seqs) > 5, "numbers continue above the mark, never 3..5 again: %s" % seqs)
        print("  numbers after the accepted loss: %s" % seqs, flush=True)
        d.stop()
        d.start()
        check(make(d, 1)[0] == seqs[-1] + 1, "a normal restart after the recovery")
        rc, _ = d.stop()
        check(rc == 0, "clean stop")
    except harness.Failure as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("queue_loss: pass")


if __name__ == "__main__":
    main()
