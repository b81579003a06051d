#!/usr/bin/python3
"""vitalectl metrics and [metrics] textfile, read by a real parser: promtool
(Debian's prometheus package) `check metrics`, then the samples parsed and
their values checked against what the test did: sheets by state, upload
attempts, a wrong PIN, the oldest waiting sheet's age, the nearest due date.
The textfile: written at start, atomically (no temporary left, mode 0644),
rewritten on its interval, vitaled_up 0 after a stop; a path not ending in
.prom is a configuration error."""
import os
import re
import shutil
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import sheetlib  # noqa: E402
from harness import check  # noqa: E402

import test_upload as tu  # noqa: E402

T = "io.vitaled.Terminal."
PROMTOOL = shutil.which("promtool")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')


def promtool(text, what):
    if not PROMTOOL:
        raise harness.Failure("promtool is needed (Debian's prometheus package; packaging/deps.sh)")
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    check(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
          "promtool check metrics on %s: exit %d\n%s%s" % (what, p.returncode, p.stdout, p.stderr))


def samples(text):
    """{(name, labels-string): value}"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        check(m, "not a sample line: %r" % line)
        out[(m.group(1), m.group(3) or "")] = float(m.group(4))
    return out


def test_metrics_and_textfile():
    world = tu.World()
    try:
        prom = os.path.join(world.tmp, "textfile", "vitaled.prom")
        os.makedirs(os.path.dirname(prom))
        # a signer key with a password: a wrong one counts as a PIN failure
        key, _, _ = sheetlib.make_key(world.tmp, name="locked", password="2468")
        conf = world.conf() + "[metrics]\ntextfile = %s\ninterval_s = 5\n" % prom
        with harness.Daemon(conf=conf, tmp=world.tmp, name="d", timeout=10.0) as d:
            check(os.path.exists(prom), "no textfile at start")
            st = os.stat(prom)
            check(stat.S_IMODE(st.st_mode) == 0o644, "textfile mode %o" % stat.S_IMODE(st.st_mode))
            ids = tu.create(d, 3)
            p = d.ctl("metrics", check_rc=0)
            promtool(p.stdout, "vitalectl metrics")
            s = samples(p.stdout)
            check(s[("vitaled_up", "")] == 1, s)
            check(s[("vitaled_sheets", 'state="queued"')] + s[("vitaled_sheets", 'state="sending"')]
                  + s[("vitaled_sheets", 'state="accepted"')] == 3, s)
            check(("vitaled_next_due_timestamp_seconds", "") in s or
                  s[("vitaled_sheets", 'state="accepted"')] == 3, "no next due date while sheets wait")
            tu.wait_for(lambda: tu.drained(d), 30, "the upload")
            s = samples(d.ctl("metrics", check_rc=0).stdout)
            check(s[("vitaled_sheets", 'state="accepted"')] == 3, s)
            check(s[("vitaled_upload_attempts_total", "")] >= 1, s)
            check(s[("vitaled_oldest_waiting_sheet_age_seconds", "")] == 0, s)
            check(("vitaled_next_due_timestamp_seconds", "") not in s, "a next due date with nothing waiting")
            check(s[("vitaled_uploader_state", 'state="idle"')] == 1, s)
            # the JSON form: the counters
            import json
            j = json.loads(d.ctl("--json", "metrics", check_rc=0).stdout)
            check(any(c["name"] == "vitaled_upload_attempts_total" and c["value"] >= 1
                      for c in j["counters"]), j["counters"])
            # the textfile is rewritten on its interval, whole
            m0 = os.stat(prom).st_mtime
            tu.wait_for(lambda: os.stat(prom).st_mtime > m0, 12, "the textfile rewritten")
            with open(prom) as f:
                text = f.read()
            promtool(text, "the textfile")
            check(samples(text)[("vitaled_sheets", 'state="accepted"')] == 3, text)
            left = [n for n in os.listdir(os.path.dirname(prom)) if n != "vitaled.prom"]
            check(not left, "temporary files left: %s" % left)
        with open(prom) as f:
            text = f.read()
        promtool(text, "the textfile after stop")
        check(samples(text)[("vitaled_up", "")] == 0, "vitaled_up after stop")
        # a wrong PIN for a locked signer
        conf2 = sheetlib.conf(key) + "[metrics]\ntextfile = %s\n" % prom
        with harness.Daemon(conf=conf2, tmp=world.tmp, name="d2", timeout=10.0) as d:
            end = time.monotonic() + 10
            while d.result(T + "GetSigner")[1].get("state") not in ("locked",) and time.monotonic() < end:
                time.sleep(0.05)
            err, r = d.result(T + "SubmitPin", {"target": "practitioner", "pin": "1111"})
            check(err == T + "PinIncorrect", (err, r))
            s = samples(d.ctl("metrics", check_rc=0).stdout)
            check(s.get(("vitaled_pin_failures_total", 'target="practitioner"')) == 1, s)
            check(s[("vitaled_signer_state", 'backend="file",state="locked"')] == 1, s)
        # a textfile the collector would never read: refused at start
        p = subprocess.run([harness.VITALED, "--check-config", "--config", "/dev/stdin"],
                           input="[metrics]\ntextfile = /tmp/vitaled.txt\n", capture_output=True,
                           text=True, timeout=30)
        check(p.returncode == 2 and ".prom" in p.stderr, (p.returncode, p.stderr))
    finally:
        world.close()
    print("  promtool accepts vitalectl metrics and the textfile; values match the sheets, "
          "the upload and a wrong PIN; the textfile is whole, 0644, vitaled_up 0 after stop")


if __name__ == "__main__":
    harness.run_tests([test_metrics_and_textfile])
