#!/usr/bin/python3
"""PN532 emulator on a pseudo-terminal, hosting the vitaled phone applet.

libnfc's pn532_uart driver opens the pty's slave (the link PATH) as if it were
a PN532 on a serial line. This program speaks the PN532 host protocol (NXP
UM0701, the PN532 user manual: HSU frames, ACK, extended frames, wake-up) on
the master side and emulates one phone doing ISO 14443-4A card emulation with
a random UID per tap.
APDUs from InDataExchange go to phone_applet.PhoneApplet.

    pn532emu.py --link PATH [--control SOCK] [--log FILE] [--world DIR]
                [--phone "KNOBS"] [--tap] [--rf-timeout-ms 40]
    pn532emu.py --control SOCK --send "COMMAND"          (a control client)

Control socket (unix stream), one command a line, one answer line each:
    tap [knob=value ...]  a phone comes into the field (new random UID); knobs of
                          phone_applet.make_phone, over the --phone defaults
    away                  the phone leaves the field (exchanges time out)
    vanish                the PN532 stops answering (unplugged): the pty is no
                          longer read, nothing is sent
    back [reset]          it answers again; "reset": as after a power cycle
                          (asleep, no target, field off, termios cleared)
    status                one line of state (no identity data)
    quit                  exit

The log (--log) has one line per frame: time, command, lengths, status words.
It never holds APDU data (identity data) in clear.
"""

import argparse
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import termios
import time
import tty

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phone_applet  # noqa: E402

ACK = b"\x00\x00\xff\x00\xff\x00"
SYNTAX_ERROR = b"\x00\x00\xff\x01\xff\x7f\x81\x00"      # UM0701 syntax error frame

# UM0701 status byte values used here
ST_OK, ST_TIMEOUT, ST_BAD_CONTEXT = 0x00, 0x01, 0x27
PARAM_AUTO_RATS = 0x10

# An Android phone in host card emulation: ATQA 00 04, SAK 20 (ISO 14443-4),
# a 4-byte random NFCID1 starting with 08, ATS 05 78 80 70 02 (FSCI 8 = 256
# bytes, FWI 7, no historical bytes).
ATQA, SAK, ATS = b"\x00\x04", 0x20, b"\x05\x78\x80\x70\x02"

NAMES = {
    0x00: "Diagnose", 0x02: "GetFirmwareVersion", 0x04: "GetGeneralStatus",
    0x06: "ReadRegister", 0x08: "WriteRegister", 0x12: "SetParameters",
    0x14: "SAMConfiguration", 0x16: "PowerDown", 0x32: "RFConfiguration",
    0x40: "InDataExchange", 0x42: "InCommunicateThru", 0x44: "InDeselect",
    0x4A: "InListPassiveTarget", 0x4E: "InPSL", 0x50: "InATR", 0x52: "InRelease",
    0x54: "InSelect", 0x56: "InJumpForDEP", 0x46: "InJumpForPSL", 0x60: "InAutoPoll",
}


def parse_knobs(words):
    """["code=refuse", "pending_s=2"] -> {"code": "refuse", "pending_s": 2.0}"""
    out = {}
    for w in words:
        k, sep, v = w.partition("=")
        if not sep:
            raise ValueError("knob %r is not key=value" % w)
        default = phone_applet.KNOBS.get(k, "")
        if k in ("expired", "not_yet_valid") or isinstance(default, bool):
            out[k] = v.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, int):
            out[k] = int(v)
        elif isinstance(default, float):
            out[k] = float(v)
        elif k == "holder":
            out[k] = json.loads(v)
        elif k in phone_applet.KNOBS or k in phone_applet.CREDENTIAL_KNOBS:
            out[k] = v
        else:
            raise ValueError("unknown knob %r" % k)
    return out


def frame(payload):
    """A PN532 -> host information frame (normal, or extended above 255 bytes)."""
    n = len(payload)
    dcs = (-sum(payload)) & 0xFF
    if n <= 255:
        return b"\x00\x00\xff" + bytes([n, (-n) & 0xFF]) + payload + bytes([dcs, 0])
    hi, lo = n >> 8, n & 0xFF
    return b"\x00\x00\xff\xff\xff" + bytes([hi, lo, (-(hi + lo)) & 0xFF]) + payload + bytes([dcs, 0])


