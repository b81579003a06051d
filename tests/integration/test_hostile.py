#!/usr/bin/python3
"""A clinic PC is a shared, hostile place (issue 11): a local user who may
open the socket, a malformed client, a second instance, a tampered state
directory. Each case below failed before its fix; each prints its figures.

  lockout        64 silent connections as `nobody` (read-only): root is served
                 at once, and every silent one is closed after idle_timeout
  refusals       400 connection attempts beyond nobody's share: a handful of
                 log lines, not one per refusal
  pin_not_logged every malformed shape of SubmitPin/UnblockPin: no PIN digits
                 in the log (jansson used to quote the token)
  reload_access  a user taken out of allowed_users by SIGHUP loses control on
                 the connection it already has, its event stream included
  second         a second vitaled on the same state dir and socket stops, and
                 the first stays reachable
  statedir       a state dir writable by others, or owned by another user, is
                 refused with a message saying what to do; 0750 is tightened
  terminal_id    a terminal-id file that is not a short printable id stops
                 start-up (it used to make GetStatus answer {})
  emfile         with 40 descriptors and 80 clients, the daemon does not spin
  watchers       50 event watchers that never read, 20,000 events each: the
                 daemon's memory stays in tens of MiB (it reached 218 MiB)
"""
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import IFACE, Daemon, Failure, VarlinkError, Varlink, check, mktemp, track  # noqa: E402

NOBODY = pwd.getpwnam("nobody")
USER = (NOBODY.pw_uid, NOBODY.pw_gid)
PINS = ["98765431", "4321", "12345678"]


def as_nobody():
    os.setgid(USER[1])
    os.setgroups([])
    os.setuid(USER[0])


HOLDER = r"""
import socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        conns.append(s)
    except OSError:
        s.close()
# the kernel completes a connect the daemon then refuses: count the ones
# still open after a moment
time.sleep(0.5)
live = []
for s in conns:
    s.setblocking(False)
    try:
        d = s.recv(4096)
        if d == b"":
            s.close()
            continue
    except BlockingIOError:
        pass
    except OSError:
        s.close()
        continue
    live.append(s)
conns = live
print("held %d" % len(conns), flush=True)
t0 = time.monotonic()
open_ = list(conns)
while open_ and time.monotonic() - t0 < 20:
    for s in list(open_):
        s.settimeout(0.05)
        try:
            d = s.recv(4096)
            if not d:
                open_.remove(s)
        except socket.timeout:
            pass
        except OSError:
            open_.remove(s)
print("closed %d after %.2f s" % (len(conns) - len(open_), time.monotonic() - t0), flush=True)
"""


def test_lockout():
    conf = "[api]\nsocket_mode = 0666\nallowed_users = root\nidle_timeout_s = 2\nmax_clients = 64\n"
    with Daemon(conf=conf) as d:
        os.chmod(d.tmp, 0o755)
        p = track(subprocess.Popen([sys.executable, "-c", HOLDER, d.sock, "64"], preexec_fn=as_nobody,
                                   stdout=subprocess.PIPE, text=True))
        held = p.stdout.readline().strip()
        t = time.monotonic()
        st = d.invoke("GetStatus")
        ms = (time.monotonic() - t) * 1000
        check(st["access"] == "control", st)
        # nobody got its share only: the rest of the 64 were refused
        n_held = int(held.split()[1])
        check(0 < n_held <= 16, "nobody holds %d connections" % n_held)
        closed = p.stdout.readline().strip()
        p.wait(timeout=30)
        secs = float(closed.split()[-2])
        check(closed.startswith("closed %d" % n_held), closed)
        check(secs < 5, "silent connections closed after %.2f s (idle_timeout 2 s)" % secs)
        print("  lockout: nobody asked for 64, held %d; root's GetStatus in %.1f ms; "
              "all %d closed after %.2f s" % (n_held, ms, n_held, secs))


def test_refusals():
    conf = "[api]\nsocket_mode = 0666\nallowed_users = root\nidle_timeout_s = 30\n"
    with Daemon(conf=conf) as d:
        os.chmod(d.tmp, 0o755)
        before = d.log_text().count("refusing")
        p = track(subprocess.Popen([sys.executable, "-c", HOLDER, d.sock, "400"], preexec_fn=as_nobody,
                                   stdout=subprocess.PIPE, text=True))
        held = p.stdout.readline().strip()
        time.sleep(0.3)
        lines = d.log_text().count("refusing") - before
        p.kill()
        p.wait()
        check(lines <= 3, "%d log lines for refused connections" % lines)
        check(d.invoke("GetStatus")["state"] == "running", "daemon state")
        print("  refusals: nobody %s of 400; %d log line(s) about the refusals" % (held, lines))


