#!/usr/bin/python3
"""Live API fuzzing (issue 16): while four hostile clients throw random and
mutated varlink messages, partial frames, oversized frames, pipelined floods
and connection churn at a running daemon, a well-behaved client keeps calling
GetStatus and keeps an event stream open.

Checks (each can fail): the daemon stays up; every good call is answered
correctly (none lost, none later than GOOD_DEADLINE_S); the event stream is
still served after the storm; every hostile connection is eventually closed or
answered (no descriptor leaked: the daemon's descriptor count returns to what
it was before); nothing in the log shows a crash or a sanitizer report.
Figures printed: the good client's latency (median and 99th percentile)
before and during the storm, and how many hostile messages were sent.

  API_FUZZ_SECONDS  length of the storm (default 12)
  API_FUZZ_SEED     the random seed (printed, so a failure can be replayed)
"""
import json
import os
import random
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import IFACE, Daemon, Failure, Varlink, VarlinkError, check  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECONDS = float(os.environ.get("API_FUZZ_SECONDS", "12"))
SEED = int(os.environ.get("API_FUZZ_SEED", str(int(time.time()) & 0xffffff)))
GOOD_DEADLINE_S = 2.0 if not os.environ.get("TEST_WRAPPER") else 20.0
HOSTILE = 4

CONF = """
[daemon]
mode = clinic
[api]
max_message = 65536
max_clients = 64
idle_timeout_s = 2
"""


def methods():
    """Every method of the interface file, and some that do not exist."""
    text = open(os.path.join(TOP, "docs", "io.vitaled.Terminal.varlink")).read()
    names = re.findall(r"^method\s+(\w+)", text, re.M)
    check(len(names) > 10, "interface file has too few methods: %r" % names)
    # Reload re-reads the configuration: harmless, but keep it rare
    return [IFACE + "." + n for n in names] + [
        "org.varlink.service.GetInfo", "org.varlink.service.GetInterfaceDescription",
        IFACE + ".NoSuchMethod", "io.vitaled.Other.GetStatus", "", "x" * 300]


def rand_value(rng, depth=0):
    k = rng.randrange(9 if depth < 6 else 5)
    if k == 0:
        return None
    if k == 1:
        return rng.choice([True, False])
    if k == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63 - 1, -2**63, 2**64, 1e308, -0.0, 3.5])
    if k == 3:
        n = rng.choice([0, 1, 4, 16, 200, 5000])
        return "".join(rng.choice("0123456789AZaz-_./\\\"'é\u0000\u202e") for _ in range(n))
    if k == 4:
        return rng.choice(["", "reader0", "1" * 15, "../../etc/passwd", "%s%s%n"])
    if k in (5, 6):
        return [rand_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["id", "pin", "target", "reader", "sheet", "nir", "rounds", "request_id",
                        "more", "x"]): rand_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def valid_message(rng, names):
    m = {"method": rng.choice(names)}
    if rng.random() < 0.8:
        m["parameters"] = rand_value(rng) if rng.random() < 0.2 else {
            k: rand_value(rng) for k in rng.sample(["id", "reader", "rounds", "target", "pin", "sheet",
                                                    "request_id", "nir", "birth_date", "x"],
                                                   rng.randrange(4))}
    for flag in ("more", "oneway", "upgrade"):
        if rng.random() < 0.15:
            m[flag] = rand_value(rng) if rng.random() < 0.3 else True
    return json.dumps(m).encode()


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(6)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1 and data:
            del data[rng.randrange(len(data)):]
        elif op == 2:
            data[rng.randrange(len(data) + 1):0] = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        elif op == 3:
            data += b"\0"
        elif op == 4:
            data = bytearray(b"[" * rng.randrange(1, 3000)) + data
        else:
            data += data[: rng.randrange(len(data) + 1)]
    return bytes(data)


