#!/usr/bin/python3
"""Self-test of the PC/SC test world (run: tests/world/selftest.py [-v]).

Starts private pcscd instances (PcscWorld), puts virtual cards in through
CardHost and talks to them through pcsc_probe (compiled here), as the C daemon
will.  Prints one line per check and the measured figures; exit status 0 when
every check passed.  Every pcscd and card host it starts is stopped by PID on
every exit path (normal end, exception, SIGINT, SIGTERM, SIGHUP); pcscd also
dies with this process if it is SIGKILLed (PR_SET_PDEATHSIG).

It prints no identity data and no PIN: card answers are compared, not shown.
"""

import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cards  # noqa: E402
from cardhost import CardHost  # noqa: E402
from world import PcscWorld, is_our_pcscd, read_int  # noqa: E402

PY = "/usr/bin/python3"
VERBOSE = "-v" in sys.argv
RESULTS = []
FIGURES = []
CHILDREN = []          # Popen objects to stop by PID on exit


def check(name, ok, detail=""):
    RESULTS.append((name, bool(ok)))
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (" -- " + detail) if detail else ""),
          flush=True)
    return ok


def figure(name, value):
    FIGURES.append((name, value))
    print("     %s: %s" % (name, value), flush=True)


def stop_children():
    for p in CHILDREN:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---------------------------------------------------------------- the probe


def build_probe(tmp):
    exe = os.path.join(tmp, "pcsc_probe")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libpcsclite"],
                           capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe,
                    os.path.join(HERE, "pcsc_probe.c")] + flags, check=True)
    return exe


