#!/usr/bin/python3
"""The foundation end to end: start-up and configuration errors, the local
API (round trips, malformed clients, concurrency, access), vitalectl and its
exit codes, systemd notification, SIGHUP and SIGTERM."""
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (VITALECTL, VITALED, Daemon, Failure, Varlink, check,  # noqa: E402
                     mktemp, run_tests, track)

T = "io.vitaled.Terminal."
# under a wrapper (make memcheck: valgrind) the daemon runs ~20x slower;
# deadlines scale, the checks stay the same
SLOW = 20 if os.environ.get("TEST_WRAPPER") else 1


def test_status_round_trip():
    with Daemon() as d:
        p = d.ctl("status", "--json", check_rc=0)
        st = json.loads(p.stdout)
        check(st["version"] and isinstance(st["uptime_s"], int), st)
        check(st["state"] == "running" and st["mode"] == "clinic", st)
        check(st["uploader"]["state"] == "disabled", st["uploader"])
        check(st["terminal_id"].startswith("VT-"), st)
        check(st["access"] == "control", st)
        p = d.ctl("status", check_rc=0)
        check("running" in p.stdout and "uploader: disabled" in p.stdout, p.stdout)
        # the terminal id is kept across restarts
        tid = st["terminal_id"]
    with Daemon(tmp=d.tmp) as d2:
        check(json.loads(d2.ctl("--json", "status", check_rc=0).stdout)["terminal_id"] == tid, "terminal id changed")


def test_vitalectl_exit_codes():
    tmp = mktemp()
    p = subprocess.run([VITALECTL, "--socket", tmp + "/none.sock", "status"], capture_output=True, text=True)
    check(p.returncode == 3, "unreachable daemon: exit %d" % p.returncode)
    check("cannot reach vitaled" in p.stderr, p.stderr)
    p = subprocess.run([VITALECTL, "frobnicate"], capture_output=True, text=True)
    check(p.returncode == 2, "unknown command: exit %d" % p.returncode)
    with Daemon() as d:
        p = d.ctl("call", "io.vitaled.Terminal.NoSuchMethod")
        check(p.returncode == 1 and "MethodNotFound" in p.stderr, (p.returncode, p.stderr))
        p = d.ctl("call", "io.vitaled.Terminal.GetStatus", "[1]")
        check(p.returncode == 2, "bad JSON parameters: exit %d" % p.returncode)
        p = d.ctl("call", "org.varlink.service.GetInterfaceDescription", '{"interface":"io.vitaled.Terminal"}', check_rc=0)
        desc = json.loads(p.stdout)["description"]
        check("method GetStatus()" in desc and "interface io.vitaled.Terminal" in desc, desc[:200])


def test_malformed_clients():
    with Daemon() as d:
        # oversize: more than [api] max_message (64 KiB) without a NUL
        c = d.client()
        c.send_raw(b" " * 70000)
        r = c.recv()
        check(r and r.get("error") == T + "ProtocolError", r)
        check(r["parameters"]["reason"] == "message too large", r)
        check(c.closed_by_peer(), "oversize client not disconnected")
        # invalid JSON
        c = d.client()
        c.send_raw(b'{"method": "io.vitaled.Terminal.GetStatus",,}\0')
        r = c.recv()
        check(r and r.get("error") == T + "ProtocolError" and "invalid JSON" in r["parameters"]["reason"], r)
        check(c.closed_by_peer(), "invalid JSON client not disconnected")
        # well-formed errors keep the connection
        c = d.client()
        r = c.call(T + "NoSuch")
        check(r["error"] == "org.varlink.service.MethodNotFound", r)
        r = c.call("com.example.Other.Thing")
        check(r["error"] == "org.varlink.service.InterfaceNotFound", r)
        r = c.call(T + "GetStatus", {"unexpected": 1})
        check(r["error"] == "org.varlink.service.InvalidParameter" and r["parameters"]["parameter"] == "unexpected", r)
        r = c.call(T + "GetStatus")
        check("error" not in r and r["parameters"]["state"] == "running", r)
        c.close()
        # binary garbage
        c = d.client()
        c.send_raw(bytes(range(1, 256)) + b"\0")
        r = c.recv()
        check(r and r.get("error") == T + "ProtocolError", r)
        c.close()
        check(d.proc.poll() is None, "daemon died")
        check(d.call(T + "GetStatus")["parameters"]["state"] == "running", "daemon not answering")