class Emulator:
    def __init__(self, args):
        self.args = args
        self.t0 = time.monotonic()
        self.logf = open(args.log, "a", buffering=1) if args.log else None
        self.own_world = not args.world
        self.world = args.world or tempfile.mkdtemp(prefix="pn532emu-")
        self.default_knobs = parse_knobs(args.phone.split()) if args.phone else {}
        self.rf_timeout = args.rf_timeout_ms / 1000.0
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.clean_termios = termios.tcgetattr(self.slave)
        os.set_blocking(self.master, False)
        if os.path.lexists(args.link):
            raise SystemExit("pn532emu: %s exists; use a unique path per test" % args.link)
        os.symlink(os.ttyname(self.slave), args.link)
        self.link = args.link
        self.listener = None
        self.clients = {}
        if args.control:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(args.control)
            self.listener.listen(4)
        self.rx = bytearray()
        self.tx = bytearray()
        self.last_frame = b""
        self.vanished = False
        self.running = True
        self.frames = 0
        self.power_on()
        self.phone = None
        self.uid = b""
        if args.tap:
            self.tap({})

    # -- chip state ----------------------------------------------------------

    def power_on(self):
        self.asleep = True            # libnfc assumes LowVbat: it sends 55 55 00.. first
        self.registers = {}
        self.params = 0x14            # fAutoATR_RES | fAutomaticRATS
        self.field = False
        self.mx_rty_passive = 0xFF
        self.target = None            # the phone object the PN532 activated as Tg 1
        self.iso_dep = False
        self.pending = None           # (deadline or None, on_deadline, on_tap)

    def log(self, fmt, *a):
        if self.logf:
            self.logf.write("%10.3f %s\n" % ((time.monotonic() - self.t0) * 1000, fmt % a))

    # -- phone in the field ----------------------------------------------------

    def tap(self, knobs):
        merged = dict(self.default_knobs, **knobs)
        self.phone = phone_applet.make_phone(self.world, **merged)
        self.uid = b"\x08" + os.urandom(3)
        self.log("field: phone tapped uid=%s knobs=%s", self.uid.hex(), sorted(merged))
        if self.pending and self.pending[2]:
            on_tap = self.pending[2]
            self.pending = None
            on_tap()

    def away(self, why="taken away"):
        if self.phone:
            self.log("field: phone %s", why)
        self.phone = None

    def present(self):
        if self.phone is not None and self.phone.gone:
            self.away("vanished (vanish_after)")
        return self.phone is not None

    def activate(self):
        """Anticollision + SELECT (+ RATS when automatic): a new ISO-DEP session."""
        self.field = True
        self.target = self.phone
        self.iso_dep = bool(self.params & PARAM_AUTO_RATS)
        self.phone.reset()
        data = b"\x01" + ATQA + bytes([SAK, len(self.uid)]) + self.uid
        return data + ATS if self.iso_dep else data

    def deactivate(self):
        if self.target is not None:
            self.target.reset()
        self.target = None

    def linked(self):
        """The activated target is still the phone in the field."""
        return self.target is not None and self.present() and self.target is self.phone

    # -- frames -------------------------------------------------------------------

    def send(self, data):
        if not self.vanished:
            self.tx += data

    def respond(self, cmd, body):
        f = frame(bytes([0xD5, cmd + 1]) + body)
        self.last_frame = f
        self.send(f)

    def feed(self, data):
        if self.asleep:
            i = data.find(b"\x55")
            if i < 0:
                self.log("asleep: %d bytes dropped (no wake-up)", len(data))
                return
            self.asleep = False
            self.log("wake-up")
            data = data[i:]
        self.rx += data
        self.parse()

    def parse(self):
        rx = self.rx
        while True:
            i = rx.find(b"\x00\xff")
            if i < 0:
                del rx[:max(len(rx) - 1, 0)]
                return
            del rx[:i]
            if len(rx) < 4:
                return
            ln, lcs = rx[2], rx[3]
            if (ln, lcs) == (0x00, 0xFF):
                del rx[:4]
                self.log("host ACK: abort%s", " of the pending command" if self.pending else "")
                self.pending = None
                continue
            if (ln, lcs) == (0xFF, 0x00):
                del rx[:4]
                self.log("host NACK: resend")
                self.send(self.last_frame)
                continue
            if (ln, lcs) == (0xFF, 0xFF):
                if len(rx) < 7:
                    return
                if (rx[4] + rx[5] + rx[6]) & 0xFF:
                    del rx[:2]
                    continue
                n, hdr = rx[4] << 8 | rx[5], 7
            else:
                if (ln + lcs) & 0xFF:
                    del rx[:2]
                    continue
                n, hdr = ln, 4
            if len(rx) < hdr + n + 1:
                return
            body = bytes(rx[hdr:hdr + n])
            dcs = rx[hdr + n]
            del rx[:hdr + n + 1]
            if (sum(body) + dcs) & 0xFF or n < 2 or body[0] != 0xD4:
                self.log("bad frame dropped (%d bytes)", n)
                continue
            self.frames += 1
            if self.pending:
                self.log("pending command abandoned by a new frame")
                self.pending = None
            self.send(ACK)
            self.command(body[1], body[2:], extended=hdr == 7)

    # -- commands (UM0701) --------------------------------------------------------

    def command(self, cmd, d, extended):
        name = NAMES.get(cmd, "0x%02X" % cmd)
        h = getattr(self, "cmd_%02x" % cmd, None)
        if h is None:
            self.log("%s: not emulated, syntax error frame", name)
            self.send(SYNTAX_ERROR)
            return
        if cmd not in (0x40, 0x06, 0x08):
            # parameters in full when short; longer ones could carry card data
            self.log("%s %s%s", name, d.hex() if len(d) <= 8 and cmd != 0x00 else
                     "%s.. (%d bytes)" % (d[:2].hex(), len(d)), " (extended frame)" if extended else "")
        h(cmd, d)

    def cmd_00(self, cmd, d):                       # Diagnose
        if d[:1] == b"\x00":                        # communication line test: echo
            self.respond(cmd, d)
        elif d[:1] == b"\x06":                      # card presence
            self.respond(cmd, bytes([ST_OK if self.linked() else ST_TIMEOUT]))
        else:
            self.respond(cmd, b"\x00")

    def cmd_02(self, cmd, d):                       # GetFirmwareVersion: PN532 v1.6
        self.respond(cmd, b"\x32\x01\x06\x07")

    def cmd_04(self, cmd, d):                       # GetGeneralStatus
        tg = b"\x01\x01\x00\x00\x00" if self.target is not None else b"\x00"
        self.respond(cmd, bytes([0x00, int(self.field)]) + tg + b"\x00")

    def cmd_06(self, cmd, d):                       # ReadRegister
        addrs = [d[i] << 8 | d[i + 1] for i in range(0, len(d) - 1, 2)]
        vals = bytes(self.registers.get(a, 0) for a in addrs)
        self.log("ReadRegister %s", " ".join("%04X=%02X" % (a, v) for a, v in zip(addrs, vals)))
        self.respond(cmd, vals)

    def cmd_08(self, cmd, d):                       # WriteRegister
        for i in range(0, len(d) - 2, 3):
            self.registers[d[i] << 8 | d[i + 1]] = d[i + 2]
        self.log("WriteRegister %s", " ".join("%02X%02X=%02X" % tuple(d[i:i + 3])
                                                for i in range(0, len(d) - 2, 3)))
        self.respond(cmd, b"")

    def cmd_12(self, cmd, d):                       # SetParameters
        self.params = d[0] if d else self.params
        self.respond(cmd, b"")

    def cmd_14(self, cmd, d):                       # SAMConfiguration
        self.respond(cmd, b"")

    def cmd_16(self, cmd, d):                       # PowerDown
        self.respond(cmd, b"\x00")
        self.deactivate()
        self.field = False
        self.asleep = True

    def cmd_32(self, cmd, d):                       # RFConfiguration
        if d[:1] == b"\x01":                        # RF field
            on = bool(d[1] & 1) if len(d) > 1 else False
            if not on:
                self.deactivate()
                if self.phone:
                    self.phone.reset()             # the phone lost the field
            self.field = on
        elif d[:1] == b"\x05" and len(d) >= 4:      # MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
            self.mx_rty_passive = d[3]
        self.respond(cmd, b"")

    def cmd_4a(self, cmd, d):                       # InListPassiveTarget
        brty = d[1] if len(d) > 1 else 0
        wanted_uid = d[2:]
        self.deactivate()
        if brty == 0x00 and self.present() and (not wanted_uid or wanted_uid == self.uid):
            self.respond(cmd, b"\x01" + self.activate())
            return
        if brty == 0x00 and self.mx_rty_passive == 0xFF:
            # endless retries: the chip keeps polling until a card comes
            self.log("InListPassiveTarget: no target, endless retries, waiting for a tap")
            self.pending = (None, None, lambda: self.respond(cmd, b"\x01" + self.activate()))
            return
        self.respond(cmd, b"\x00")

    def cmd_44(self, cmd, d):                       # InDeselect
        self.deactivate()
        self.respond(cmd, bytes([ST_OK]))

    def cmd_52(self, cmd, d):                       # InRelease
        self.deactivate()
        self.respond(cmd, bytes([ST_OK]))

    def cmd_54(self, cmd, d):                       # InSelect
        if self.present():
            self.activate()
            self.respond(cmd, bytes([ST_OK]))
        else:
            self.later(self.rf_timeout, cmd, bytes([ST_TIMEOUT]))

    def cmd_56(self, cmd, d):                       # InJumpForDEP: no DEP target here
        self.later(self.rf_timeout, cmd, bytes([ST_TIMEOUT]))

    def cmd_60(self, cmd, d):                       # InAutoPoll
        pollnr, period, types = d[0], d[1], d[2:]
        if 0x20 in types or 0x10 in types:
            kind = 0x20 if 0x20 in types else 0x10

            def found():
                data = self.activate()
                self.respond(cmd, bytes([1, kind, len(data)]) + data)
            if self.present():
                found()
                return
        else:
            found = None
        # UM0701 InAutoPoll: PollNr rounds of Period x 150 ms per type; 0xFF: endless
        wait = None if pollnr == 0xFF else pollnr * max(period, 1) * 0.15 * max(len(types), 1)
        self.log("InAutoPoll: no target, waiting %s", "for ever" if wait is None else "%.2f s" % wait)
        self.pending = (None if wait is None else time.monotonic() + wait,
                        lambda: self.respond(cmd, b"\x00"), found)

    def cmd_40(self, cmd, d):                       # InDataExchange
        apdu = d[1:]
        if self.target is None:
            self.log("InDataExchange: no activated target -> 27")
            self.respond(cmd, bytes([ST_BAD_CONTEXT]))
            return
        if not self.linked() or not self.iso_dep:
            self.log("InDataExchange: %d bytes, no answer from the field -> timeout", len(apdu))
            self.later(self.rf_timeout, cmd, bytes([ST_TIMEOUT]))
            return
        t = time.monotonic()
        r = self.phone.apdu(apdu)
        # header and sizes only: the data are identity data
        self.log("APDU %s +%d bytes -> %d bytes SW %s (%.3f ms)%s", apdu[:4].hex().upper(),
                 max(len(apdu) - 4, 0), len(r) - 2, r[-2:].hex().upper(),
                 (time.monotonic() - t) * 1000,
                 " (extended frames)" if len(d) + 2 > 255 or len(r) + 3 > 255 else "")
        self.respond(cmd, bytes([ST_OK]) + r)

    def cmd_42(self, cmd, d):                       # InCommunicateThru
        if self.linked() and self.iso_dep and d[:1] in (b"\xb2", b"\xb3"):
            self.respond(cmd, bytes([ST_OK, 0xA2 | (d[0] & 1)]))   # R(NAK) -> R(ACK)
        elif self.linked() and not self.iso_dep and d[:1] == b"\xe0":
            self.iso_dep = True                                     # RATS -> ATS
            self.respond(cmd, bytes([ST_OK]) + ATS)
        else:
            self.later(self.rf_timeout, cmd, bytes([ST_TIMEOUT]))

    def later(self, delay, cmd, body):
        """An answer after an RF time-out, as the chip waits for the card first."""
        self.pending = (time.monotonic() + delay, lambda: self.respond(cmd, body), None)

    # -- control socket -------------------------------------------------------------

    def control(self, line):
        words = line.split()
        if not words:
            return "err empty command"
        op, rest = words[0], words[1:]
        if op == "tap":
            self.tap(parse_knobs(rest))
            return "ok uid=%s" % self.uid.hex()
        if op == "away":
            self.away()
            return "ok"
        if op == "vanish":
            self.vanished = True
            self.pending = None
            self.tx.clear()
            self.log("control: vanish (the PN532 stops answering)")
            return "ok"
        if op == "back":
            self.drain()
            self.vanished = False
            if rest == ["reset"]:
                self.power_on()
                termios.tcsetattr(self.slave, termios.TCSANOW, self.clean_termios)
            self.log("control: back%s", " after a power cycle" if rest else "")
            return "ok"
        if op == "status":
            return "ok phone=%s uid=%s target=%s apdus=%d vanished=%s asleep=%s frames=%d" % (
                "yes" if self.present() else "no", self.uid.hex() or "-",
                "active" if self.linked() else "none",
                self.phone.apdu_count if self.phone else 0,
                "yes" if self.vanished else "no", "yes" if self.asleep else "no", self.frames)
        if op == "quit":
            self.running = False
            return "ok"
        return "err unknown command %r" % op

    def drain(self):
        """Throw away what the host wrote while the chip was not listening."""
        n = 0
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            n += len(chunk)
        self.rx.clear()
        if n:
            self.log("back: %d stale bytes dropped", n)

    # -- main loop -------------------------------------------------------------------

    def run(self):
        while self.running:
            timeout = None
            if self.pending and self.pending[0] is not None:
                timeout = max(self.pending[0] - time.monotonic(), 0)
            rl = list(self.clients)
            if self.listener:
                rl.append(self.listener)
            if not self.vanished:
                rl.append(self.master)
            wl = [self.master] if self.tx else []
            r, w, _ = select.select(rl, wl, [], timeout)
            if self.pending and self.pending[0] is not None and time.monotonic() >= self.pending[0]:
                on_deadline = self.pending[1]
                self.pending = None
                on_deadline()
            if self.master in r:
                try:
                    data = os.read(self.master, 4096)
                except (BlockingIOError, OSError):
                    data = b""
                if data:
                    self.feed(data)
            if self.listener in r:
                conn, _ = self.listener.accept()
                self.clients[conn] = bytearray()
            for c in [c for c in r if c in self.clients]:
                self.serve(c)
            if self.tx and not self.vanished:
                try:
                    n = os.write(self.master, self.tx)
                    del self.tx[:n]
                except BlockingIOError:
                    pass

    def serve(self, conn):
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            del self.clients[conn]
            conn.close()
            return
        buf = self.clients[conn]
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            try:
                answer = self.control(line.decode("utf-8", "replace"))
            except Exception as e:                  # a bad knob must not kill the reader
                answer = "err %s" % e
            conn.sendall(answer.encode() + b"\n")

    def close(self):
        for path in (self.link, self.args.control):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        for c in self.clients:
            c.close()
        os.close(self.master)
        os.close(self.slave)
        if self.own_world:
            shutil.rmtree(self.world, ignore_errors=True)
        if self.logf:
            self.log("exit")
            self.logf.close()