def test_pin_not_logged():
    with Daemon(conf="[daemon]\nlog_level = debug\n") as d:
        shapes = []
        for pin in PINS:
            for method in ("SubmitPin", "UnblockPin"):
                m = IFACE + "." + method
                shapes += [
                    '{"method":"%s","parameters":{"pin":"%s\x01"}}' % (m, pin),
                    '{"method":"%s","parameters":{"pin":"%s' % (m, pin),
                    '{"method":"%s","parameters":{"pin":%s}}' % (m, pin),
                    '{"method":"%s","parameters":{"pin":%sx}}' % (m, pin),
                    '{"method":"%s","parameters":{"pin":"%s\\q"}}' % (m, pin),
                    '{"method":"%s","parameters":{"pin":["%s"]}}' % (m, pin),
                    '{"method":"%s","parameters":{"pin":"%s","pin":"%s"}}' % (m, pin, pin),
                    '{"method":"%s","parameters":{"puk":"%s","new_pin":"%s\x02"}}' % (m, pin, pin),
                    '{"method":"%s","parameters":{"%s":1}}' % (m, pin),
                    '{"method":"%s","parameters":{"pin":"%s"},"bogus":1}' % (m, pin),
                ]
        for s in shapes:
            c = Varlink(d.sock)
            try:
                c.send_raw(s.encode() + b"\0")
                c.recv(timeout=3)
            except (Failure, OSError):
                pass
            c.close()
        d.invoke("GetStatus")
        log = d.log_text()
        for pin in PINS:
            check(pin not in log and pin[:5] not in log, "PIN digits %s in the log" % pin[:2])
        print("  pin_not_logged: %d malformed messages, log of %d lines, no PIN digits" %
              (len(shapes), log.count("\n")))


def test_reload_access():
    conf = "[api]\nsocket_mode = 0666\nallowed_users = root nobody\n"
    with Daemon(conf=conf) as d:
        os.chmod(d.tmp, 0o755)
        script = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[1])
w = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); w.connect(sys.argv[1])
def call(sock, m, more=False):
    msg = {"method": "io.vitaled.Terminal." + m}
    if more: msg["more"] = True
    sock.sendall(json.dumps(msg).encode() + b"\0")
def recv(sock):
    buf = b""
    while not buf.endswith(b"\0"):
        d = sock.recv(65536)
        if not d: return None
        buf += d
    return json.loads(buf[:-1].split(b"\0")[0])
