#!/usr/bin/python3
"""A private pcscd with vpcd virtual readers, for tests.

Python:
    from world import PcscWorld
    from cardhost import CardHost
    with PcscWorld() as w:                       # temp dir, free port pair
        env = dict(os.environ, **w.env)          # PCSCLITE_CSOCK_NAME=...
        with w.cardhost(0) as h:                 # reader "Virtual PCD 00 00"
            h.insert("vitale2"); h.wait_seen()
            subprocess.run([...], env=env)
        w.kill(); w.restart()                    # recovery tests

Shell (pcscd-world.sh is a thin wrapper around this file's CLI):
    world.py start DIR [PORT|auto] [--level info|debug|apdu]
    world.py stop DIR | kill DIR | restart DIR | status DIR

How an instance is made (facts measured on Debian 12, pcsc-lite 1.9.9):
* DIR/conf/reader.conf.d/vpcd declares the vpcd driver with
  DEVICENAME /dev/null:0x<PORT> and CHANNELID 0x<PORT>: vpcd listens on PORT
  (reader "Virtual PCD 00 00") and PORT+1 ("Virtual PCD 00 01"), on 0.0.0.0
  (vpcd's choice, not ours).  `pcscd -c` takes a reader.conf.d directory (a
  single file works too).
* pcscd 1.9.9 ignores PCSCLITE_CSOCK_NAME for its listening socket, but takes a
  socket handed over by socket activation.  A launcher (this file, `_launch`)
  binds DIR/pcscd.comm as fd 3, sets LISTEN_FDS=1 and LISTEN_PID to its own pid
  and execs `pcscd -f -i -c DIR/conf/reader.conf.d`: pcscd starts at once and
  its pid is the launcher's (DIR/pcscd.pid).
* Every pcscd writes /run/pcscd/pcscd.pid and empties it at exit, whatever
  socket it serves.  The launcher therefore runs pcscd in a mount namespace of
  its own where DIR/run is bind-mounted on /run/pcscd: instances never touch
  each other's (or the system pcscd's) files.  If unshare is not permitted the
  instance still works and the log says that /run/pcscd is shared.
* The port pair is locked (flock on /tmp/vitaled-pcscworld-ports/PORT.lock,
  inherited by pcscd, so held for exactly its lifetime): parallel runs never
  pick the same pair.  Automatic ports come from 20000..(ephemeral low - 2).
* Readiness: pcscd logs "daemon ready" (info level) after the readers are
  made and vpcd listens.  The vpcd port is never probed: a connection there is
  a card insertion.
* Logs go to DIR/pcscd.log.  Never use --level apdu outside a debug session:
  pcscd then logs APDUs, PIN blocks included.
"""

import atexit
import ctypes
import errno
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PCSCD = "/usr/sbin/pcscd"
VPCD_LIB = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
LOCKDIR = os.path.join(tempfile.gettempdir(), "vitaled-pcscworld-ports")
LEVELS = {"error": ["-e"], "info": ["-i"], "debug": ["-d"], "apdu": ["-d", "-a"]}
READY = "daemon ready"


class WorldError(Exception):
    pass


# ------------------------------------------------------------------- helpers


def conf_dir(d):
    return os.path.join(d, "conf", "reader.conf.d")


def write_conf(d, port, friendly="Virtual PCD"):
    cd = conf_dir(d)
    os.makedirs(cd, exist_ok=True)
    with open(os.path.join(cd, "vpcd"), "w") as f:
        f.write('FRIENDLYNAME "%s"\n' % friendly)
        f.write("DEVICENAME   /dev/null:0x%04X\n" % port)
        f.write("LIBPATH      %s\n" % VPCD_LIB)
        f.write("CHANNELID    0x%04X\n" % port)
    with open(os.path.join(d, "port"), "w") as f:
        f.write("%d\n" % port)


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip(" \n\0"))   # pcscd's own file ends in NUL
    except (OSError, ValueError):
        return None


