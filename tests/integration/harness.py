"""Integration-test harness: the one place that starts vitaled and speaks
varlink to it, for tests/integration/test_*.py, tests/demo.py and the bench
scripts. Standard library only, so it runs on /usr/bin/python3 without extra
packages.

- Daemon: vitaled with its own configuration file, state dir and private
  socket (in a temporary directory, or DIR/NAME for several daemons in one
  test), under $TEST_WRAPPER when set, started with the machine's pcscd and
  systemd out of reach; start() returns once the API answers GetStatus;
  stop() is SIGTERM then SIGKILL, by PID.
- Every child process (daemons and whatever a test passes to track()) is
  killed by PID on every exit path: normal end, exception, SIGTERM/SIGINT/
  SIGHUP of the test; temporary directories made by mktemp() go too
  (KEEP_TMP=1 keeps them).
- Varlink: a client on one connection: call() gives the raw reply (for
  tests of the protocol itself), invoke() the parameters or a VarlinkError
  carrying the error's name and parameters, result() (error, parameters),
  call_more() a stream of replies; send_raw()/closed_by_peer() for
  malformed clients.
- Watch: the WatchEvents stream, checked for lost events; expect() in
  order, wait_for() skipping the others.
- Notify: a NOTIFY_SOCKET of the test's own (sd_notify datagrams), for
  start-up timings: Daemon(env=n.env()), then n.wait_for("READY=1").
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
IFACE = "io.vitaled.Terminal"
WRAPPER = os.environ.get("TEST_WRAPPER", "")

_children = []
_tmpdirs = []
_daemons = []


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
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def track(proc):
    """Register a child process to be killed by PID on any exit path."""
    _children.append(proc)
    return proc


class Failure(Exception):
    """A test's check failed."""


class Closed(Failure):
    """vitaled closed the connection."""


class VarlinkError(Failure):
    """A varlink error reply: name (e.g. io.vitaled.Terminal.NoCard) and
    parameters (a dict, maybe empty)."""

    def __init__(self, name, parameters=None, method=None):
        self.name = name
        self.parameters = parameters or {}
        self.method = method
        Failure.__init__(self, "%s%s %r" % (method + ": " if method else "", name, self.parameters))

    @property
    def short(self):
        """The error name without the interface: NoCard, PinIncorrect, ..."""
        return self.name[len(IFACE) + 1:] if self.name.startswith(IFACE + ".") else self.name


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def qualify(method):
    """GetStatus -> io.vitaled.Terminal.GetStatus; a qualified name is kept."""
    return method if "." in method else IFACE + "." + method