class Hostile(threading.Thread):
    def __init__(self, path, seed, names, stop):
        super().__init__(daemon=True)
        self.path, self.rng, self.names, self.stop = path, random.Random(seed), names, stop
        self.sent = 0
        self.error = None

    def conn(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1.0)
        s.connect(self.path)
        return s

    def one_round(self):
        rng = self.rng
        s = self.conn()
        try:
            kind = rng.randrange(6)
            if kind == 0:        # mutated valid messages, one frame each
                for _ in range(rng.randrange(1, 20)):
                    s.sendall(mutate(rng, valid_message(rng, self.names)) + b"\0")
                    self.sent += 1
            elif kind == 1:      # random bytes
                s.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000))))
                self.sent += 1
            elif kind == 2:      # a partial frame, then silence or close
                s.sendall(valid_message(rng, self.names)[: rng.randrange(1, 30)])
                self.sent += 1
                time.sleep(rng.random() * 0.3)
            elif kind == 3:      # an oversized frame (over max_message)
                s.sendall(b'{"method":"' + IFACE.encode() + b'.GetStatus","parameters":{"x":"'
                          + b"A" * rng.choice([70000, 200000]) + b'"}}\0')
                self.sent += 1
            elif kind == 4:      # a pipelined flood of well-formed calls, never read
                msg = json.dumps({"method": IFACE + ".GetStatus"}).encode() + b"\0"
                s.sendall(msg * rng.randrange(100, 2000))
                self.sent += 1
            else:                # random well-formed calls, answers read
                for _ in range(rng.randrange(1, 10)):
                    s.sendall(valid_message(rng, self.names) + b"\0")
                    self.sent += 1
                try:
                    s.recv(65536)
                except (socket.timeout, OSError):
                    pass
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass              # the daemon may close a hostile peer at any time
        finally:
            s.close()

    def run(self):
        while not self.stop.is_set():
            try:
                self.one_round()
            except ConnectionRefusedError:
                time.sleep(0.01)  # the backlog is full: that is the daemon protecting itself
            except OSError as e:
                if e.errno == 11:  # EAGAIN on connect: backlog full
                    time.sleep(0.01)
                    continue
                self.error = e
                return


def good_latencies(d, seconds, out, stop=None):
    """GetStatus every 10 ms for `seconds` (or until stop): latencies in s."""
    c = Varlink(d.sock, timeout=GOOD_DEADLINE_S)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end and not (stop and stop.is_set()):
            t0 = time.monotonic()
            r = c.call(IFACE + ".GetStatus")
            dt = time.monotonic() - t0
            if not r or "parameters" not in r or "readers" not in json.dumps(r):
                raise Failure("good client: a wrong answer to GetStatus: %r" % (r,))
            out.append(dt)
            time.sleep(0.01)
    finally:
        c.close()


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] * 1000


def main():
    print("seed %d (API_FUZZ_SEED=%d to replay), %.0f s" % (SEED, SEED, SECONDS))
    names = methods()
    with Daemon(conf=CONF) as d:
        base = []
        good_latencies(d, 2.0, base)
        watch = d.watch()
        time.sleep(0.2)
        fd0 = fds(d.pid)

        stop = threading.Event()
        hostile = [Hostile(d.sock, SEED + i, names, stop) for i in range(HOSTILE)]
        for h in hostile:
            h.start()
        during = []
        err = []

        def good():
            try:
                good_latencies(d, SECONDS, during)
            except (Failure, VarlinkError, OSError) as e:
                err.append(e)
        g = threading.Thread(target=good)
        g.start()
        g.join(SECONDS + 30)
        stop.set()
        for h in hostile:
            h.join(10)
        check(not err, "the good client was not served during the storm: %s" % (err[0] if err else ""))
        check(not g.is_alive(), "the good client hung")
        check(d.proc.poll() is None, "vitaled died under the storm:\n" + d.log_text()[-3000:])
        for h in hostile:
            check(h.error is None, "a hostile client failed in an unexpected way: %r" % h.error)
        sent = sum(h.sent for h in hostile)

        # the event stream opened before the storm is still served: events
        # the storm caused are delivered in order (Watch checks seq), and the
        # stream is neither closed nor ended
        while True:
            try:
                watch.next(0.3)
            except socket.timeout:
                break

        # every hostile connection goes (closed by peer, or idle timeout 2 s)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and fds(d.pid) > fd0:
            time.sleep(0.2)
        fd1 = fds(d.pid)
        check(fd1 <= fd0, "descriptors leaked: %d before the storm, %d after" % (fd0, fd1))
        after = []
        good_latencies(d, 1.0, after)
        watch.close()
        log = d.log_text()
        for bad in ("AddressSanitizer", "runtime error:", "Assertion", "SIGSEGV", "double free"):
            check(bad not in log, "the log shows %r:\n%s" % (bad, log[-3000:]))
        print("  hostile messages sent: %d by %d clients in %.0f s" % (sent, HOSTILE, SECONDS))
        print("  good GetStatus before: %d calls, p50 %.2f ms, p99 %.2f ms" % (len(base), pct(base, .5), pct(base, .99)))
        print("  good GetStatus during: %d calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms" %
              (len(during), pct(during, .5), pct(during, .99), max(during) * 1000))
        print("  descriptors: %d before, %d after" % (fd0, fd1))
        check(len(during) > SECONDS * 10, "the good client made only %d calls in %.0f s" % (len(during), SECONDS))


if __name__ == "__main__":
    try:
        main()
    except (Failure, VarlinkError) as e:
        print("FAIL: %s" % e)
        sys.exit(1)
    print("ok")
