#!/usr/bin/python3
"""The soak (issue 16): every fault at once, for SOAK_SECONDS (default 180).

The world: a private pcscd with two vpcd readers where Vitale 2 cards are
inserted and removed at random; a PN532 emulator where a phone taps and goes
at random; digital cards presented as QR codes at the counter
(NewChallenge, tests/world/phone_qr.py, PresentCode; now and then a replay,
which must be refused); four clients creating care sheets (degraded,
and from the card in a reader when there is one), each with a request id; the
independent test insurer (tests/insurer/) with the file signer's certificate.

The chaos, one action every 2-6 s at random: an insurer fault (503, 500,
429 with Retry-After, a delay past the client's timeout, a reset, a
truncated or garbage 200), pcscd killed and restarted, the loopback of the
soak's own network namespace taken down for 1-3 s (when `unshare -n` is
allowed; the insurer and vpcd talk over it), vitaled killed with -9 and
restarted (at most every 12 s).

At the end, the faults cleared: a calm phase of CALM_SECONDS (default 20)
with the same clients and card traffic but no chaos, RSS and descriptors
sampled; then everything is uploaded. Checks (each can fail):
  - every sheet a client got an answer for is held by the insurer exactly
    once, and the insurer holds no sheet twice;
  - vitaled never exited but when the soak killed it (and no sanitizer or
    assertion report in its log);
  - during the calm phase, the descriptor count's floor (its lowest sample in
    the first quarter against the last quarter: client connections come and
    go) does not grow, and RSS grows by less than 3 MiB;
  - cards were read on both PC/SC readers and on the NFC reader.
A summary table is printed. SOAK_SEED replays the random choices.
"""
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
INTEG = os.path.join(HERE, "integration")
WORLD = os.path.join(HERE, "world")
for p in (INTEG, WORLD, os.path.join(HERE, "insurer")):
    sys.path.insert(0, p)

SECONDS = float(os.environ.get("SOAK_SECONDS", "180"))
CALM = float(os.environ.get("CALM_SECONDS", "20"))
SEED = int(os.environ.get("SOAK_SEED", str(int(time.time()) & 0xffffff)))
T = "io.vitaled.Terminal."
TERMINAL = "T0001"
R = ["Virtual PCD 00 00", "Virtual PCD 00 01"]


def skip(why):
    print("SKIP: %s" % why)
    sys.exit(77)


if not os.path.exists("/usr/lib/pcsc/drivers/serial/libifdvpcd.so"):
    skip("vsmartcard-vpcd is not installed")

# run in a network namespace of our own, so the loopback can be taken down
if not os.environ.get("SOAK_IN_NETNS"):
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"],
                                                  capture_output=True).returncode == 0:
        os.execve(shutil.which("unshare"), ["unshare", "-n", sys.executable, os.path.abspath(__file__)]
                  + sys.argv[1:], dict(os.environ, SOAK_IN_NETNS="1"))
    os.environ["SOAK_IN_NETNS"] = "0"
NETNS = os.environ.get("SOAK_IN_NETNS") == "1"
if NETNS:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

import harness  # noqa: E402
import sheetlib  # noqa: E402
from harness import check, Failure  # noqa: E402
try:
    import insurer  # noqa: E402
    import mkpki  # noqa: E402
    import issuer  # noqa: E402
    from cryptography.hazmat.primitives import serialization  # noqa: E402
except ImportError as e:
    skip(str(e))
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402

rng = random.Random(SEED)
lock = threading.Lock()
stats = {"acked": 0, "refused": 0, "cut": 0, "card_sheets": 0, "kills": 0, "pcscd_kills": 0,
         "lo_down": 0, "insurer_faults": 0, "qr_presented": 0, "qr_read": 0, "qr_replays": 0, "qr_replay_accepted": 0, "reads": {}, "errors": {}}
acked = {}            # id -> request_id
stop = threading.Event()
calm = threading.Event()


