#!/usr/bin/python3
"""Bench rows for the paper duplicata (make bench; docs/care-sheet.md "The
paper duplicata"):

- PrintSheet (the sheet read on the queue's thread, the page drawn with
  cairo and libqrencode on the print worker, the PDF in base64) beside
  ExportSheet of the same sheet (the same read, the COSE bytes in base64),
  round trip on a fresh connection, median of N.
- CreateSheet while a client prints without pause, beside CreateSheet
  while the same client exports without pause (the same load on the
  client's side and the socket): the drawing is on its own worker, not on
  the loop nor on the queue's thread.
Env: B, BENCH_DUP_N (default 30)."""
import os
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402
import sheetlib as sl  # noqa: E402

N = int(os.environ.get("BENCH_DUP_N", "30"))


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def timed(d, method, params):
    t0 = time.monotonic()
    err, r = sl.call(d, method, params)
    if err:
        raise RuntimeError("%s: %s %r" % (method, err, r))
    return (time.monotonic() - t0) * 1000


def creates(d, n):
    return statistics.median(timed(d, "CreateSheet", sl.degraded()) for _ in range(n))


def main():
    tmp = tempfile.mkdtemp(prefix="bench_duplicata.")
    key, _, _ = sl.make_key(tmp)
    d = harness.Daemon(conf=sl.conf(key), tmp=tmp).start()
    try:
        err, r = sl.call(d, "CreateSheet", sl.degraded(acts=(("C", 1, 2650), ("MCS", 1, 500))))
        if err:
            raise RuntimeError("CreateSheet: %s" % err)
        p = {"id": r["id"]}
        for _ in range(3):
            timed(d, "PrintSheet", p)
        pr = statistics.median(timed(d, "PrintSheet", p) for _ in range(N))
        ex = statistics.median(timed(d, "ExportSheet", p) for _ in range(N))
        row("PrintSheet round trip (ms, median of %d; one A4 page, QR of the signed sheet)" % N,
            "%.2f" % pr, "%.2f (ExportSheet of the same sheet)" % ex, "%.2f" % (pr / ex))
        def beside(method):
            """CreateSheet's median while another thread calls method without pause."""
            stop = threading.Event()

            def loop():
                while not stop.is_set():
                    sl.call(d, method, p)
            t = threading.Thread(target=loop)
            t.start()
            try:
                return creates(d, N)
            finally:
                stop.set()
                t.join()
        alone = creates(d, N)
        with_export = beside("ExportSheet")
        with_print = beside("PrintSheet")
        row("CreateSheet while a client prints duplicatas without pause (ms, median of %d; "
            "alone: %.2f)" % (N, alone), "%.2f" % with_print,
            "%.2f (while it exports without pause)" % with_export, "%.2f" % (with_print / with_export))
    finally:
        harness.stop_all()


if __name__ == "__main__":
    main()
