"""Integration-test harness: start vitaled on a temporary socket and state
dir, talk varlink to it (well-formed or not), and stop everything by PID on
every exit path (normal end, exception, SIGTERM/SIGINT of the test).

Used by tests/integration/test_*.py and the demo/bench scripts. Standard
library only, so it runs on /usr/bin/python3 without extra packages.
"""
import atexit
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
B = os.environ.get("B", os.path.join(TOP, "build"))
if not os.path.isabs(B):
    B = os.path.join(TOP, B)
VITALED = os.path.join(B, "vitaled")
VITALECTL = os.path.join(B, "vitalectl")

_children = []
_tmpdirs = []


def mktemp(prefix="vitaled-test-"):
    """A temporary directory removed when the test process exits (KEEP_TMP=1 keeps it)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def _kill_all(*_):
    for p in list(_children):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass
    if not os.environ.get("KEEP_TMP"):
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


def _on_signal(signum, frame):
    _kill_all()
    sys.exit(128 + signum)


atexit.register(_kill_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def track(proc):
    """Register a child process to be killed by PID on any exit path."""
    _children.append(proc)
    return proc


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Varlink:
    """A raw varlink client: send calls or arbitrary bytes, read NUL-terminated replies."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def call(self, method, params=None, more=False, oneway=False):
        msg = {"method": method}
        if params is not None:
            msg["parameters"] = params
        if more:
            msg["more"] = True
        if oneway:
            msg["oneway"] = True
        self.sock.sendall(json.dumps(msg).encode() + b"\0")
        if oneway:
            return None
        return self.recv()

    def recv(self):
        """The next reply as a dict, or None when the server closed the connection."""
        while b"\0" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def closed_by_peer(self, timeout=3.0):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


class Daemon:
    """vitaled on a private socket and state dir.

    with Daemon(conf="...ini text...", args=[...]) as d:
        d.call("io.vitaled.Terminal.GetStatus")
    """

    def __init__(self, conf=None, args=(), env=None, tmp=None, wrapper=None, wait=True):
        self.tmp = tmp or mktemp()
        self.sock = os.path.join(self.tmp, "vitaled.sock")
        self.state = os.path.join(self.tmp, "state")
        self.log = os.path.join(self.tmp, "vitaled.log")
        self.conf_text = conf
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("LISTEN_FDS", None)
        # never the machine's pcscd: a test that wants readers starts its own
        # (tests/world) and passes PCSCLITE_CSOCK_NAME in env
        self.env["PCSCLITE_CSOCK_NAME"] = os.path.join(self.tmp, "no-pcscd.comm")
        if env:
            self.env.update(env)
        if wrapper is None:
            wrapper = os.environ.get("TEST_WRAPPER", "")
        self.wrapper = shlex.split(wrapper) if wrapper else []
        self.proc = None
        self.wait_ready = wait

    def command(self):
        cmd = self.wrapper + [VITALED, "--foreground", "--socket", self.sock,
                              "--state-dir", self.state]
        if self.conf_text is not None:
            conf = os.path.join(self.tmp, "vitaled.conf")
            with open(conf, "w") as f:
                f.write(self.conf_text)
            cmd += ["--config", conf]
        return cmd + self.args

    def start(self):
        self.logf = open(self.log, "ab")
        self.t_start = time.monotonic()
        self.proc = track(subprocess.Popen(self.command(), env=self.env, stdout=self.logf,
                                           stderr=subprocess.STDOUT))
        if self.wait_ready:
            self.wait_socket()
        return self

    def wait_socket(self, timeout=None):
        timeout = timeout or (60 if self.wrapper else 10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure("vitaled exited with %d during start-up:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                c = Varlink(self.sock, timeout=2)
                r = c.call("io.vitaled.Terminal.GetStatus")
                c.close()
                if r and "parameters" in r:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise Failure("vitaled did not answer within %ss:\n%s" % (timeout, self.log_text()))

    def client(self, timeout=5.0):
        return Varlink(self.sock, timeout)

    def call(self, method, params=None):
        c = self.client()
        try:
            return c.call(method, params)
        finally:
            c.close()

    def ctl(self, *args, input=None, check_rc=None, user=None):
        cmd = [VITALECTL, "--socket", self.sock] + list(args)
        pre = None
        if user is not None:
            def pre():
                os.setgid(user[1])
                os.setgroups([])
                os.setuid(user[0])
        p = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=30, preexec_fn=pre)
        if check_rc is not None and p.returncode != check_rc:
            raise Failure("vitalectl %s: exit %d, expected %d\nstdout: %s\nstderr: %s" %
                          (" ".join(args), p.returncode, check_rc, p.stdout, p.stderr))
        return p

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10):
        """SIGTERM and wait; returns (exit code, seconds taken)."""
        if not self.proc or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None, 0.0)
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, time.monotonic() - t0

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def cpu_s(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.stop()
        if self.proc in _children:
            _children.remove(self.proc)
        self.logf.close()
        return False


def run_tests(tests):
    """Run test functions in order; print one line each; exit 1 on any failure."""
    failed = 0
    only = os.environ.get("ONLY")
    for t in tests:
        if only and only not in t.__name__:
            continue
        t0 = time.monotonic()
        try:
            t()
            print("  ok   %-40s %.2fs" % (t.__name__, time.monotonic() - t0), flush=True)
        except Exception as e:  # noqa: BLE001 - report every kind of failure
            failed += 1
            print("  FAIL %-40s %s: %s" % (t.__name__, type(e).__name__, e), flush=True)
    _kill_all()
    sys.exit(1 if failed else 0)