def proc_state(pid):
    """'R', 'S', 'Z'... or None if there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        return s[s.rindex(")") + 2]
    except (OSError, ValueError):
        return None


def is_our_pcscd(pid, d):
    """pid is alive (not a zombie) and is the pcscd serving DIR d."""
    if not pid:
        return False
    st = proc_state(pid)
    if st is None or st in "ZX":
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    want = os.fsencode(conf_dir(os.path.abspath(d)))
    return argv and argv[0].endswith(b"pcscd") and want in argv


def wait_gone(pid, timeout, proc=None):
    end = time.monotonic() + timeout
    while True:
        if proc is not None:
            proc.poll()
        else:
            try:                       # reap it if it happens to be our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        st = proc_state(pid)
        if st is None or st in "ZX":
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)


def lock_path(port):
    return os.path.join(LOCKDIR, "%d.lock" % port)


def lock_port(port, blocking=False):
    """flock the port pair; returns the fd or None if another world has it.
    The lock file is removed when a world stops (release_port), so after
    locking, check that the file we hold is still the one at the path."""
    os.makedirs(LOCKDIR, exist_ok=True)
    try:
        os.chmod(LOCKDIR, 0o1777)
    except OSError:
        pass
    path = lock_path(port)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def release_port(port):
    """Remove the lock file of a port pair nobody holds any more."""
    fd = lock_port(port)
    if fd is not None:
        try:
            os.unlink(lock_path(port))
        except FileNotFoundError:
            pass
        os.close(fd)


def port_bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as vpcd does
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_ports():
    """A free, locked port pair: returns (port, lockfd)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    hi = max(low - 2, 20100)
    for _ in range(500):
        port = random.randrange(20000, hi)
        fd = lock_port(port)
        if fd is None:
            continue
        if port_bindable(port) and port_bindable(port + 1):
            return port, fd
        os.close(fd)
    raise WorldError("no free port pair found")


# ------------------------------------------------------------------ launcher


def _launch(d, port, level, lockfd, pdeathsig):
    """Runs in the child: set up fd 3, the namespace, then exec pcscd."""
    libc = ctypes.CDLL(None, use_errno=True)
    if pdeathsig:
        libc.prctl(1, signal.SIGTERM)           # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)
    if lockfd < 0:
        lockfd = lock_port(port)
        if lockfd is None:
            sys.stderr.write("pcscd-world: port %d is held by another world\n" % port)
            os._exit(3)
    if lockfd == 3:
        lockfd2 = os.dup(3)
        os.close(3)
        lockfd = lockfd2
    os.set_inheritable(lockfd, True)
    path = os.path.join(d, "pcscd.comm")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, 0o666)
    s.listen(128)
    fd = s.detach()
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.set_inheritable(3, True)

    rundir = os.path.join(d, "run")
    os.makedirs(rundir, exist_ok=True)
    isolated = False
    if libc.unshare(0x00020000) == 0:                        # CLONE_NEWNS
        MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
        if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0:
            try:
                os.makedirs("/run/pcscd", exist_ok=True)
            except OSError:
                pass
            if libc.mount(os.fsencode(rundir), b"/run/pcscd", None, MS_BIND, None) == 0:
                isolated = True
    if not isolated:
        sys.stderr.write("pcscd-world: warning: no private mount namespace (%s); "
                         "this pcscd shares /run/pcscd/pcscd.pid with others\n"
                         % os.strerror(ctypes.get_errno()))
    sys.stderr.flush()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LISTEN_") and k != "PCSCLITE_CSOCK_NAME"}
    env["LISTEN_FDS"] = "1"
    env["LISTEN_PID"] = str(os.getpid())
    os.execve(PCSCD, ["pcscd", "-f"] + LEVELS[level] + ["-c", conf_dir(d)], env)


# --------------------------------------------------------------------- world

_LIVE = set()
_LIVE_LOCK = threading.Lock()
_HOOKED = False


