#!/usr/bin/python3
"""Bench rows for the local web bridge (make bench): a call through
vitaled-web (HTTP keep-alive, token and scope checked, a fresh varlink
connection to the daemon per call, as the bridge makes) beside the same call
straight on the daemon's socket on a fresh connection, in the same run; and
the event stream's set-up (GET /v1/events to its first line) beside a
direct WatchEvents call to its Watching reply. Env: B, BENCH_WEB_N (default 300)."""
import http.client
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402
import sheetlib  # noqa: E402
import webworld  # noqa: E402

N = int(os.environ.get("BENCH_WEB_N", "300"))
APP = "http://localhost:9"


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def ms(xs):
    return statistics.median(xs) * 1000


def main():
    if not os.access(webworld.VITALED_WEB, os.X_OK):
        sys.exit(77)
    tmp = harness.mktemp("bench_web-")
    port = webworld.free_port()
    conf = sheetlib.conf(None, extra="[pcsc]\nenabled = false\n[web]\nport = %d\nallowed_origins = %s\n"
                         % (port, APP))
    d = harness.Daemon(conf=conf, tmp=tmp).start()
    br = webworld.Bridge(d, tmp, port).start()
    try:
        token, _ = br.pair(APP, "control", app="bench")
        hdr = {"Origin": APP, "Authorization": "Bearer " + token, "Content-Type": "application/json"}
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        via, direct = [], []
        for i in range(N):
            t0 = time.monotonic()
            c.request("POST", "/v1/call/GetStatus", body=b"{}", headers=hdr)
            r = c.getresponse()
            body = r.read()
            via.append(time.monotonic() - t0)
            if r.status != 200 or b'"parameters"' not in body:
                raise harness.Failure("GetStatus through the bridge: %d %s" % (r.status, body[:200]))
            t0 = time.monotonic()
            with d.client() as v:
                v.invoke("GetStatus")
            direct.append(time.monotonic() - t0)
        c.close()
        row("web bridge: GetStatus through vitaled-web (HTTP keep-alive, median of %d)" % N,
            "%.2f ms" % ms(via), "%.2f ms (varlink, fresh connection)" % ms(direct),
            "%.2f" % (ms(via) / ms(direct)))
        # the event stream's set-up (a page opens it once): the bridge's
        # TCP accept, its thread, its WatchEvents call, the first line
        setups, directs = [], []
        for i in range(min(N, 50)):
            t0 = time.monotonic()
            s = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            s.request("GET", "/v1/events", headers={"Origin": APP, "Authorization": "Bearer " + token})
            r = s.getresponse()
            r.fp.readline()
            setups.append(time.monotonic() - t0)
            s.close()
            t0 = time.monotonic()
            w = d.watch()
            directs.append(time.monotonic() - t0)
            w.close()
        row("web bridge: event stream opened (GET /v1/events to its first line, median of %d)" % len(setups),
            "%.2f ms" % ms(setups), "%.2f ms (WatchEvents to Watching)" % ms(directs),
            "%.2f" % (ms(setups) / ms(directs)))
    finally:
        br.stop()
        d.stop()


if __name__ == "__main__":
    main()