class Emulator:
    def __init__(self, tmp, world):
        self.link = os.path.join(tmp, "pn532")
        self.ctl = os.path.join(tmp, "pn532.sock")
        self.proc = harness.track(subprocess.Popen(
            ["/usr/bin/python3", os.path.join(WORLD, "pn532emu.py"), "--link", self.link,
             "--control", self.ctl, "--log", os.path.join(tmp, "pn532.log"), "--world", world],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise Failure("pn532emu did not start: %r" % line)

    def send(self, line):
        import pn532emu
        return pn532emu.client(self.ctl, line)


class Soak:
    def __init__(self):
        self.tmp = harness.mktemp("vitaled-soak-")
        self.pki = os.path.join(self.tmp, "pki")
        mkpki.init_pki(self.pki, terminal_id=TERMINAL)
        self.key, _, pub = sheetlib.make_key(self.tmp)
        cert = mkpki.issue_practitioner(self.pki, pub)
        self.chain = os.path.join(self.tmp, "chain.pem")
        with open(self.chain, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.ins = insurer.InsurerProcess(self.pki, os.path.join(self.tmp, "insurer"))
        self.ins.__enter__()
        self.world_dir = os.path.join(self.tmp, "issuer")
        issuer.init_world(self.world_dir)
        self.pcsc = PcscWorld(dir=os.path.join(self.tmp, "pcsc"))
        self.pcsc.start()
        self.emu = Emulator(self.tmp, self.world_dir)
        self.hosts = [self.pcsc.cardhost(i, log=os.path.join(self.tmp, "card%d.log" % i))
                      for i in range(2)]
        env = {"PCSCLITE_CSOCK_NAME": self.pcsc.socket, "LIBNFC_AUTO_SCAN": "false"}
        ins = ("[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/client.pem\n"
               "client_key = %s/client.key.pem\nsigner_chain = %s\ngather_ms = 100\n"
               "backoff_base_s = 1\nbackoff_cap_s = 3\ntimeout_s = 3\nlow_speed_time_s = 3\n"
               "connect_timeout_s = 2\nreturns_interval_s = 10\n"
               "[pcsc]\nbackoff_max_ms = 400\n[nfc]\npoll_ms = 100\n"
               "[digital]\ntrust_anchor = %s\n"
               % (self.ins.url, self.pki, self.pki, self.pki, self.chain,
                  os.path.join(self.world_dir, "ca.pem")))
        conf = sheetlib.conf(self.key, extra=ins).replace(
            "[daemon]\n", "[daemon]\nterminal_id = %s\n" % TERMINAL, 1)
        self.d = harness.Daemon(conf=conf, env=env, tmp=self.tmp, name="d", timeout=10.0,
                                args=["--nfc", "pn532_uart:" + self.emu.link])
        self.d.start()
        self.expected_exit = False
        self.segments = []          # (pid, start, end, samples[(t, rss_kb, fds)])
        self.seg = None
        self.new_segment()
        iface = open(os.path.join(TOP, "docs", "io.vitaled.Terminal.varlink")).read()
        self.qr = "method PresentCode" in iface and os.path.exists(os.path.join(WORLD, "phone_qr.py"))

    def new_segment(self):
        self.seg = {"pid": self.d.pid, "start": time.monotonic(), "samples": [], "calm": calm.is_set()}
        self.segments.append(self.seg)

    # ------------------------------------------------------------ actors

    def client(self, n):
        r = random.Random(SEED * 10 + n)
        k = 0
        while not stop.is_set():
            k += 1
            rid = "soak-%d-%d-%d" % (SEED, n, k)
            reader = r.choice(R)
            if r.random() < 0.3 and self.hosts[R.index(reader)].inserted:
                params = {"reader": reader, "sheet": sheetlib.till_part(), "request_id": rid}
            else:
                params = dict(sheetlib.degraded(), request_id=rid)
            try:
                err, res = sheetlib.call(self.d, "CreateSheet", params, timeout=15.0)
            except (OSError, Failure):
                with lock:
                    stats["cut"] += 1
                time.sleep(0.05)
                continue
            with lock:
                if err is None:
                    stats["acked"] += 1
                    acked[res["id"]] = rid
                    if "reader" in params:
                        stats["card_sheets"] += 1
                else:
                    stats["refused"] += 1
                    name = err.rsplit(".", 1)[-1]
                    stats["errors"][name] = stats["errors"].get(name, 0) + 1
            time.sleep(r.random() * 0.05)

    def cards(self, i):
        r = random.Random(SEED * 100 + i)
        h = self.hosts[i]
        while not stop.is_set():
            try:
                if h.inserted:
                    h.remove()
                else:
                    h.insert("vitale2", wait=2.0)
            except Exception:
                pass          # pcscd or the loopback is down: the card host reconnects
            stop.wait(0.5 + r.random() * 2.5)

    def phone(self):
        r = random.Random(SEED * 1000)
        while not stop.is_set():
            try:
                self.emu.send("tap")
                stop.wait(0.8 + r.random() * 2)
                self.emu.send("away")
            except Exception:
                pass
            stop.wait(0.3 + r.random() * 2)

    def qr_codes(self):
        """A phone shows a QR code at the counter: the till asks for a
        challenge, the phone signs it (tests/world/phone_qr.py, written from
        the protocol doc), the till presents the scanned text; now and then a
        replay of the last code, which must be refused."""
        import phone_qr
        r = random.Random(SEED * 7)
        last = None
        while not stop.is_set():
            try:
                if last and r.random() < 0.2:
                    err, res = sheetlib.call(self.d, "PresentCode", {"text": last}, timeout=10.0)
                    with lock:
                        stats["qr_replays"] += 1
                        stats["qr_replay_accepted"] += err is None
                else:
                    err, ch = sheetlib.call(self.d, "NewChallenge", {}, timeout=10.0)
                    if err is None:
                        last = phone_qr.make_code(self.world_dir, "good", challenge=ch["challenge"])
                        err, res = sheetlib.call(self.d, "PresentCode", {"text": last}, timeout=10.0)
                        with lock:
                            stats["qr_presented"] += 1
                            stats["qr_read"] += err is None
            except Exception:
                pass
            stop.wait(1 + r.random() * 3)

    def events(self):
        """Count CardRead per reader; reconnect after each restart."""
        while not stop.is_set():
            try:
                w = harness.Watch(self.d.sock, timeout=5.0)
            except Exception:
                time.sleep(0.2)
                continue
            try:
                while not stop.is_set():
                    try:
                        e = w.next(0.5)
                    except socket.timeout:
                        continue
                    if e["type"] == "CardRead":
                        kind = "nfc" if (e.get("reader") or "").startswith("nfc:") else e.get("reader")
                        with lock:
                            stats["reads"][kind] = stats["reads"].get(kind, 0) + 1
            except Exception:
                pass
            finally:
                try:
                    w.close()
                except Exception:
                    pass

    def sampler(self):
        while not stop.is_set():
            pid = self.d.proc.pid if self.d.proc else None
            try:
                if self.d.proc.poll() is None:
                    self.seg["samples"].append((time.monotonic(), self.d.rss_kb(), self.d.fd_count()))
                elif not self.expected_exit:
                    self.crash = "vitaled (pid %s) exited by itself with %s" % (pid, self.d.proc.returncode)
                    stop.set()
            except (OSError, ValueError):
                pass
            stop.wait(0.5)

    # ------------------------------------------------------------ chaos

    FAULTS = ["fail 503 2", "fail 500 1", "fail 429 1 retry_after=1", "delay 4 1",
              "reset 1", "truncate 1", "garbage 1 kind=notjson", "garbage 1 kind=html",
              "fail 502 3 process=1"]

    def chaos(self, until):
        last_kill = time.monotonic()
        while time.monotonic() < until and not stop.is_set():
            stop.wait(2 + rng.random() * 4)
            a = rng.random()
            if a < 0.35:
                f = rng.choice(self.FAULTS)
                self.ins.ctl(f)
                stats["insurer_faults"] += 1
            elif a < 0.5:
                self.pcsc.kill()
                time.sleep(rng.random())
                self.pcsc.restart()
                stats["pcscd_kills"] += 1
            elif a < 0.7 and NETNS:
                subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
                time.sleep(1 + rng.random() * 2)
                subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
                stats["lo_down"] += 1
            elif time.monotonic() - last_kill > 12:
                self.kill9()
                last_kill = time.monotonic()

    def kill9(self):
        self.expected_exit = True
        self.seg["end"] = time.monotonic()
        self.d.kill()
        stats["kills"] += 1
        time.sleep(rng.random() * 0.5)
        self.d.start()
        self.new_segment()
        self.expected_exit = False

    # ------------------------------------------------------------ the end

    def drain(self):
        self.ins.ctl("clear")
        end = time.monotonic() + 90
        while time.monotonic() < end:
            try:
                self.d.result(T + "Upload")
                u = self.d.result(T + "GetStatus")[1]["uploader"]
                if u["waiting"] == 0 and u["state"] == "idle":
                    return u
            except (OSError, Failure):
                pass
            time.sleep(0.5)
        raise Failure("the queue did not drain within 90 s after the soak")

    def check_held(self):
        held = self.ins.held()
        by_id = {}
        for s in held["sheets"]:
            check(s["id"] not in by_id, "the insurer holds sheet %s twice" % s["id"])
            by_id[s["id"]] = s
        missing = [i for i in acked if i not in by_id]
        check(not missing, "%d acknowledged sheets are not held by the insurer, e.g. %s"
              % (len(missing), missing[:3]))
        return len(by_id)


def run():
    print("SOAK_SEED=%d, %.0f s of chaos then %.0f s calm; network namespace: %s"
          % (SEED, SECONDS, CALM, "yes" if NETNS else "no (loopback faults skipped)"), flush=True)
    s = Soak()
    s.crash = None
    threads = [threading.Thread(target=s.client, args=(i,), daemon=True) for i in range(4)]
    threads += [threading.Thread(target=s.cards, args=(i,), daemon=True) for i in range(2)]
    threads += [threading.Thread(target=f, daemon=True) for f in (s.phone, s.events, s.sampler)]
    if s.qr:
        threads.append(threading.Thread(target=s.qr_codes, daemon=True))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        s.chaos(t0 + SECONDS)
        check(not s.crash, s.crash or "")
        # the calm phase: same traffic, no chaos, one daemon segment
        s.ins.ctl("clear")
        if NETNS:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        calm.set()
        s.seg["end"] = time.monotonic()
        s.new_segment()
        s.seg["calm"] = True
        stop.wait(CALM)
        check(not s.crash, s.crash or "")
        calm_seg = s.seg
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    s.seg["end"] = time.monotonic()
    u = s.drain()
    nheld = s.check_held()
    log = s.d.log_text()
    for bad in ("AddressSanitizer", "runtime error:", "Assertion", "double free"):
        check(bad not in log, "vitaled's log shows %r" % bad)

    sm = calm_seg["samples"]
    check(len(sm) >= 6, "too few samples in the calm phase (%d)" % len(sm))
    q = max(1, len(sm) // 4)
    # the floor of each quarter: client connections come and go between
    # samples (each create is a fresh connection), a leak raises the floor
    fd_a, fd_b = min(x[2] for x in sm[:q]), min(x[2] for x in sm[-q:])
    fd_hi = max(x[2] for x in sm)
    rss_a, rss_b = sm[q][1], sm[-1][1]
    print("\n| what | value |\n| --- | --- |")
    rows = [("seed", SEED), ("chaos seconds", int(SECONDS)), ("calm seconds", int(CALM)),
            ("sheets acknowledged", stats["acked"]), ("  of them from a card in a reader", stats["card_sheets"]),
            ("creates refused with a named error", "%d %s" % (stats["refused"], json.dumps(stats["errors"], sort_keys=True))),
            ("creates cut (connection lost, daemon down)", stats["cut"]),
            ("sheets held by the insurer (each once)", nheld),
            ("vitaled kill -9", stats["kills"]), ("pcscd killed and restarted", stats["pcscd_kills"]),
            ("loopback down/up", stats["lo_down"]), ("insurer faults", stats["insurer_faults"]),
            ("cards read per reader", json.dumps(stats["reads"], sort_keys=True)),
            ("QR codes presented / read; replays / replays accepted",
             "%d / %d; %d / %d" % (stats["qr_presented"], stats["qr_read"], stats["qr_replays"],
                                   stats["qr_replay_accepted"]) if s.qr
             else "not run (no PresentCode in this build)"),
            ("calm phase: descriptors, lowest in the first quarter -> in the last (highest seen)",
             "%d -> %d (%d)" % (fd_a, fd_b, fd_hi)),
            ("calm phase: RSS (KiB) after a quarter -> end", "%d -> %d" % (rss_a, rss_b)),
            ("daemon segments (runs between kills)", len(s.segments)),
            ("uploader at the end", "%s, %d waiting" % (u["state"], u["waiting"]))]
    for k, v in rows:
        print("| %s | %s |" % (k, v))
    check(stats["acked"] > 0, "no sheet was acknowledged")
    check(fd_b <= fd_a, "descriptors grew in the calm phase: %d -> %d" % (fd_a, fd_b))
    check(rss_b - rss_a < 3 * 1024, "RSS grew by %d KiB in the calm phase" % (rss_b - rss_a))
    for r in R + ["nfc"]:
        check(stats["reads"].get(r, 0) > 0, "no card was read on %s" % r)
    if s.qr:
        check(stats["qr_read"] > 0, "no QR code was read (%d presented)" % stats["qr_presented"])
        check(stats["qr_replay_accepted"] == 0, "%d replayed QR codes were accepted" % stats["qr_replay_accepted"])
    s.d.stop()
    s.ins.__exit__(None, None, None)
    s.pcsc.stop()


if __name__ == "__main__":
    try:
        run()
    except Failure as e:
        print("FAIL: %s" % e)
        harness.stop_all() if hasattr(harness, "stop_all") else None
        sys.exit(1)
    print("soak: ok")