class Probe:
    def __init__(self, exe, world):
        self.exe = exe
        self.env = dict(os.environ, **world.env)

    def run(self, *args, timeout=10):
        try:
            r = subprocess.run([self.exe] + list(args), env=self.env,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if VERBOSE:
            sys.stdout.write("".join("       | %s\n" % l[:120] for l in r.stdout.splitlines()))
            sys.stdout.write("".join("       ! %s\n" % l for l in r.stderr.splitlines()))
        return r

    def apdus(self, *apdus, proto="t0", wait=3, timeout=10, reader=None):
        """-> (rc, atr, [(sw, data, xch)], stdout, stderr) or None on timeout."""
        sel = ["-r", reader] if reader else []
        r = self.run("-w", str(wait), "-p", proto, *sel, *apdus, timeout=timeout)
        if r is None:
            return None
        atr, out = None, []
        for line in r.stdout.splitlines():
            if line.startswith("atr "):
                atr = line[4:]
            elif line.startswith("< "):
                f = dict(kv.split("=", 1) for kv in line[2:].split())
                out.append((f["sw"], bytes.fromhex(f.get("data", "")), int(f["xch"])))
        return r.returncode, atr, out, r.stdout, r.stderr

    def readers(self):
        r = self.run("-l")
        if r is None or r.returncode:
            return None
        return dict(re.match(r"reader (.*): (\w+)", l).groups()
                    for l in r.stdout.splitlines() if l.startswith("reader "))


# ------------------------------------------------------------------ TLV util


def tlv_parse(data, depth=0):
    """Bounded BER-TLV parse -> list of (tag int, value bytes, children|None)."""
    out, i = [], 0
    while i < len(data):
        if data[i] in (0x00, 0xFF):
            i += 1
            continue
        t0 = data[i]
        tag = t0
        i += 1
        if t0 & 0x1F == 0x1F:
            while True:
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        n = data[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            if k > 3:
                raise ValueError("length too long")
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        if i + n > len(data):
            raise ValueError("TLV overruns its container")
        val = data[i:i + n]
        i += n
        kids = tlv_parse(val, depth + 1) if (t0 & 0x20) and depth < 16 else None
        out.append((tag, val, kids))
    return out


def find(tlvs, tag):
    return [t for t in tlvs if t[0] == tag]


# ------------------------------------------------------------------- checks


def read_plan(card):
    """APDUs for the whole Vitale 2 read path, from the card's layout, and the
    expected EF contents in order."""
    plan, expect = [], []
    sel_aid = lambda aid: "00A40400%02X%s" % (len(aid), aid.hex())  # noqa: E731
    for aid, efs in card.apps.items():
        plan.append(("selapp", sel_aid(aid)))
        for fid, data in sorted(efs.items()):
            plan.append(("selef", "00A4000002%04X" % fid))
            off = 0
            while True:
                plan.append(("read", "00B0%04X00" % off))
                if len(data) - off < 256:
                    break
                off += 256
            expect.append((aid, fid, data))
    return plan, expect


def check_vitale2(probe, host):
    card = host.insert("vitale2")
    host.wait_seen(3)
    plan, expect = read_plan(card)
    res = probe.apdus(*[a for _, a in plan])
    if not check("vitale2 read path runs", res and res[0] == 0,
                 res and res[4].strip()):
        host.remove()
        return
    rc, atr, out, _, _ = res
    got, cur, selects61, reads6c, ok = [], None, 0, 0, True
    for (kind, _), (swd, data, xch) in zip(plan, out):
        if kind in ("selapp", "selef"):
            ok &= swd == "9000"
            selects61 += xch == 2
            if kind == "selef":
                cur = bytearray()
                got.append(cur)
        else:
            if swd == "9000":
                cur.extend(data)
                reads6c += xch == 2
            elif swd != "6B00":
                ok = False
    check("vitale2 SELECT answers 61xx then GET RESPONSE", ok and selects61 == sum(
        1 for k, _ in plan if k != "read"))
    same = [bytes(g) == e[2] for g, e in zip(got, expect)]
    check("vitale2 READ BINARY in 256-byte steps returns every EF whole (6Cxx handled)",
          all(same) and len(same) == len(expect) and reads6c > 0,
          "%d EFs, %d reads repeated after 6Cxx" % (len(same), reads6c))
    # parse what was read, as the C profile will
    efs = {e[1]: bytes(g) for g, e in zip(got, expect) if e[0] == cards.AID_VITALE}
    try:
        ptr = tlv_parse(efs[0x2001])
        e0 = ptr[0][2]
        a0 = find(e0, 0xA0)[0][2]
        apps = {v[:2]: v[4:] for t, v, _ in a0 if t == 0x82}
        files = [(v[:8].decode(), v[8:10], int.from_bytes(v[10:12], "big"))
                 for t, v, _ in e0 if t == 0x80]
        names_ok = apps[b"\x00\x01"] == cards.AID_VITALE and \
            apps[b"\x00\x02"] == cards.AID_MF_VITALE
        bens, nirs_ok, corsica = 0, True, False
        for name, entry, fid in files:
            ef = tlv_parse(efs[fid])
            for t, v, kids in ef:
                if t == 0x65:
                    bens += 1
                    nir = find(kids, 0x93)[0][1].decode()
                    nirs_ok &= len(nir) == 15 and cards.nir_key(nir[:13]) == nir[13:]
                    corsica |= nir[5:7] == "2A"
                    bd = find(kids, 0x82)[0][1]
                    nirs_ok &= len(bd) == 8 and bd.isdigit()
        card_ef = tlv_parse(efs[0x2002])
        cert = find(card_ef, 0x7F21)[0][2]
        has_sig = len(find(cert, 0x5F37)[0][1]) == 256
        check("vitale2 pointer file, beneficiaries, NIR keys, certificate parse",
              names_ok and bens == 3 and nirs_ok and has_sig and corsica,
              "%d file entries, %d beneficiaries" % (len(files), bens))
    except Exception as e:  # noqa: BLE001
        check("vitale2 pointer file, beneficiaries, NIR keys, certificate parse", False,
              "%s: %s" % (type(e).__name__, e))
    host.remove()


def check_atrs(probe, host, tmp):
    standin = os.path.join(tmp, "standin_applet.py")
    with open(standin, "w") as f:
        f.write("class PhoneApplet:\n"
                "    def __init__(self, **kw):\n        self.kw = kw\n"
                "    def apdu(self, cmd):\n"
                "        if cmd[1] == 0xA4:\n            return b'\\xA0\\x01\\x01\\x90\\x00'\n"
                "        return b'\\x6D\\x00'\n")
    for name, args, proto in (("vitale2", {}, "t0"), ("vitale2", {"gen": "C"}, "t0"),
                              ("vitale2", {"fa": "1"}, "t0"), ("vitale1", {}, "t0"),
                              ("cps", {}, "t0"), ("cps", {"atr": "cps2"}, "t0"),
                              ("unknown", {}, "any"),
                              ("phone", {"applet": standin}, "any")):
        card = host.insert(name, **args)
        res = probe.apdus("00A404000BD250000002564954414C45", proto=proto)
        host.remove()
        want_sw = {"vitale2": "9000", "phone": "9000"}.get(name, "6A82")
        ok = res is not None and res[0] == 0 and res[1] == card.atr.hex().upper() \
            and res[2] and res[2][0][0] == want_sw
        check("ATR and first answer of %s%s" % (name, " " + str(args) if args and
                                                 name != "phone" else ""), ok,
              "atr %s" % (res[1] if res else "timeout"))
    real = os.path.join(HERE, "phone_applet.py")
    if os.path.exists(real):
        try:
            host.insert("phone")
            res = probe.apdus("00A4040009F0564954414C45440100", proto="any")
            check("phone card with tests/world/phone_applet.py", res and res[0] == 0,
                  res and res[2] and "SW %s" % res[2][0][0])
        except Exception as e:  # noqa: BLE001
            check("phone card with tests/world/phone_applet.py", False, str(e))
        finally:
            host.remove()
    else:
        print("     (tests/world/phone_applet.py absent: phone checked with a stand-in applet)")


def pin(p):
    return (p.encode() + b"\xFF" * 8)[:8].hex().upper()


def check_cps(probe, host):
    host.insert("cps")
    V = "0020000108"
    seq = [V + pin("1111"), "00200001", V + pin("2222"), V + pin("3333"),
           V + pin("1234"), "00200001",
           "002C000110" + b"12345678".hex().upper() + pin("4321"),
           "00200001", V + pin("4321"), "00200001"]
    res = probe.apdus(*seq)
    sws = [s for s, _, _ in res[2]] if res else []
    want = ["63C2", "63C2", "63C1", "63C0", "6983", "6983", "9000", "63C3", "9000", "9000"]
    check("cps VERIFY counts down, blocks, RESET RETRY COUNTER unblocks", sws == want,
          " ".join(sws))
    check("probe masks PIN blocks in its output",
          res is not None and "31313131" not in res[3] and "31323334" not in res[3]
          and "3132333435363738" not in res[3])
    # state lives in the card instance: a reinsert keeps the counter
    res = probe.apdus(V + pin("0000"))
    host.remove()
    host.reinsert()
    res = probe.apdus("00200001")
    check("cps counters survive remove + reinsert of the same card",
          res and res[2] and res[2][0][0] == "63C2")
    host.remove()


class Events:
    """pcsc_probe -E in the background: present/absent events with times."""

    def __init__(self, probe, secs, reader=None):
        args = [probe.exe, "-E", str(secs)] + (["-r", reader] if reader else [])
        self.p = subprocess.Popen(args, env=probe.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        CHILDREN.append(self.p)
        self.events = []
        self.cv = threading.Condition()
        first = self.p.stdout.readline()
        assert first.strip() == "ready", first
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            m = re.match(r"event (\S+) (.*) (present|absent|mute)", line)
            if m:
                with self.cv:
                    self.events.append((float(m.group(1)), m.group(2), m.group(3)))
                    self.cv.notify_all()

    def wait(self, state, after, timeout=5):
        end = time.time() + timeout
        with self.cv:
            while True:
                for t, r, s in self.events:
                    if s == state and t >= after:
                        return t
                left = end - time.time()
                if left <= 0:
                    return None
                self.cv.wait(left)

    def close(self):
        self.p.terminate()
        self.p.wait()


def check_latency(probe, host):
    ev = Events(probe, 60)
    ins, rem = [], []
    try:
        for _ in range(10):
            host.insert("vitale2", wait=0)
            t0 = host.inserted_at
            t1 = ev.wait("present", t0)
            ins.append(t1 - t0 if t1 else None)
            time.sleep(0.2 + random.random() * 0.4)   # sample the 400 ms poll phase
            t2 = time.time()
            host.remove()
            t3 = ev.wait("absent", t2)
            rem.append(t3 - t2 if t3 else None)
            time.sleep(random.random() * 0.4)
    finally:
        ev.close()
    ok = None not in ins and None not in rem
    if ok:
        figure("insertion -> SCardGetStatusChange present (s, 10 runs)",
               "median %.3f  min %.3f  max %.3f" % (statistics.median(ins), min(ins), max(ins)))
        figure("removal -> SCardGetStatusChange absent (s, 10 runs)",
               "median %.3f  min %.3f  max %.3f" % (statistics.median(rem), min(rem), max(rem)))
    check("insertion seen within 1.5 s, removal within 1.0 s",
          ok and max(ins) < 1.5 and max(rem) < 1.0)


def check_rtt(probe, host):
    host.insert("vitale2")
    sel = "00A4040C0BD250000002564954414C45"        # P2=0C: one transmit, 90 00
    r = probe.run("-w", "3", "-q", "-b", "2000", sel)
    m = re.search(r"med_us=(\S+) mean_us=(\S+) p99_us=(\S+)", r.stdout if r else "")
    if m:
        figure("APDU round trip through pcscd+vpcd, TCP_QUICKACK (2000 APDUs)",
               "median %s us, mean %s us, p99 %s us" % m.groups())
    host.remove()
    check("APDU round trip median below 1 ms with TCP_QUICKACK",
          m and float(m.group(1)) < 1000)
    slow = CardHost(host.port, quickack=False)
    try:
        slow.insert("vitale2")
        r = probe.run("-w", "3", "-q", "-b", "20", sel)
        m2 = re.search(r"med_us=(\S+)", r.stdout if r else "")
        if m2:
            figure("same without TCP_QUICKACK (20 APDUs)", "median %s us" % m2.group(1))
    finally:
        slow.close()


def check_hostile(probe, host):
    path = ["00A404000BD250000002564954414C45", "00A40000022001", "00B0000000",
            "00A40000022004", "00B0000000", "00B0010000", "00B0020000"]
    expect = {"endless61": 3, "pingpong6c": 3, "tlvoverrun": 0, "huge": 0,
              "deepnest": 0, "vanish": 1, "wrongconv": 0}
    for name, rc in expect.items():
        card = host.insert(name)
        res = probe.apdus(*path)
        ok = res is not None and res[0] == rc
        if name == "vanish" and res is not None and res[0] == 3:
            # vpcd race: if the closed connection reads as EOF, vpcd returns
            # a 0-byte answer and pcscd reports SCardTransmit SUCCESS, empty.
            ok = "shorter than a status word (0 bytes)" in res[4]
        if name == "vanish" and res is not None:
            figure("APDU after the card vanished", res[4].strip().replace("pcsc_probe: ", ""))
        if name == "wrongconv":
            ok = ok and res[1] == card.atr.hex().upper() and res[1].startswith("3F75")
        if name == "vanish":
            ok = ok and host.state == "removed" and host.apdus == 3
        if name in ("tlvoverrun", "deepnest"):
            d = b"".join(x[1] for x in res[2][4:]) if res else b""
            try:
                tlv_parse(d)
                ok = False if name == "tlvoverrun" else ok
            except (ValueError, IndexError):
                ok = ok and name == "tlvoverrun"
        check("hostile %s behaves (probe rc %s)" % (name, res and res[0]), ok)
        host.remove()
    host.insert("badatr")
    res = probe.apdus(path[0])
    check("hostile badatr: pcscd refuses SCardConnect",
          res is not None and res[0] == 1 and "protocol mismatch" in res[4].lower(),
          res and res[4].strip())
    host.remove()
    host.insert("silent")
    t = time.time()
    res = probe.apdus(path[0], timeout=2)
    hung = res is None
    host.remove()
    time.sleep(0.5)
    host.insert("vitale2")
    res = probe.apdus(path[0])
    check("hostile silent: transmit hangs until removal, then the reader recovers",
          hung and res and res[0] == 0, "waited %.1f s" % (time.time() - t))
    host.remove()
    host.insert("huge")
    res = probe.apdus(path[0], "00A40000022004",
                      *["00B0%04X00" % o for o in range(0, 10400, 256)])
    total = sum(len(d) for _, d, _ in res[2][2:]) if res else 0
    check("hostile huge: 10 KB beneficiary served in 256-byte steps",
          res and res[0] == 0 and total > 10240, "%d bytes" % total)
    host.remove()


def check_two_worlds(probe_exe, wa, tmp):
    pa = Probe(probe_exe, wa)
    with PcscWorld() as wb:
        pb = Probe(probe_exe, wb)
        with wa.cardhost(0) as ha, wb.cardhost(0) as hb:
            ha.insert("vitale2")
            hb.insert("cps")
            ra = pa.apdus("00A404000BD250000002564954414C45")
            rb = pb.apdus("00A404000BD250000002564954414C45")
            check("two worlds side by side, each sees its own card",
                  ra and rb and ra[1].startswith("3B7513") and rb[1].startswith("3B7D18")
                  and ra[2][0][0] == "9000" and rb[2][0][0] == "6A82",
                  "ports %d and %d" % (wa.port, wb.port))
            names_a, names_b = pa.readers(), pb.readers()
            check("reader names are per instance (both have 'Virtual PCD 00 00')",
                  names_a and names_b and set(names_a) == set(names_b) ==
                  {"Virtual PCD 00 00", "Virtual PCD 00 01"})
            figure("reader names", ", ".join(sorted(names_a or {})))
            pid_b = wb.pid
        wb.stop()
        check("stopping one world leaves the other serving",
              not is_our_pcscd(pid_b, wb.dir) and wa.running and
              read_int(os.path.join(wa.dir, "run", "pcscd.pid")) == wa.pid and
              pa.readers() is not None)


def check_kill_restart(probe_exe, w):
    p = Probe(probe_exe, w)
    with w.cardhost(0) as h:
        h.insert("vitale2")
        h.wait_seen(3)
        ev = Events(p, 30)
        t = time.time()
        w.kill()
        killed_seen = ev.wait("absent", 0, timeout=2)
        ev.p.wait(5)
        err = ev.p.returncode
        r = p.run("-l")
        check("after kill -9: socket file left, clients get 'Service not available'",
              os.path.exists(w.socket) and r.returncode == 1 and
              "Service not available" in r.stderr, r.stderr.strip())
        figure("client blocked in SCardGetStatusChange when pcscd is killed",
               "exit %s (%s)" % (err, "RPC transport error, SCARD_F_COMM_ERROR"
                                 if err == 1 else "?"))
        t = time.time()
        w.restart()
        res = p.apdus("00A404000BD250000002564954414C45", wait=5)
        dt = time.time() - t
        check("restart on the same socket and port; the card host reconnects",
              res and res[0] == 0 and res[2][0][0] == "9000", "card usable %.2f s after restart" % dt)
        del killed_seen


def check_shell(probe_exe, tmp):
    d = tempfile.mkdtemp(prefix="shellworld.", dir=tmp)
    sh = os.path.join(HERE, "pcscd-world.sh")
    r = subprocess.run([sh, "start", d], capture_output=True, text=True, timeout=20)
    m = re.search(r"export PCSCLITE_CSOCK_NAME=(\S+)", r.stdout)
    pid = read_int(os.path.join(d, "pcscd.pid"))
    ok = r.returncode == 0 and m and m.group(1) == os.path.join(d, "pcscd.comm") \
        and is_our_pcscd(pid, d)
    check("pcscd-world.sh start prints the export line and leaves pcscd running", ok,
          r.stderr.strip())
    if not ok:
        return
    port = read_int(os.path.join(d, "port"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=m.group(1))
    ctl = os.path.join(d, "card.ctl")
    log = os.path.join(d, "card.log")
    ch = subprocess.Popen([PY, os.path.join(HERE, "cardhost.py"), "--port", str(port),
                           "--control", ctl, "--log", log])
    CHILDREN.append(ch)
    for _ in range(200):
        if os.path.exists(ctl):
            break
        time.sleep(0.01)

    def ctl_cmd(*lines):
        import socket as s
        c = s.socket(s.AF_UNIX, s.SOCK_STREAM)
        c.connect(ctl)
        f = c.makefile("rw")
        out = []
        for line in lines:
            f.write(line + "\n")
            f.flush()
            out.append(f.readline().strip())
        c.close()
        return out

    a = ctl_cmd("status", "insert vitale2", "seen 3", "insert cps", "status")
    rp = subprocess.run([probe_exe, "-w", "3", "-q", "00A404000BD250000002564954414C45",
                         "00A40000022004", "00B0000000"], env=env,
                        capture_output=True, text=True, timeout=10)
    b = ctl_cmd("apdus", "remove", "remove", "insert cps pin=9876", "reinsert", "bogus",
                "insert nosuchcard", "quit")
    try:
        ch.wait(5)
    except subprocess.TimeoutExpired:
        pass
    check("cardhost --control: insert/seen/status/apdus/remove/quit",
          a[0] == "ok empty" and a[1] == "ok" and a[2] == "ok" and a[3].startswith("err")
          and a[4].startswith("ok inserted vitale2") and rp.returncode == 0
          and b[0] == "ok 6" and b[1] == "ok" and b[2].startswith("err")
          and b[3] == "ok" and b[4].startswith("err") and b[5].startswith("err")
          and b[6].startswith("err") and b[7] == "ok" and ch.returncode == 0
          and not os.path.exists(ctl), " | ".join(a + b))
    with open(log) as f:
        text = f.read()
    holders = cards.DEFAULT_HOLDERS["beneficiaries"]
    secrets = [h["surname"] for h in holders] + [h["nir"][:7] for h in holders] + \
        ["9876", "39383736", "1234"]
    check("card host log holds no identity data and no PIN",
          text and not any(s in text for s in secrets) and "INS B0" in text)
    time.sleep(0.5)
    ch2 = subprocess.Popen([PY, os.path.join(HERE, "cardhost.py"), "--port", str(port),
                            "--card", "cps"], stdout=subprocess.PIPE, text=True)
    CHILDREN.append(ch2)
    line = ch2.stdout.readline().strip()
    rq = subprocess.run([probe_exe, "-w", "3", "00200001"], env=env,
                        capture_output=True, text=True, timeout=10)
    t = time.time()
    ch2.terminate()
    try:
        ch2.wait(5)
    except subprocess.TimeoutExpired:
        pass
    check("cardhost --card without --control: 'inserted' line, SIGTERM exits 0",
          line == "inserted cps" and "sw=63C3" in rq.stdout and ch2.returncode == 0,
          "%r, exit %s in %.2f s" % (line, ch2.returncode, time.time() - t))
    r1 = subprocess.run([sh, "kill", d], capture_output=True, text=True, timeout=20)
    gone = not is_our_pcscd(pid, d)
    r2 = subprocess.run([sh, "restart", d], capture_output=True, text=True, timeout=20)
    pid2 = read_int(os.path.join(d, "pcscd.pid"))
    r3 = subprocess.run([probe_exe, "-l"], env=env, capture_output=True, text=True)
    r4 = subprocess.run([sh, "stop", d], capture_output=True, text=True, timeout=20)
    check("pcscd-world.sh kill / restart (same port) / stop",
          r1.returncode == 0 and gone and r2.returncode == 0 and pid2 and pid2 != pid
          and read_int(os.path.join(d, "port")) == port and r3.returncode == 0
          and r4.returncode == 0 and not is_our_pcscd(pid2, d)
          and not os.path.exists(os.path.join(d, "pcscd.comm"))
          and not os.path.exists(os.path.join(d, "pcscd.pid")))


def check_exit_paths(tmp):
    """A Python test using PcscWorld is stopped by SIGTERM, SIGINT, SIGKILL:
    its pcscd must go too."""
    script = ("import signal, sys, time; sys.path.insert(0, %r)\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from world import PcscWorld\n"
              "with PcscWorld() as w:\n"
              "    print(w.pid, w.dir, flush=True)\n"
              "    time.sleep(60)\n") % HERE
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGHUP):
        p = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True,
                             stderr=subprocess.DEVNULL)
        CHILDREN.append(p)
        pid, d = p.stdout.readline().split()
        pid = int(pid)
        alive = is_our_pcscd(pid, d)
        p.send_signal(sig)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        gone = False
        for _ in range(300):
            if not is_our_pcscd(pid, d):
                gone = True
                break
            time.sleep(0.01)
        check("pcscd stopped when its Python test gets %s" % signal.Signals(sig).name,
              alive and gone)
        if not gone:
            os.kill(pid, signal.SIGKILL)
        if sig == signal.SIGKILL:
            import shutil
            shutil.rmtree(d, ignore_errors=True)


def main():
    tmp = tempfile.mkdtemp(prefix="pcscworld-selftest.")
    t_start = time.time()
    try:
        exe = build_probe(tmp)
        with PcscWorld(level="info") as w:
            figure("world", "dir %s port %d (+1)" % (w.dir, w.port))
            p = Probe(exe, w)
            names = p.readers()
            check("pcscd up with two vpcd readers, both empty",
                  names == {"Virtual PCD 00 00": "absent", "Virtual PCD 00 01": "absent"},
                  str(names))
            sys_pid = read_int("/run/pcscd/pcscd.pid")
            check("the shared /run/pcscd/pcscd.pid is not this world's",
                  sys_pid != w.pid and read_int(os.path.join(w.dir, "run", "pcscd.pid")) == w.pid)
            with w.cardhost(0, log=os.path.join(w.dir, "cardhost.log")) as h:
                check_atrs(p, h, tmp)
                check_vitale2(p, h)
                check_cps(p, h)
                check_latency(p, h)
                check_rtt(p, h)
                check_hostile(p, h)
            with w.cardhost(1) as h1:
                h1.insert("vitale1")
                res = p.apdus("00A404000BD250000002564954414C45", reader="PCD 00 01")
                check("second reader ('Virtual PCD 00 01', port+1) works",
                      res and res[0] == 0 and res[1].startswith("3F6525"))
            check_two_worlds(exe, w, tmp)
            check_kill_restart(exe, w)
            wdir = w.dir
        check("world stopped and its temp dir removed on exit", not os.path.exists(wdir))
        check_shell(exe, tmp)
        check_exit_paths(tmp)
    finally:
        stop_children()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    failed = [n for n, ok in RESULTS if not ok]
    print("%d checks, %d failed, %.1f s" % (len(RESULTS), len(failed), time.time() - t_start))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
