#!/usr/bin/python3
"""vitalectl doctor: a healthy terminal (a private pcscd with its vpcd
readers, a file signer with its certificate, the test insurer after an
upload so that the clocks were compared) passes every check (exit 0, no
FAIL); then failures provoked one at a time, each reported on its line
with what to do, exit 1: the state directory's mode, pcscd gone (pcscd and
readers), the insurer gone (after an upload attempt), the daemon stopped
(exit 3). On the way, a Vitale 2 card read counts in vitalectl metrics'
vitaled_cards_read_total{profile="vitale2"}."""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
WORLD = os.path.join(TOP, "tests", "world")
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import check  # noqa: E402

for need in ("/usr/sbin/pcscd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"):
    if not os.path.exists(need):
        print("SKIP: %s is not installed" % need)
        sys.exit(77)
sys.path.insert(0, WORLD)
from world import PcscWorld  # noqa: E402

import test_upload as tu  # noqa: E402
import test_varlink_go as tvg  # noqa: E402

T = "io.vitaled.Terminal."


def doctor(d, rc=None):
    p = d.ctl("--json", "doctor")
    j = json.loads(p.stdout)
    levels = {c["check"]: c for c in j["checks"]}
    if rc is not None:
        check(p.returncode == rc, "doctor exit %d, expected %d: %s" % (p.returncode, rc, p.stdout))
    for c in j["checks"]:
        check(c["level"] == "ok" or c.get("fix"), "a %s without a fix: %r" % (c["level"], c))
    return levels, p.returncode


def failed(levels):
    return sorted(k for k, c in levels.items() if c["level"] == "FAIL")


def test_doctor():
    world = tu.World()
    pcsc = PcscWorld(dir=os.path.join(world.tmp, "pcsc"))
    try:
        pcsc.start()
        env = {"PCSCLITE_CSOCK_NAME": pcsc.socket}
        with harness.Daemon(conf=world.conf(), tmp=world.tmp, name="d", env=env, timeout=10.0) as d:
            tu.wait_for(lambda: d.result(T + "ListReaders")[1]["readers"], 10, "the readers")
            # a card read counts in vitaled_cards_read_total{profile} (the metric's
            # only source the other tests cannot provoke: they have no readers)
            w = d.watch()
            host = pcsc.cardhost(0, log=os.path.join(world.tmp, "host.log"))
            host.insert("vitale2", gen="C")
            w.wait_for("CardRead", timeout=15)
            text = d.ctl("metrics", check_rc=0).stdout
            check('vitaled_cards_read_total{profile="vitale2"} 1' in text, text)
            check('vitaled_reader_state{reader="' in text and 'state="ready"' in text, text)
            host.remove()
            w.wait_for("CardRemoved", timeout=15)
            host.close()
            w.close()
            # the card's events (CardInserted, CardRead with its summary,
            # CardRemoved ...) checked against the interface like
            # test_varlink_go's: with the same generated checker
            binary, idl = tvg.build()
            lines = "".join(json.dumps({"event": e}) + "\n" for e in w.log)
            tvg.run([binary, "validate", idl], stdin=lines)
            tu.create(d, 1)
            tu.wait_for(lambda: tu.drained(d), 30, "the upload")
            levels, rc = doctor(d, 0)
            check(not failed(levels), levels)
            for k in ("daemon", "pcscd", "readers", "signer", "insurer", "queue", "state dir",
                      "disk", "clock", "due dates"):
                check(levels[k]["level"] == "ok", "%s: %r" % (k, levels[k]))
            check("from the insurer's" in levels["clock"]["detail"], levels["clock"])
            human = d.ctl("doctor", check_rc=0).stdout
            check(human.rstrip().endswith("0 failed, %d warnings" %
                                          sum(c["level"] == "warn" for c in levels.values())), human)
            print("  healthy: every check ok or warn (%s), exit 0" %
                  ", ".join("%s %s" % (k, c["level"]) for k, c in levels.items() if c["level"] != "ok"))
            # the state directory readable by others
            os.chmod(d.state, 0o750)
            levels, _ = doctor(d, 1)
            check(failed(levels) == ["state dir"] and "chmod 0700" in levels["state dir"]["fix"],
                  levels["state dir"])
            p = d.ctl("doctor")
            check(p.returncode == 1 and "FAIL  state dir" in p.stdout and "-> chmod 0700" in p.stdout,
                  p.stdout)
            os.chmod(d.state, 0o700)
            # the insurer gone: an upload attempt finds it offline
            world.ins.__exit__(None, None, None)
            tu.create(d, 1)
            d.result(T + "Upload")
            tu.wait_for(lambda: tu.uploader(d)["state"] in ("offline", "error"), 30,
                        "the uploader offline")
            levels, _ = doctor(d, 1)
            check("insurer" in failed(levels), levels["insurer"])
            # pcscd gone
            pcsc.stop()
            tu.wait_for(lambda: not d.result(T + "ListReaders")[1]["readers"], 15, "the readers gone")
            levels, _ = doctor(d, 1)
            check({"pcscd", "readers"} <= set(failed(levels)), failed(levels))
            print("  provoked: %s" % ", ".join(failed(levels)) + " + state dir mode")
        p = d.ctl("doctor")
        check(p.returncode == 3 and "FAIL  daemon" in p.stdout and "systemctl start vitaled" in p.stdout,
              (p.returncode, p.stdout))
    finally:
        try:
            pcsc.stop()
        except Exception:
            pass
        world.close()


if __name__ == "__main__":
    harness.run_tests([test_doctor])