def test_half_sent_and_stalled_clients():
    with Daemon(conf="[api]\nidle_timeout_s = 2\n") as d:
        half = d.client()
        half.send_raw(b'{"method":"io.vitaled.Terminal.GetSt')
        stalled = d.client()  # connects, sends a call, never reads
        for _ in range(50):
            stalled.send_raw(b'{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.vitaled.Terminal"}}\0')
        t0 = time.monotonic()
        r = d.call(T + "GetStatus")
        check(r["parameters"]["state"] == "running", r)
        check(time.monotonic() - t0 < 1.0 * SLOW, "a half-sent message delayed another client")
        half.send_raw(b'atus"}\0')
        r = half.recv()
        check(r and r["parameters"]["state"] == "running", r)
        # a half message left alone is closed after idle_timeout_s
        half.send_raw(b'{"meth')
        r = half.recv()
        check(r and r.get("error") == T + "ProtocolError" and "timed out" in r["parameters"]["reason"], r)
        stalled.close()


def test_many_concurrent_clients():
    with Daemon() as d:
        errors = []

        def worker():
            try:
                c = d.client()
                for _ in range(20):
                    r = c.call(T + "GetStatus")
                    if not r or "parameters" not in r:
                        errors.append(r)
                c.close()
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        ts = [threading.Thread(target=worker) for _ in range(40)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(not errors, errors[:3])


def test_sigterm_exit():
    d = Daemon().start()
    c = d.client()  # an open idle client must not hold the stop up
    rc, took = d.stop()
    check(rc == 0, "exit code %s" % rc)
    check(took < 2.0, "stop took %.2fs" % took)
    check(not os.path.exists(d.sock), "socket left behind")
    check("stopped" in d.log_text(), d.log_text())
    c.close()


def test_config_errors():
    tmp = mktemp()
    conf = os.path.join(tmp, "bad.conf")
    with open(conf, "w") as f:
        f.write("[daemon]\nmode = clinic\n\n[api]\nmax_clientz = 3\n")
    sock = os.path.join(tmp, "s.sock")
    p = subprocess.run([VITALED, "--config", conf, "--socket", sock, "--state-dir", tmp + "/st"],
                       capture_output=True, text=True, timeout=10)
    check(p.returncode == 2, "exit %d" % p.returncode)
    check("%s:5: unknown key 'max_clientz' in [api]" % conf in p.stderr, p.stderr)
    check(not os.path.exists(sock) and not os.path.exists(tmp + "/st"), "something was started")
    p = subprocess.run([VITALED, "--config", tmp + "/missing.conf"], capture_output=True, text=True)
    check(p.returncode == 2 and "missing.conf:0: cannot read" in p.stderr, p.stderr)
    p = subprocess.run([VITALED, "--log-level", "chatty"], capture_output=True, text=True)
    check(p.returncode == 2, "bad --log-level: exit %d" % p.returncode)
    p = subprocess.run([VITALED, "--bogus"], capture_output=True, text=True)
    check(p.returncode == 2, "bad option: exit %d" % p.returncode)
    p = subprocess.run([VITALED, "--version"], capture_output=True, text=True)
    check(p.returncode == 0 and p.stdout.startswith("vitaled "), p.stdout)
    # --check-config prints the effective configuration, secrets redacted
    with open(conf, "w") as f:
        f.write("[signer]\nbackend = file\nkey_file = /very/secret/key.pem\n[daemon]\nmode = till\n")
    p = subprocess.run([VITALED, "--config", conf, "--check-config", "--socket", "/tmp/x.sock"],
                       capture_output=True, text=True)
    check(p.returncode == 0, p.stderr)
    check("mode = till" in p.stdout and "socket = /tmp/x.sock" in p.stdout, p.stdout)
    check("/very/secret" not in p.stdout and "key_file = (redacted)" in p.stdout, p.stdout)
    # an unwritable state dir stops start-up with a clear error
    p = subprocess.run([VITALED, "--socket", sock, "--state-dir", "/proc/vitaled-cannot"],
                       capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and "state dir /proc/vitaled-cannot" in p.stderr, (p.returncode, p.stderr))


def test_sighup_reload():
    conf = "[daemon]\nlog_level = info\n"
    with Daemon(conf=conf) as d:
        confpath = os.path.join(d.tmp, "vitaled.conf")
        with open(confpath, "w") as f:
            f.write("[daemon]\nlog_level = debug\n[api]\nmax_clients = 5\n")
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "max_clients changed" not in d.log_text():
            time.sleep(0.05)
        log = d.log_text()
        check("reload: daemon.log_level applied" in log, log)
        check("reload: api.max_clients changed but needs a restart" in log, log)
        # a broken file on reload keeps the running configuration
        with open(confpath, "w") as f:
            f.write("[daemon]\nbad key here\n")
        p = d.ctl("reload")
        check(p.returncode == 1 and "InternalError" in p.stderr, (p.returncode, p.stderr))
        check(d.call(T + "GetStatus")["parameters"]["state"] == "running", "daemon not running after bad reload")
        check("keeping the running configuration" in d.log_text(), d.log_text())


def test_peer_access():
    nobody = pwd.getpwnam("nobody")
    user = (nobody.pw_uid, nobody.pw_gid)
    # 0660 root:root socket: nobody cannot even connect
    with Daemon() as d:
        os.chmod(d.tmp, 0o755)
        p = d.ctl("status", user=user)
        check(p.returncode == 3, "nobody reached a 0660 socket: exit %d" % p.returncode)
    # 0666 socket: nobody reads status, but may not use control methods
    with Daemon(conf="[api]\nsocket_mode = 0666\nallowed_users = root\nallowed_groups = \n") as d:
        os.chmod(d.tmp, 0o755)
        p = d.ctl("status", "--json", user=user, check_rc=0)
        check(json.loads(p.stdout)["access"] == "read", p.stdout)
        p = d.ctl("reload", user=user)
        check(p.returncode == 1 and "PermissionDenied" in p.stderr, (p.returncode, p.stderr))
        check("denied io.vitaled.Terminal.Reload" in d.log_text(), d.log_text())
    # listed by name: control
    with Daemon(conf="[api]\nsocket_mode = 0666\nallowed_users = nobody\n") as d:
        os.chmod(d.tmp, 0o755)
        p = d.ctl("status", "--json", user=user, check_rc=0)
        check(json.loads(p.stdout)["access"] == "control", p.stdout)
        d.ctl("reload", user=user, check_rc=0)


def test_systemd_notify():
    tmp = mktemp()
    nsock = os.path.join(tmp, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(nsock)
    s.settimeout(0.2)
    d = Daemon(env={"NOTIFY_SOCKET": nsock, "WATCHDOG_USEC": "400000"}, wait=False)
    d.env["NOTIFY_SOCKET"] = nsock
    d.start()
    msgs = []
    ready_at = None
    listening_when_ready = None
    deadline = time.monotonic() + 10 * SLOW
    while time.monotonic() < deadline:
        try:
            m = s.recv(4096).decode()
        except socket.timeout:
            if ready_at and time.monotonic() - ready_at > 1.0 * SLOW:
                break
            continue
        msgs.append((time.monotonic(), m))
        if "READY=1" in m and ready_at is None:
            ready_at = time.monotonic()
            try:
                c = Varlink(d.sock, 1)
                listening_when_ready = "parameters" in c.call(T + "GetStatus")
                c.close()
            except OSError:
                listening_when_ready = False
    check(ready_at is not None, "no READY=1: %s" % msgs)
    check(listening_when_ready, "READY=1 before the API answered")
    check(any("STATUS=starting" in m for _, m in msgs), msgs)
    pings = [t for t, m in msgs if "WATCHDOG=1" in m]
    check(len(pings) >= 3, "watchdog pings: %d in ~1s at 200ms" % len(pings))
    d.stop()
    stop_msgs = []
    try:
        while True:
            stop_msgs.append(s.recv(4096).decode())
    except socket.timeout:
        pass
    check(any("STOPPING=1" in m for m in stop_msgs), stop_msgs)
    s.close()


def test_socket_activation():
    """An inherited listening socket (LISTEN_FDS) is used instead of binding."""
    tmp = mktemp()
    path = os.path.join(tmp, "act.sock")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(8)
    fd = ls.fileno()

    def pre():
        os.dup2(fd, 3)
        os.environ["LISTEN_PID"] = str(os.getpid())
    env = dict(os.environ, LISTEN_FDS="1")
    p = track(subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', VITALED, "--socket", tmp + "/other.sock",
                                "--state-dir", tmp + "/st"], env=env, pass_fds=(fd,), preexec_fn=lambda: os.dup2(fd, 3),
                               stderr=subprocess.PIPE))
    try:
        deadline = time.monotonic() + 10
        r = None
        while time.monotonic() < deadline and r is None:
            try:
                c = Varlink(path, 1)
                r = c.call(T + "GetStatus")
                c.close()
            except OSError:
                time.sleep(0.05)
        check(r and r["parameters"]["state"] == "running", r)
        check(not os.path.exists(tmp + "/other.sock"), "bound its own socket despite LISTEN_FDS")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=5)


if __name__ == "__main__":
    run_tests([test_status_round_trip, test_vitalectl_exit_codes, test_malformed_clients,
               test_half_sent_and_stalled_clients, test_many_concurrent_clients, test_sigterm_exit,
               test_config_errors, test_sighup_reload, test_peer_access, test_systemd_notify,
               test_socket_activation])
