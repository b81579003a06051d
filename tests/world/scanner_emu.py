#!/usr/bin/python3
"""Counter-scanner emulators for tests (docs/digital-card.md part 2).

SerialScanner: a USB CDC-ACM 2D scanner as vitaled's `[scanner] device` sees
it: a pseudo-terminal whose slave is reachable through a fixed path (a
symbolic link, like /dev/serial/by-id/...). scan(text) sends the text and the
scanner's line terminator (CR LF by default, as most scanners ship);
unplug() closes the master (vitaled's read then fails, as when a USB ACM
device goes away) and removes the link; plug() makes a new one.

KeyboardScanner: a 2D scanner in USB keyboard mode, made with /dev/uinput
(python3-evdev is not needed: the uinput ioctls are written here). scan(text)
types the text with the key codes of a US (qwerty) or French (azerty)
layout, then Enter. Needs /dev/uinput and the right to write it; the
constructor raises OSError when the machine has none (tests skip then).

Test tool only.
"""

import fcntl
import os
import struct
import termios
import time
import tty


class SerialScanner:
    def __init__(self, link, terminator=b"\r\n"):
        self.link = link
        self.terminator = terminator
        self.master = None
        self.slave = None
        self.plug()

    def plug(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        name = os.ttyname(self.slave)
        tmp = self.link + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, self.link)

    def unplug(self):
        if os.path.lexists(self.link):
            os.unlink(self.link)
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    def scan(self, text, terminator=None, chunk=64, pause=0.0):
        """Send a code as a scanner does: in USB packets of `chunk` bytes."""
        data = text.encode("latin-1") + (self.terminator if terminator is None else terminator)
        for i in range(0, len(data), chunk):
            os.write(self.master, data[i:i + chunk])
            if pause:
                time.sleep(pause)
        termios.tcdrain(self.master)

    def close(self):
        self.unplug()


# --------------------------------------------------------------------------
# uinput (linux/uinput.h, linux/input-event-codes.h)

UI_SET_EVBIT = 0x40045564
UI_SET_KEYBIT = 0x40045565
UI_DEV_CREATE = 0x5501
UI_DEV_DESTROY = 0x5502
EV_SYN, EV_KEY = 0x00, 0x01
KEY_ENTER, KEY_LEFTSHIFT, KEY_SPACE = 28, 42, 57

# US key codes of the characters a code holds
_ROW = {
    "1": 2, "2": 3, "3": 4, "4": 5, "5": 6, "6": 7, "7": 8, "8": 9, "9": 10, "0": 11,
    "-": 12, "=": 13, "q": 16, "w": 17, "e": 18, "r": 19, "t": 20, "y": 21, "u": 22, "i": 23,
    "o": 24, "p": 25, "[": 26, "]": 27, "a": 30, "s": 31, "d": 32, "f": 33, "g": 34, "h": 35,
    "j": 36, "k": 37, "l": 38, ";": 39, "'": 40, "\\": 43, "z": 44, "x": 45, "c": 46, "v": 47,
    "b": 48, "n": 49, "m": 50, ",": 51, ".": 52, "/": 53,
}
QWERTY = {}
for ch, code in _ROW.items():
    QWERTY[ch] = (code, False)
    if ch.isalpha():
        QWERTY[ch.upper()] = (code, True)
QWERTY.update({"$": (5, True), "%": (6, True), "*": (9, True), "+": (13, True), ":": (39, True),
               " ": (KEY_SPACE, False)})
# French AZERTY: digits with Shift on the number row; A/Q, Z/W, M moved
AZERTY = {" ": (KEY_SPACE, False)}
for i, d in enumerate("1234567890"):
    AZERTY[d] = (2 + i, True)
for ch in "bcdefghijklnoprstuvxy":
    AZERTY[ch.upper()] = (_ROW[ch], True)
AZERTY.update({"A": (16, True), "Q": (30, True), "Z": (17, True), "W": (44, True),
               "M": (39, True), "$": (27, False), "%": (40, True), "*": (43, False),
               "+": (13, True), "-": (7, False), ".": (51, True), "/": (52, True),
               ":": (52, False)})


class KeyboardScanner:
    def __init__(self, layout="qwerty", name=b"vitaled test scanner"):
        self.map = AZERTY if layout == "azerty" else QWERTY
        self.fd = os.open("/dev/uinput", os.O_WRONLY | os.O_NONBLOCK)
        fcntl.ioctl(self.fd, UI_SET_EVBIT, EV_KEY)
        for code in range(1, 128):
            fcntl.ioctl(self.fd, UI_SET_KEYBIT, code)
        # struct uinput_user_dev: name[80], input_id (4 x u16), ff_effects_max,
        # absmax/absmin/absfuzz/absflat[64] each
        dev = struct.pack("80sHHHHi", name, 0x03, 0x1234, 0x5678, 1, 0) + b"\0" * (4 * 64 * 4)
        os.write(self.fd, dev)
        fcntl.ioctl(self.fd, UI_DEV_CREATE)
        time.sleep(0.3)
        self.path = self._find(name)

    @staticmethod
    def _find(name):
        base = "/sys/class/input"
        for e in sorted(os.listdir(base)):
            if not e.startswith("event"):
                continue
            try:
                with open(os.path.join(base, e, "device", "name"), "rb") as f:
                    if f.read().strip() == name:
                        return "/dev/input/" + e
            except OSError:
                pass
        raise OSError("the uinput device did not appear")

    def _ev(self, type_, code, value):
        t = time.time()
        os.write(self.fd, struct.pack("llHHi", int(t), int((t % 1) * 1e6), type_, code, value))

    def _key(self, code, shift):
        if shift:
            self._ev(EV_KEY, KEY_LEFTSHIFT, 1)
        self._ev(EV_KEY, code, 1)
        self._ev(EV_KEY, code, 0)
        if shift:
            self._ev(EV_KEY, KEY_LEFTSHIFT, 0)
        self._ev(EV_SYN, 0, 0)

    def scan(self, text):
        for ch in text:
            code, shift = self.map[ch]
            self._key(code, shift)
        self._key(KEY_ENTER, False)

    def close(self):
        try:
            fcntl.ioctl(self.fd, UI_DEV_DESTROY)
        finally:
            os.close(self.fd)
