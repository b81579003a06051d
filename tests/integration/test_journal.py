#!/usr/bin/python3
"""vitaled's journal fields on the wire: the daemon runs as under systemd
(JOURNAL_STREAM naming its stderr) in a private mount namespace whose
/run/systemd/journal/socket is this test's own datagram socket, so the real
sd_journal_sendv of libsystemd sends to it and the test reads journald's
native protocol (docs/journal.md):

  ready      the start-up message has MESSAGE_ID=<ready>, PRIORITY=5,
             SYSLOG_IDENTIFIER=vitaled, and nothing went to stderr as a line
  reader     a virtual PC/SC reader: MESSAGE_ID=<reader added>, READER=<its name>;
             a Vitale 2 read: <card read> with READER=, its NIR masked
  sheet      a sheet created from it: <sheet queued> with SHEET_ID=<its id>
  stop       SIGTERM: <stopping>
  plain      the same daemon with JOURNAL_STREAM naming another file: plain
             "<N>" lines on stderr, nothing sent to the socket

Needs root (unshare -m, mount), pcscd and vpcd. Exit 0 pass, 77 skip, 1 fail.
"""
import os
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sheetlib as sl  # noqa: E402
from sheetlib import harness, call, till_part  # noqa: E402

WORLD = os.path.join(sl.TOP, "tests", "world")
check = harness.check
R0 = "Virtual PCD 00 00"
IDS = {}


def message_ids():
    """LOG_ID_* from lib/log.h (the one place they are defined)."""
    with open(os.path.join(sl.TOP, "lib", "log.h")) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and p[0] == "#define" and p[1].startswith("LOG_ID_"):
                IDS[p[1][7:].lower()] = p[2].strip('"')


def parse_native(data):
    """journald's native protocol: KEY=value lines, or KEY\\n<le64 size><bytes>\\n."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            k = line
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            v = data[nl + 9:nl + 9 + n]
            check(data[nl + 9 + n:nl + 10 + n] == b"\n", "binary field %r ends with a newline" % k)
            i = nl + 10 + n
        fields[k.decode()] = v.decode()
    return fields


class FakeJournal:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)
        self.s.settimeout(0.2)
        self.entries, self.lock, self.done = [], threading.Lock(), False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done:
            try:
                data = self.s.recv(1 << 20)
            except socket.timeout:
                continue
            with self.lock:
                self.entries.append(parse_native(data))

    def wait_for(self, timeout=15, **want):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                for e in self.entries:
                    if all(e.get(k) == v for k, v in want.items()):
                        return e
            time.sleep(0.05)
        with self.lock:
            got = [(e.get("MESSAGE_ID"), e.get("MESSAGE")) for e in self.entries[-15:]]
        raise harness.Failure("no journal entry with %r; last: %r" % (want, got))

    def close(self):
        self.done = True
        self.t.join()
        self.s.close()


def ns_wrapper(tmp, jdir):
    """A wrapper running vitaled in a mount namespace where /run/systemd/journal is jdir."""
    base = "/run/systemd" if os.path.isdir("/run/systemd") else "/run"
    script = os.path.join(tmp, "ns.sh")
    with open(script, "w") as f:
        f.write("set -e\nmount -t tmpfs tmpfs %s\nmkdir -p /run/systemd/journal\n"
                "mount --bind %s /run/systemd/journal\nexec \"$@\"\n" % (base, jdir))
    return "unshare -m --propagation private sh %s" % script


def journal_env(log_path, match=True):
    st = os.stat(log_path)
    return {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino + (0 if match else 1))}


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root (a mount namespace)")
        sys.exit(77)
    if subprocess.run(["unshare", "-m", "--propagation", "private", "true"]).returncode != 0:
        print("SKIP: unshare -m does not work here")
        sys.exit(77)
    if not all(os.path.exists(p) for p in ("/usr/sbin/pcscd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so")):
        print("SKIP: pcscd or vpcd not installed")
        sys.exit(77)
    message_ids()
    sys.path.insert(0, WORLD)
    from world import PcscWorld
    from cardhost import CardHost
    tmp = harness.mktemp("test_journal-")
    key, _, _ = sl.make_key(tmp)
    jdir = os.path.join(tmp, "journal")
    os.makedirs(jdir)
    fj = FakeJournal(os.path.join(jdir, "socket"))
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    world.start()
    host = CardHost(world.port, log=os.path.join(tmp, "cardhost.log"))
    wrapper = ns_wrapper(tmp, jdir) + (" " + harness.WRAPPER if harness.WRAPPER else "")
    try:
        dd = os.path.join(tmp, "j")
        os.makedirs(dd)
        log = os.path.join(dd, "vitaled.log")
        open(log, "ab").close()
        env = dict(world.env)
        env.update(journal_env(log))
        d = harness.Daemon(conf=sl.conf(key), tmp=dd, env=env, wrapper=wrapper)

        def t_ready():
            d.start()
            e = fj.wait_for(MESSAGE_ID=IDS["ready"])
            check(e.get("PRIORITY") == "5" and e.get("SYSLOG_IDENTIFIER") == "vitaled",
                  "ready: PRIORITY=5, SYSLOG_IDENTIFIER=vitaled (%r)" % e)
            check(e["MESSAGE"].startswith("ready: terminal "), "ready: the message (%r)" % e["MESSAGE"])
            check("READER" not in e and "SHEET_ID" not in e, "ready: no READER, no SHEET_ID")
            with open(log, "rb") as f:
                text = f.read().decode(errors="replace")
            check("ready: terminal" not in text, "nothing went to stderr as a line (%r)" % text[-300:])

        def t_reader():
            e = fj.wait_for(MESSAGE_ID=IDS["reader_added"], READER=R0)
            check(e["MESSAGE"].startswith("reader %s " % R0) and e["PRIORITY"] == "5",
                  "reader added: %r" % e)
            host.insert("vitale2")
            e = fj.wait_for(MESSAGE_ID=IDS["card_read"], READER=R0)
            import cards
            nir = cards.DEFAULT_HOLDERS["beneficiaries"][0]["nir"]
            check(nir not in e["MESSAGE"], "card read: the NIR is masked (%r)" % e["MESSAGE"])

        def t_sheet():
            err, r = call(d, "CreateSheet", {"reader": R0, "sheet": till_part()})
            check(err is None, "CreateSheet: %s %r" % (err, r))
            e = fj.wait_for(MESSAGE_ID=IDS["sheet_queued"], SHEET_ID=r["id"])
            check(r["id"] in e["MESSAGE"] and "READER" not in e, "sheet queued: %r" % e)

        def t_stop():
            d.stop()
            fj.wait_for(MESSAGE_ID=IDS["stopping"])

        def t_plain():
            n0 = len(fj.entries)
            dd2 = os.path.join(tmp, "p")
            os.makedirs(dd2)
            log2 = os.path.join(dd2, "vitaled.log")
            open(log2, "ab").close()
            env2 = dict(world.env)
            env2.update(journal_env(log2, match=False))
            d2 = harness.Daemon(conf=sl.conf(key), tmp=dd2, env=env2, wrapper=wrapper).start()
            d2.stop()
            with open(log2, "rb") as f:
                text = f.read().decode(errors="replace")
            check("<5>ready: terminal " in text, "plain <N> lines on stderr (%r)" % text[-300:])
            time.sleep(0.3)
            check(len(fj.entries) == n0, "nothing sent to the journal socket (%d)" % (len(fj.entries) - n0))

        harness.run_tests([t_ready, t_reader, t_sheet, t_stop, t_plain])
    finally:
        host.close()
        world.stop()
        fj.close()


if __name__ == "__main__":
    main()
