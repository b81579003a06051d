#!/usr/bin/python3
"""Issue 11, point 12: a disk that is full when vitaled starts.

The state dir is a small tmpfs (4 MiB) in a mount namespace of this test's
own (skipped with 77 where mounting is not permitted). Sheets are made,
vitaled stops, then a ballast file fills every free byte, and:

  1. vitaled starts anyway (READY; it used to exit): the queue is open
     read-only, the log says so;
  2. ListSheets, GetSheet, ExportSheet (and verification) work;
  3. CreateSheet and CreateDraft answer QueueFull with a reason;
  4. the ballast is removed: within a few seconds CreateSheet succeeds in
     the same daemon, with the next number;
  5. a clean stop and restart: everything there, numbers dense.

Exit 0 pass, 77 skip, 1 fail.
"""
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def reexec_in_namespace():
    if os.environ.get("DISKFULL_IN_NS") == "1":
        return
    if not shutil.which("unshare"):
        print("SKIP: no unshare")
        sys.exit(77)
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    if p.returncode != 0:
        print("SKIP: unshare -m is not permitted here: %s" % p.stderr.decode().strip())
        sys.exit(77)
    env = dict(os.environ, DISKFULL_IN_NS="1")
    os.execve(shutil.which("unshare"), ["unshare", "-m", "--propagation", "private",
                                        "/usr/bin/python3", os.path.abspath(__file__)], env)


reexec_in_namespace()

import sheetlib as sl  # noqa: E402
from sheetlib import harness, call, check_seqs, list_all  # noqa: E402

check = harness.check


def fill(path):
    """Write until the file system is full; returns the bytes written."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 512, 1):
            chunk = b"\xa5" * size
            while True:
                try:
                    f.write(chunk)
                    n += size
                except OSError:
                    break
    return n


def main():
    tmp = harness.mktemp("test_diskfull_start-")
    key, cert, pub = sl.make_key(tmp)
    state = os.path.join(tmp, "state")
    os.makedirs(state)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", state],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print("SKIP: cannot mount a tmpfs here: %s" % p.stderr.strip())
        sys.exit(77)
    d = harness.Daemon(conf=sl.conf(key), tmp=tmp)
    try:
        d.start()
        made = []
        for _ in range(5):
            err, r = call(d, "CreateSheet", sl.degraded())
            check(err is None, "CreateSheet: %s %r" % (err, r))
            made.append(r)
        rc, _ = d.stop()
        check(rc == 0, "clean stop")
        ballast = os.path.join(state, "ballast")
        n = fill(ballast)
        print("  the state dir is full (%d bytes of ballast)" % n, flush=True)

        t0 = time.monotonic()
        d.start()
        print("  started on the full disk in %.0f ms" % ((time.monotonic() - t0) * 1000), flush=True)
        log = d.log_text()
        check("read-only" in log, "the log says the queue is read-only:\n%s" % d.tail())
        listed = list_all(d)
        check([m["id"] for m in listed] == [m["id"] for m in made], "ListSheets reads them")
        for m in listed:
            problems = sl.check_stored(d, m, pub)  # GetSheet, ExportSheet, verification
            check(not problems, "%s: %s" % (m["id"], problems))
        err, r = call(d, "CreateSheet", sl.degraded())
        check(err == sl.IFACE + "QueueFull" and r.get("reason"), "CreateSheet: QueueFull with a "
              "reason (%s %r)" % (err, r))
        print("  reads work; CreateSheet: %s: %s" % (err, r.get("reason")), flush=True)
        err, st = call(d, "GetStatus")
        check(err is None, "GetStatus answers")

        os.unlink(ballast)
        t0 = time.monotonic()
        while True:
            err, r = call(d, "CreateSheet", sl.degraded())
            if err is None:
                break
            check(err == sl.IFACE + "QueueFull", "while it recovers: %s %r" % (err, r))
            check(time.monotonic() - t0 < 10, "writes resume within 10 s of space coming back")
            time.sleep(0.1)
        took = time.monotonic() - t0
        check(r["seq"] == made[-1]["seq"] + 1, "the next number (%s)" % r["seq"])
        print("  space freed: writing again after %.1f s, number %d" % (took, r["seq"]), flush=True)
        rc, _ = d.stop()
        check(rc == 0, "clean stop")
        d.start()
        stored = list_all(d)
        check(len(stored) == 6, "all 6 there after a restart")
        check_seqs(stored, "after the full disk")
        d.stop()
    except harness.Failure as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    finally:
        harness._kill_all()
        subprocess.run(["umount", "-l", state], capture_output=True)
    print("diskfull_start: pass")


if __name__ == "__main__":
    main()