class Varlink:
    """A varlink client on one connection: NUL-terminated JSON both ways."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, method, params=None, more=False, oneway=False):
        """Send one call and do not wait for its reply."""
        msg = {"method": method}
        if params is not None:
            msg["parameters"] = params
        if more:
            msg["more"] = True
        if oneway:
            msg["oneway"] = True
        self.sock.sendall(json.dumps(msg).encode() + b"\0")

    def call(self, method, params=None, more=False, oneway=False, timeout=None):
        """The first reply as it came (a dict with "parameters" or "error"),
        None when vitaled closed the connection (or for a oneway call)."""
        self.send(method, params, more, oneway)
        if oneway:
            return None
        return self.recv(timeout)

    def recv(self, timeout=None):
        """The next reply as a dict, or None when the server closed the
        connection. socket.timeout when nothing came within timeout (or the
        connection's timeout)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
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

    def invoke(self, method, params=None, timeout=None):
        """The reply's parameters; VarlinkError for an error reply, Closed
        when vitaled closed the connection. method: qualified or not."""
        method = qualify(method)
        r = self.call(method, params if params is not None else {}, timeout=timeout)
        return _parameters(r, method)

    def result(self, method, params=None, timeout=None):
        """(error name or None, parameters) of one call; Closed when vitaled
        closed the connection. method: qualified or not."""
        try:
            return None, self.invoke(method, params, timeout)
        except VarlinkError as e:
            return e.name, e.parameters

    def call_more(self, method, params=None):
        """A call with "more": a Stream of its replies."""
        method = qualify(method)
        self.send(method, params if params is not None else {}, more=True)
        return Stream(self, method)

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


def _parameters(reply, method):
    if reply is None:
        raise Closed("%s: connection closed by vitaled" % method)
    if "error" in reply:
        raise VarlinkError(reply["error"], reply.get("parameters"), method)
    return reply.get("parameters", {})


class Stream:
    """The replies of a call with "more", one at a time."""

    def __init__(self, conn, method):
        self.conn = conn
        self.method = method
        self.ended = False

    def next(self, timeout=None):
        """The next reply's parameters; VarlinkError for an error reply,
        Closed when vitaled closed the connection, Failure after the last
        reply (one without "continues"), socket.timeout when nothing came."""
        if self.ended:
            raise Failure("%s: the stream has ended" % self.method)
        r = self.conn.recv(timeout)
        p = _parameters(r, self.method)
        if not r.get("continues"):
            self.ended = True
        return p

    def close(self):
        self.conn.close()


class Watch:
    """A WatchEvents stream (target: a Daemon or a socket path). The first
    reply must be the Watching event; every later one must continue the
    stream with the next sequence number (an event lost is a failure)."""

    def __init__(self, target, timeout=10.0):
        path = target.sock if hasattr(target, "sock") else target
        self.conn = Varlink(path, timeout)
        self.conn.send(IFACE + ".WatchEvents", {}, more=True)
        first = self.conn.recv(timeout)
        if not first or first.get("parameters", {}).get("event", {}).get("type") != "Watching":
            raise Failure("WatchEvents: first reply is %r" % first)
        self.seq = first["parameters"]["event"]["seq"]
        self.log = []

    def next(self, timeout):
        """The next event; socket.timeout when none came within timeout."""
        m = self.conn.recv(max(timeout, 0.001))
        if m is None:
            raise Closed("watch closed by vitaled")
        if "error" in m:
            raise Failure("watch ended: %r" % m)
        if not m.get("continues"):
            raise Failure("watch reply without continues: %r" % m)
        e = m["parameters"]["event"]
        if e["seq"] != self.seq + 1:
            raise Failure("event seq %d after %d: one lost" % (e["seq"], self.seq))
        self.seq = e["seq"]
        self.log.append(e)
        return e

    def expect(self, etype, timeout=10.0, ignore=(), **fields):
        """The next event of etype with these fields; an event in between
        must be of a type in ignore (order is checked)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise Failure("no %s %r within %.1f s (seen: %s)" % (
                    etype, fields, timeout, [x["type"] for x in self.log[-8:]]))
            try:
                e = self.next(left)
            except socket.timeout:
                continue
            if e["type"] == etype and all(e.get(k) == v for k, v in fields.items()):
                return e
            if e["type"] not in ignore:
                raise Failure("expected %s %r, got %r" % (etype, fields, e))

    def wait_for(self, etype, timeout=10.0, **fields):
        """The next event of etype (a type, or a tuple of types: any of them)
        with these fields; other events are skipped."""
        types = etype if isinstance(etype, tuple) else (etype,)
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise Failure("no %s %r within %.1f s (last seen: %s)" % (
                    etype, fields, timeout, [(x["type"], x.get("reader")) for x in self.log[-8:]]))
            try:
                e = self.next(left)
            except socket.timeout:
                continue
            if e["type"] in types and all(e.get(k) == v for k, v in fields.items()):
                return e

    def close(self):
        self.conn.close()


class Notify:
    """A NOTIFY_SOCKET of the test's own: a datagram socket at path (default:
    in a new mktemp() directory) that receives vitaled's sd_notify messages.

    n = Notify(); d = Daemon(env=n.env(), wait=False); d.start()
    ready_at = n.wait_for("READY=1")
    """

    def __init__(self, path=None, timeout=10.0):
        self.path = path or os.path.join(mktemp("vitaled-notify-"), "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(self.path)
        except OSError:
            self.sock.close()
            raise
        self.timeout = timeout
        self.messages = []

    def env(self):
        """The environment to give a Daemon (env=...)."""
        return {"NOTIFY_SOCKET": self.path}

    def recv(self, timeout=None):
        """The next message as text; socket.timeout when none came."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        m = self.sock.recv(4096).decode()
        self.messages.append(m)
        return m

    def wait_for(self, what="READY=1", timeout=None):
        """Wait for a message containing what; returns time.monotonic() when
        it came (socket.timeout when nothing came for timeout)."""
        while what not in self.recv(timeout):
            pass
        return time.monotonic()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Daemon:
    """vitaled on a private socket and state dir.

    with Daemon(conf="...ini text...", args=[...]) as d:
        d.call("io.vitaled.Terminal.GetStatus")

    conf: the configuration file's text (None: no --config); args: more
    command-line arguments; env: added to (or replacing) this process's
    environment (PCSCLITE_CSOCK_NAME defaults to a socket nobody serves, so
    that only a test's own pcscd is ever used); tmp: the directory (default: a
    new one), name: a subdirectory of it for this daemon; wrapper: a command
    prefix (default $TEST_WRAPPER); wait: start() waits until the API
    answers; timeout: the default timeout of call()/invoke()/result().
    """

    def __init__(self, conf=None, args=(), env=None, tmp=None, wrapper=None, wait=True,
                 name=None, timeout=5.0):
        self.tmp = tmp or mktemp()
        self.dir = os.path.join(self.tmp, name) if name else self.tmp
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "vitaled.sock")
        self.state = os.path.join(self.dir, "state")
        self.log = os.path.join(self.dir, "vitaled.log")
        self.conf = os.path.join(self.dir, "vitaled.conf")
        self.conf_text = conf
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("LISTEN_FDS", None)
        # never the machine's pcscd: a test that wants readers starts its own
        # (tests/world) and passes PCSCLITE_CSOCK_NAME in env
        self.env["PCSCLITE_CSOCK_NAME"] = os.path.join(self.dir, "no-pcscd.comm")
        if env:
            self.env.update(env)
        if wrapper is None:
            wrapper = WRAPPER
        self.wrapper = shlex.split(wrapper) if wrapper else []
        self.proc = None
        self.logf = None
        self.wait_ready = wait
        self.timeout = timeout

    def command(self):
        cmd = self.wrapper + [VITALED, "--foreground", "--socket", self.sock,
                              "--state-dir", self.state]
        if self.conf_text is not None:
            with open(self.conf, "w") as f:
                f.write(self.conf_text)
            cmd += ["--config", self.conf]
        return cmd + self.args

    def start(self, wait=None):
        """Start vitaled; unless wait (default: the constructor's) is false,
        return once it answers GetStatus (Failure if it exits or stays
        silent)."""
        self.logf = open(self.log, "ab")
        self.t_start = time.monotonic()
        self.proc = track(subprocess.Popen(self.command(), env=self.env, stdin=subprocess.DEVNULL,
                                           stdout=self.logf, stderr=subprocess.STDOUT))
        if self not in _daemons:
            _daemons.append(self)
        if self.wait_ready if wait is None else wait:
            self.wait_socket()
        return self

    def wait_socket(self, timeout=None):
        timeout = timeout or (60 if self.wrapper else 15)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure("vitaled exited with %d during start-up:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                c = Varlink(self.sock, timeout=2)
                r = c.call(IFACE + ".GetStatus")
                c.close()
                # up, and the signer (opened on its worker right after
                # start) has said what it is: a test's first CreateSheet is
                # then never answered "the signer is starting"
                signer = ((r or {}).get("parameters") or {}).get("signer") or {}
                if r and "parameters" in r and signer.get("state") != "starting":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise Failure("vitaled did not answer within %ss:\n%s" % (timeout, self.log_text()))

    @property
    def pid(self):
        return self.proc.pid

    def client(self, timeout=None):
        return Varlink(self.sock, self.timeout if timeout is None else timeout)

    def call(self, method, params=None, timeout=None):
        """One call on a fresh connection: the raw reply (None if closed)."""
        with self.client(timeout) as c:
            return c.call(method, params)

    def invoke(self, method, params=None, timeout=None):
        """One call on a fresh connection: its parameters, or VarlinkError."""
        with self.client(timeout) as c:
            return c.invoke(method, params)

    def result(self, method, params=None, timeout=None):
        """One call on a fresh connection: (error name or None, parameters)."""
        with self.client(timeout) as c:
            return c.result(method, params)

    def watch(self, timeout=10.0):
        return Watch(self, timeout)

    def ctl(self, *args, input=None, check_rc=None, user=None, text=True, pass_fds=(), timeout=30):
        """vitalectl --socket SOCK ARGS...: the CompletedProcess."""
        cmd = [VITALECTL, "--socket", self.sock] + list(args)
        pre = None
        if user is not None:
            def pre():
                os.setgid(user[1])
                os.setgroups([])
                os.setuid(user[0])
        p = subprocess.run(cmd, capture_output=True, text=text, input=input, timeout=timeout,
                           preexec_fn=pre, pass_fds=pass_fds)
        if check_rc is not None and p.returncode != check_rc:
            raise Failure("vitalectl %s: exit %d, expected %d\nstdout: %s\nstderr: %s" %
                          (" ".join(args), p.returncode, check_rc, p.stdout, p.stderr))
        return p

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=None):
        """SIGTERM and wait (SIGKILL after timeout); returns (exit code,
        seconds taken). Safe to call again, or on a daemon never started."""
        if timeout is None:
            timeout = 50 if self.wrapper else 10
        rc, took = (self.proc.returncode if self.proc else None), 0.0
        if self.proc and self.proc.poll() is None:
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
            took = time.monotonic() - t0
        if self.proc in _children:
            _children.remove(self.proc)
        if self in _daemons:
            _daemons.remove(self)
        if self.logf:
            self.logf.close()
            self.logf = None
        return rc, took

    def kill(self):
        """SIGKILL, as a crash; returns the exit status (-9). The daemon can
        be started again."""
        self.proc.kill()
        rc = self.proc.wait()
        if self.logf:
            self.logf.close()
            self.logf = None
        return rc

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, n=40):
        return "".join(self.log_text().splitlines(True)[-n:])

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def threads(self):
        return len(os.listdir("/proc/%d/task" % self.proc.pid))

    def cpu_s(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def running():
    """The daemons started and not stopped yet (for log dumps on failure)."""
    return list(_daemons)


def stop_all():
    """Stop every daemon still running (SIGTERM, then SIGKILL)."""
    for d in list(_daemons):
        d.stop()


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