call(s, "GetStatus"); print(recv(s)["parameters"]["access"], flush=True)
call(w, "WatchEvents", more=True); recv(w)
sys.stdin.readline()
call(s, "Reload"); r = recv(s); print(r.get("error", "ok"), flush=True)
call(s, "GetStatus"); print(recv(s)["parameters"]["access"], flush=True)
"""
        p = track(subprocess.Popen([sys.executable, "-c", script, d.sock], preexec_fn=as_nobody,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        check(p.stdout.readline().strip() == "control", "nobody listed: control")
        with open(d.conf, "w") as f:
            f.write("[api]\nsocket_mode = 0666\nallowed_users = root\n")
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "access now read" not in d.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        p.stdin.write("\n")
        p.stdin.flush()
        denied = p.stdout.readline().strip()
        access = p.stdout.readline().strip()
        p.wait(timeout=10)
        check(denied == "org.varlink.service.PermissionDenied", "Reload after withdrawal: %s" % denied)
        check(access == "read", "access after withdrawal: %s" % access)
        print("  reload_access: control withdrawn on the open connection: %s, access %s" % (denied, access))


def test_second_instance():
    with Daemon() as d:
        second = Daemon(tmp=d.tmp, wait=False)
        second.sock, second.state = d.sock, d.state
        second.start()
        rc = second.proc.wait(timeout=15)
        check(rc != 0, "the second instance exited %d" % rc)
        check("in use by another vitaled" in second.log_text(), second.log_text())
        check(os.path.exists(d.sock), "the first daemon's socket is gone")
        check(d.invoke("GetStatus")["state"] == "running", "first daemon unreachable")
        # a stray process answering on the socket path is never replaced either
        other = Daemon(tmp=mktemp(), wait=False)
        other.sock = d.sock
        other.start()
        rc = other.proc.wait(timeout=15)
        check(rc != 0 and "another process answers" in other.log_text(), other.log_text())
        check(d.invoke("GetStatus")["state"] == "running", "first daemon unreachable (2)")
        print("  second: refused with the state dir lock (exit %d) and the live-socket check; "
              "the first still answers" % rc)


def test_statedir():
    tmp = mktemp()
    os.chmod(tmp, 0o755)
    st = os.path.join(tmp, "state")
    os.mkdir(st)
    os.chmod(st, 0o777)
    d = Daemon(tmp=tmp, wait=False)
    d.start()
    rc = d.proc.wait(timeout=15)
    check(rc != 0 and "lets other users write" in d.log_text(), d.log_text())
    os.chmod(st, 0o700)
    os.chown(st, USER[0], USER[1])
    d2 = Daemon(tmp=tmp, name="b", wait=False)
    d2.state = st
    d2.start()
    rc2 = d2.proc.wait(timeout=15)
    check(rc2 != 0 and "not by this daemon's uid" in d2.log_text(), d2.log_text())
    os.chown(st, 0, 0)
    os.chmod(st, 0o750)
    d5 = Daemon(tmp=tmp, name="e")
    d5.state = st
    d5.start()
    mode = os.stat(st).st_mode & 0o777
    d5.stop()
    check(mode == 0o700, "0750 state dir left at %o" % mode)
    check("tightened to 0700" in d5.log_text(), d5.log_text())
    print("  statedir: 0777 refused (exit %d), another owner refused (exit %d), 0750 tightened" % (rc, rc2))


def test_terminal_id():
    for content, why in ((b"\xff\xfe bad\n", "invalid UTF-8"), (b"a b c\n", "spaces"),
                         (b"x" * 80 + b"\n", "too long")):
        tmp = mktemp()
        st = os.path.join(tmp, "state")
        os.mkdir(st, 0o700)
        with open(os.path.join(st, "terminal-id"), "wb") as f:
            f.write(content)
        d = Daemon(tmp=tmp, wait=False)
        d.start()
        rc = d.proc.wait(timeout=15)
        check(rc != 0 and "not a valid terminal id" in d.log_text(), "%s: %s" % (why, d.log_text()))
    print("  terminal_id: invalid UTF-8, spaces, 80 characters: start-up refused with the reason")


def test_emfile():
    with Daemon(conf="[api]\nmax_clients = 200\n") as d:
        subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=40:"], check=True)
        conns = []
        for _ in range(80):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(d.sock)
            except OSError:
                pass
            conns.append(s)
        c0 = d.cpu_s()
        time.sleep(2)
        cpu = d.cpu_s() - c0
        lines = d.log_text().count("accept:")
        for s in conns:
            s.close()
        subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=1024:"], check=True)
        time.sleep(0.5)
        st = d.invoke("GetStatus", timeout=10)
        check(cpu < 0.5, "%.2f s of CPU in 2 s out of descriptors" % cpu)
        check(lines <= 3, "%d accept log lines" % lines)
        check(st["state"] == "running", st)
        print("  emfile: 40 descriptors, 80 clients: %.0f ms of CPU in 2 s, %d log line(s); "
              "served again once descriptors came back" % (cpu * 1000, lines))


def test_watchers():
    # under a wrapper (make memcheck) the daemon is ~30x slower and its RSS is
    # valgrind's: fewer sheets, and the memory bound is reported, not checked
    wrapped = bool(os.environ.get("TEST_WRAPPER"))
    per_client = 500 if wrapped else 5000
    import sheetlib as sl
    key, _, _ = sl.make_key(mktemp())
    with Daemon(conf=sl.conf(key, extra="[api]\nmax_clients = 128\n")) as d:
        rss0 = d.rss_kb()
        ws = []
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(d.sock)
            s.sendall(b'{"method":"io.vitaled.Terminal.WatchEvents","more":true}\0')
            ws.append(s)
        time.sleep(0.3)
        peak = [0]
        done = [False]

        def sample():
            while not done[0]:
                peak[0] = max(peak[0], d.rss_kb())
                time.sleep(0.05)

        def create():
            c = Varlink(d.sock, timeout=30)
            for _ in range(per_client):
                c.call(IFACE + ".CreateSheet", sl.degraded())
            c.close()

        import threading
        t = threading.Thread(target=sample)
        t.start()
        cs = [threading.Thread(target=create) for _ in range(4)]
        for c in cs:
            c.start()
        for c in cs:
            c.join()
        done[0] = True
        t.join()
        for s in ws:
            s.close()
        check(d.invoke("GetStatus")["state"] == "running", "daemon state")
        if not wrapped:
            check(peak[0] < 100 * 1024, "peak RSS %d KiB with 50 watchers that never read" % peak[0])
        print("  watchers: 50 never reading, %d events: RSS %d KiB at start, peak %d KiB%s"
              % (4 * per_client, rss0, peak[0], " (under a wrapper: not checked)" if wrapped else ""))


TESTS = [test_lockout, test_refusals, test_pin_not_logged, test_reload_access, test_second_instance,
         test_statedir, test_terminal_id, test_emfile, test_watchers]

if __name__ == "__main__":
    if os.geteuid() != 0:
        print("skip: needs root (runs clients as nobody)")
        sys.exit(77)
    failed = 0
    for t in TESTS:
        t0 = time.monotonic()
        try:
            t()
            print("  ok   %-24s %.2fs" % (t.__name__, time.monotonic() - t0))
        except (Failure, VarlinkError, AssertionError, subprocess.SubprocessError, OSError) as e:
            failed += 1
            print("  FAIL %-24s %s" % (t.__name__, e))
    sys.exit(1 if failed else 0)