def client(sock_path, line, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    s.sendall(line.encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()
    return buf.decode().strip()


def main(argv=None):
    p = argparse.ArgumentParser(description="PN532 (HSU) emulator with a vitaled phone")
    p.add_argument("--link", help="path of the symlink to the pty slave (libnfc's port)")
    p.add_argument("--control", help="control unix socket")
    p.add_argument("--send", help="client mode: send this control command and print the answer")
    p.add_argument("--log", help="frame log file (no identity data)")
    p.add_argument("--world", help="directory for the test issuer and credentials")
    p.add_argument("--phone", default="", help='default phone knobs, e.g. "code=refuse pending_s=2"')
    p.add_argument("--tap", action="store_true", help="a phone is in the field from the start")
    p.add_argument("--rf-timeout-ms", type=float, default=40.0,
                   help="delay of a time-out answer when the phone does not answer")
    a = p.parse_args(argv)
    if a.send:
        if not a.control:
            p.error("--send needs --control")
        answer = client(a.control, a.send)
        print(answer)
        return 0 if answer.startswith("ok") else 1
    if not a.link:
        p.error("--link is required")
    emu = Emulator(a)

    def stop(signum, frame_):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        print("ready link=%s control=%s" % (a.link, a.control or "-"), flush=True)
        emu.run()
    finally:
        emu.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