def _stop_all():
    with _LIVE_LOCK:
        worlds = list(_LIVE)
    for w in worlds:
        try:
            w.cleanup()
        except Exception:
            pass


def _on_term(signum, frame):
    raise SystemExit(128 + signum)


def _hook():
    global _HOOKED
    if _HOOKED:
        return
    _HOOKED = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_term)
        # SIGINT raises KeyboardInterrupt by default: with-blocks and atexit run.


class PcscWorld:
    """A private pcscd instance; see the module doc."""

    def __init__(self, dir=None, port=None, level="info", keep=None,
                 friendly="Virtual PCD", ready_timeout=10.0, die_with_parent=True):
        self._autodir = dir is None
        self.dir = os.path.abspath(dir) if dir else None
        self.port = int(port) if port else None
        self.level = level
        self.keep = keep if keep is not None else bool(os.environ.get("PCSCWORLD_KEEP"))
        self.friendly = friendly
        self.ready_timeout = ready_timeout
        self.die_with_parent = die_with_parent
        self.proc = None
        self.pid = None

    # paths and facts
    @property
    def socket(self):
        return os.path.join(self.dir, "pcscd.comm")

    @property
    def log(self):
        return os.path.join(self.dir, "pcscd.log")

    @property
    def env(self):
        return {"PCSCLITE_CSOCK_NAME": self.socket}

    @property
    def readers(self):
        """Reader names and their vpcd ports.  The names are the same in every
        instance: pcscd numbers readers per instance."""
        return {"%s 00 00" % self.friendly: self.port,
                "%s 00 01" % self.friendly: self.port + 1}

    @property
    def running(self):
        return is_our_pcscd(self.pid, self.dir)

    def cardhost(self, slot=0, **kw):
        """A CardHost for reader slot 0 ("... 00 00") or 1 ("... 00 01")."""
        from cardhost import CardHost
        return CardHost(self.port + slot, **kw)

    # lifecycle
    def start(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="pcscworld.")
        os.makedirs(self.dir, exist_ok=True)
        old = read_int(os.path.join(self.dir, "pcscd.pid"))
        if is_our_pcscd(old, self.dir):
            raise WorldError("a pcscd (pid %d) already serves %s" % (old, self.dir))
        lockfd = -1
        if self.port is None:
            self.port, lockfd = pick_ports()
        try:
            write_conf(self.dir, self.port, self.friendly)
            self._spawn(lockfd)
        finally:
            if lockfd >= 0:
                os.close(lockfd)      # the launcher (pcscd) holds its own copy
        return self

    def _spawn(self, lockfd):
        _hook()
        with _LIVE_LOCK:
            _LIVE.add(self)
        logf = open(self.log, "ab")
        offset = logf.tell()
        pdeath = self.die_with_parent and \
            threading.current_thread() is threading.main_thread()
        args = [PYTHON, os.path.abspath(__file__), "_launch", self.dir,
                str(self.port), self.level, str(lockfd), "1" if pdeath else "0"]
        try:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                pass_fds=(lockfd,) if lockfd >= 0 else (), start_new_session=True)
        finally:
            logf.close()
        self.pid = self.proc.pid
        with open(os.path.join(self.dir, "pcscd.pid"), "w") as f:
            f.write("%d\n" % self.pid)
        self._wait_ready(offset)

    def _wait_ready(self, offset):
        end = time.monotonic() + self.ready_timeout
        while True:
            with open(self.log, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
            if READY in text:
                missing = [p for p in (self.port, self.port + 1)
                           if "virtual ICC on port %d" % p not in text]
                if not missing:
                    return
                tail = "\n".join(text.splitlines()[-15:])
                self.stop()
                raise WorldError("pcscd in %s is up but vpcd could not listen on "
                                 "port %s (in use?):\n%s" % (
                                     self.dir, " ".join(map(str, missing)), tail))
            dead = (self.proc.poll() is not None) if self.proc else \
                not is_our_pcscd(self.pid, self.dir)
            if dead or time.monotonic() >= end:
                tail = "\n".join(text.splitlines()[-15:])
                self.stop()
                raise WorldError("pcscd in %s %s:\n%s" % (
                    self.dir, "exited" if dead else "not ready in time", tail))
            time.sleep(0.01)

    def _signal(self, sig, grace):
        pid = self.pid or read_int(os.path.join(self.dir, "pcscd.pid"))
        if pid and (self.proc is not None and self.proc.poll() is None
                    or is_our_pcscd(pid, self.dir)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            if not wait_gone(pid, grace, self.proc) and sig != signal.SIGKILL:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_gone(pid, 5, self.proc)
        if self.proc is not None:
            try:
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
        self.pid = None
        try:
            os.unlink(os.path.join(self.dir, "pcscd.pid"))
        except FileNotFoundError:
            pass

    def stop(self):
        """SIGTERM by PID, SIGKILL after 2 s; removes the socket and pid file."""
        if self.dir is None:
            return
        self._signal(signal.SIGTERM, 2.0)
        try:
            os.unlink(self.socket)
        except FileNotFoundError:
            pass
        if self.port:
            release_port(self.port)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def kill(self):
        """SIGKILL, as a crash: the socket file stays behind."""
        self._signal(signal.SIGKILL, 5.0)

    def restart(self):
        """Stop if running, start again on the same socket path and port."""
        if self.running or self.proc is not None:
            self._signal(signal.SIGTERM, 2.0)
        write_conf(self.dir, self.port, self.friendly)
        self._spawn(-1)
        return self

    def cleanup(self):
        self.stop()
        if self._autodir and not self.keep and self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        if self.proc is not None and self.running:
            return self          # already started by this object
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


# ----------------------------------------------------------------------- CLI


def _world_from_dir(d):
    port = read_int(os.path.join(d, "port"))
    if port is None:
        raise WorldError("%s has no world (no port file)" % d)
    w = PcscWorld(d, port, die_with_parent=False)
    w.pid = read_int(os.path.join(d, "pcscd.pid"))
    return w


def main(argv):
    usage = ("usage: world.py start DIR [PORT|auto] [--level L] | stop DIR | "
             "kill DIR | restart DIR | status DIR")
    if len(argv) >= 6 and argv[0] == "_launch":
        _launch(os.path.abspath(argv[1]), int(argv[2]), argv[3], int(argv[4]),
                argv[5] == "1")
        return 1
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    cmd, d = argv[0], os.path.abspath(argv[1])
    rest = argv[2:]
    level = "info"
    if "--level" in rest:
        i = rest.index("--level")
        level = rest[i + 1]
        del rest[i:i + 2]
        if level not in LEVELS:
            print("unknown level %s (%s)" % (level, " ".join(LEVELS)), file=sys.stderr)
            return 2
    try:
        if cmd == "start":
            port = None if not rest or rest[0] == "auto" else int(rest[0], 0)
            w = PcscWorld(d, port, level=level, die_with_parent=False)
            w.start()
            with _LIVE_LOCK:          # the CLI leaves it running
                _LIVE.discard(w)
            print("export PCSCLITE_CSOCK_NAME=%s" % w.socket)
            print("export PCSCWORLD_PORT=%d" % w.port)
            return 0
        w = _world_from_dir(d)
        if cmd == "stop":
            w.stop()
        elif cmd == "kill":
            w.kill()
        elif cmd == "restart":
            w.level = level
            w.restart()
            with _LIVE_LOCK:
                _LIVE.discard(w)
            print("export PCSCLITE_CSOCK_NAME=%s" % w.socket)
            print("export PCSCWORLD_PORT=%d" % w.port)
        elif cmd == "status":
            if w.running:
                print("running pid %d port %d socket %s" % (w.pid, w.port, w.socket))
            else:
                print("stopped port %d" % w.port)
                return 1
        else:
            print(usage, file=sys.stderr)
            return 2
    except WorldError as e:
        print("pcscd-world: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
