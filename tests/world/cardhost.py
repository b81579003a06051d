#!/usr/bin/python3
"""Card host: puts a virtual card (cards.py) into a vpcd reader.

vpcd wire protocol (vsmartcard): TCP, the card side is the client.  Every
message both ways is a 2-byte big-endian length then the payload.  From vpcd,
length 1 is a control byte: 00 power off, 01 power on, 02 reset, 04 get ATR
(only 04 is answered: with the ATR).  Longer messages are command APDUs,
answered with the response APDU.  A connection is an insertion, closing it is
a removal.  vpcd asks for the ATR about every 400 ms to poll presence.

TCP_QUICKACK is set before every recv: vpcd may send the length and the payload
in two send() calls and the delayed ACK would then stall each APDU by ~40 ms.

Only 127.0.0.1 is ever connected to.  The log holds INS bytes, SWs and
lengths only: never APDU data (no identity data, no PIN).

CLI:
  cardhost.py --port P --card NAME [--card-arg k=v ...] [--control PATH]
              [--log FILE] [--connect-timeout S] [--no-reconnect]
With --control PATH it serves line commands on a unix socket, one answer line
each ("ok ..." or "err ..."):
  insert NAME [k=v ...]   put a new card in (err if one is in); waits up to
                          3 s for vpcd to read its ATR: "ok", or "ok unseen"
  remove                  pull it out
  reinsert                put the same card instance back (its state kept),
                          answers like insert
  status                  "ok empty" | "ok inserted NAME apdus=N seen=0|1"
                          | "ok removed NAME apdus=N" (after a vanish card)
  apdus                   "ok N": APDUs served since the last insert
  seen [SECONDS]          "ok" once vpcd has read the ATR since the insert
                          (default wait 5 s), else "err timeout"
  quit                    remove the card and exit
Without --control the card goes in at once and stays until the process is
killed (SIGTERM/SIGINT: removed cleanly).  With --card, once vpcd has read the
ATR (or after 3 s), one line goes to stdout: "inserted NAME" (or "... unseen").

A removal and the next insertion on the same reader must be 0.5 s apart or
pcscd (polling every 0.4 s) may not see the swap.  CardHost keeps that delay
itself; two card host processes one after the other do not know of each other.

Python:
  with CardHost(port) as h:
      h.insert("vitale2")            # or h.insert(cards.Vitale2(...))
      h.wait_seen(5)
      ... h.apdus ... h.remove() ... h.reinsert()
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cards  # noqa: E402

HOST = "127.0.0.1"
QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
MIN_ABSENCE = 0.5     # s between a removal and the next insertion (pcscd polls every 0.4 s)


class Disconnected(Exception):
    pass


class CardHost:
    def __init__(self, port, log=None, connect_timeout=10.0, reconnect=True,
                 quickack=True):
        """port: the vpcd port of the reader (PORT = "Virtual PCD 00 00",
        PORT+1 = "... 00 01").  log: a path, a file object or None.
        reconnect: when vpcd drops the connection (pcscd stopped or killed),
        the card is still "in the reader": connect again until it is back.
        quickack=False only to measure the delayed-ACK stall."""
        self.port = int(port)
        self.quickack = quickack
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self._logf = open(log, "a", buffering=1) if isinstance(log, str) else log
        self._own_log = isinstance(log, str)
        self._lock = threading.RLock()
        self._loglock = threading.Lock()
        self._card = None
        self._sock = None
        self._thread = None
        self._stop = None
        self._seen = threading.Event()
        self._apdus = 0
        self._closed_at = None        # monotonic time of the last removal
        self.inserted_at = None
        self.state = "empty"          # empty | inserted | removed

    # ---------------------------------------------------------------- public
    @property
    def apdus(self):
        return self._apdus

    @property
    def card(self):
        return self._card

    @property
    def inserted(self):
        return self.state == "inserted"

    def insert(self, card, wait=3.0, **args):
        """Insert a card (a name from cards.CARDS or a Card instance).
        Then waits up to `wait` seconds (0: not at all) for vpcd to read the
        ATR on the new connection (see wait_seen); .seen tells if it did.

        Why wait: pcscd polls presence every 400 ms.  A remove() and insert()
        closer together than that are not seen yet, and a client that looks
        at once finds the old card "present" with the old ATR.  When vpcd
        reads the ATR of the new connection, pcscd has already counted the
        removal of the old one (vpcd only drops the old connection when a
        poll fails on it), so a client waiting for "present" from then on
        gets the new card."""
        with self._lock:
            if self.state == "inserted":
                raise RuntimeError("a card is already inserted")
            if isinstance(card, str):
                card = cards.make_card(card, **args)
            self._card = card
            self._apdus = 0
            self._start(card)
        if wait:
            self.wait_seen(wait)
        return card

    def reinsert(self, wait=3.0):
        """Insert the same card instance again (PIN counters etc. kept)."""
        with self._lock:
            if self.state == "inserted":
                raise RuntimeError("a card is already inserted")
            if self._card is None:
                raise RuntimeError("no card to reinsert")
            self._card.vanish_now = False
            self._apdus = 0
            self._start(self._card)
        if wait:
            self.wait_seen(wait)

    def remove(self):
        with self._lock:
            if self.state != "inserted":
                self.state = "empty" if self.state == "empty" else self.state
                return False
            self._stop.set()
            self._shutdown_sock()
            self._closed_at = time.monotonic()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(5)
        with self._lock:
            self.state = "empty"
        self._log("removed (apdus=%d)" % self._apdus)
        return True

    @property
    def seen(self):
        return self._seen.is_set()

    def wait_seen(self, timeout=5.0):
        """True once vpcd has asked for the ATR since the (re)insertion."""
        return self._seen.wait(timeout)

    def close(self):
        self.remove()
        if self._own_log and self._logf:
            self._logf.close()
            self._logf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def status(self):
        if self.state == "empty" or self._card is None:
            return "empty"
        if self.state == "inserted":
            return "inserted %s apdus=%d seen=%d" % (
                self._card.name, self._apdus, self._seen.is_set())
        return "removed %s apdus=%d" % (self._card.name, self._apdus)

    # --------------------------------------------------------------- private
    def _log(self, msg):
        if not self._logf:
            return
        with self._loglock:
            t = time.time()
            self._logf.write("%s.%03d cardhost[%d] port %d: %s\n" % (
                time.strftime("%H:%M:%S", time.localtime(t)),
                int(t * 1000) % 1000, os.getpid(), self.port, msg))

    def _connect(self, stop, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while not stop.is_set():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.settimeout(2.0)
                s.connect((HOST, self.port))
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return s
            except OSError:
                s.close()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("vpcd on %s:%d did not accept a card within %.1f s"
                                   % (HOST, self.port, timeout))
            stop.wait(delay)
            delay = min(delay * 2, 0.2)
        return None

    def _start(self, card):
        # pcscd must get one presence poll (every 400 ms) with the slot empty,
        # or it never sees the removal: vpcd accepts a pending connection at
        # the first poll after it dropped the old one.
        if self._closed_at is not None:
            left = self._closed_at + MIN_ABSENCE - time.monotonic()
            if left > 0:
                time.sleep(left)
        stop = threading.Event()
        sock = self._connect(stop, self.connect_timeout)
        self.inserted_at = time.time()      # wall clock, to compare with events
        card.reset()
        self._seen.clear()
        self._stop = stop
        self._sock = sock
        self.state = "inserted"
        self._log("inserted card %s" % card.name)
        t = threading.Thread(target=self._serve, args=(card, stop),
                             name="cardhost-%d" % self.port, daemon=True)
        self._thread = t
        t.start()

    def _shutdown_sock(self):
        s = self._sock
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _serve(self, card, stop):
        while True:
            sock = self._sock
            why = self._serve_conn(card, sock, stop)
            try:
                sock.close()
            except OSError:
                pass
            if stop.is_set():
                return
            if why == "vanish":
                self._closed_at = time.monotonic()
                with self._lock:
                    if self._stop is stop:
                        self.state = "removed"
                        self._sock = None
                self._log("card %s vanished (closed the connection) after %d APDUs"
                          % (card.name, self._apdus))
                return
            # vpcd closed the connection: pcscd stopped or was killed
            if not self.reconnect:
                self._closed_at = time.monotonic()
                with self._lock:
                    if self._stop is stop:
                        self.state = "removed"
                        self._sock = None
                self._log("reader closed the connection; card out")
                return
            self._log("reader closed the connection; reconnecting")
            card.power(False)
            new = self._connect(stop, None)
            if new is None:
                return
            with self._lock:
                if stop.is_set():
                    new.close()
                    return
                self._sock = new
                self._seen.clear()
            self._log("reconnected")

    def _serve_conn(self, card, sock, stop):
        buf = bytearray()

        def need(n):
            while len(buf) < n:
                if self.quickack:
                    sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise Disconnected()
                buf.extend(chunk)

        def send(payload):
            sock.sendall(len(payload).to_bytes(2, "big") + payload)

        silent = False
        try:
            while not stop.is_set():
                need(2)
                n = int.from_bytes(buf[:2], "big")
                need(2 + n)
                msg = bytes(buf[2:2 + n])
                del buf[:2 + n]
                if silent:
                    continue
                if n == 1:
                    c = msg[0]
                    if c == 0x04:
                        send(card.atr)
                        if not self._seen.is_set():
                            self._seen.set()
                            self._log("ATR read by the reader")
                    elif c == 0x00:
                        card.power(False)
                        self._log("power off")
                    elif c == 0x01:
                        card.power(True)
                        self._log("power on")
                    elif c == 0x02:
                        card.reset()
                        self._log("reset")
                    else:
                        self._log("unknown control byte %02X" % c)
                    continue
                if n == 0:
                    continue
                ins = msg[1] if len(msg) > 1 else 0
                try:
                    resp = card.apdu(msg)
                except cards.NoAnswer:
                    silent = True
                    self._apdus += 1
                    self._log("apdu #%d INS %02X -> no answer (silent card)"
                              % (self._apdus, ins))
                    continue
                except Exception as e:  # a card bug must not kill the host
                    self._log("apdu INS %02X raised %s; answering 6F00"
                              % (ins, type(e).__name__))
                    resp = b"\x6F\x00"
                self._apdus += 1
                send(resp)
                self._log("apdu #%d INS %02X -> SW %s len %d" % (
                    self._apdus, ins, resp[-2:].hex().upper(), len(resp) - 2))
                if card.vanish_now:
                    return "vanish"
        except (Disconnected, BrokenPipeError, ConnectionResetError):
            pass
        return "closed"


# ------------------------------------------------------------------------ CLI


class ControlServer:
    def __init__(self, host, path, log):
        self.host = host
        self.path = path
        self.log = log
        self.done = threading.Event()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o600)
        self.sock.listen(16)

    def serve(self):
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.client, args=(conn,), daemon=True).start()

    def client(self, conn):
        with conn:
            f = conn.makefile("rwb", buffering=0)
            for raw in f:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                try:
                    answer = self.command(line)
                except Exception as e:
                    answer = "err %s" % str(e).replace("\n", " ")
                try:
                    f.write((answer + "\n").encode())
                except OSError:
                    return
                if line.split()[0] == "quit":
                    self.stop()
                    return

    def command(self, line):
        words = line.split()
        cmd, rest = words[0], words[1:]
        h = self.host
        if cmd == "insert":
            if not rest:
                return "err usage: insert NAME [k=v ...]"
            h.insert(rest[0], **cards.parse_card_args(rest[1:]))
            return "ok" if h.seen else "ok unseen"
        if cmd == "remove":
            return "ok" if h.remove() else "err no card"
        if cmd == "reinsert":
            h.reinsert()
            return "ok" if h.seen else "ok unseen"
        if cmd == "status":
            return "ok " + h.status()
        if cmd == "apdus":
            return "ok %d" % h.apdus
        if cmd == "seen":
            t = float(rest[0]) if rest else 5.0
            return "ok" if h.wait_seen(t) else "err timeout"
        if cmd == "quit":
            h.remove()
            return "ok"
        return "err unknown command %s" % cmd

    def stop(self):
        self.done.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="virtual card host for vpcd")
    ap.add_argument("--port", type=int, required=True, help="vpcd port of the reader")
    ap.add_argument("--card", help="card name: " + " ".join(sorted(cards.CARDS)))
    ap.add_argument("--card-arg", action="append", default=[], metavar="K=V")
    ap.add_argument("--control", metavar="PATH", help="unix socket for line commands")
    ap.add_argument("--log", metavar="FILE")
    ap.add_argument("--connect-timeout", type=float, default=30.0)
    ap.add_argument("--no-reconnect", action="store_true",
                    help="when vpcd drops the connection, count the card as removed")
    a = ap.parse_args(argv)
    if not a.card and not a.control:
        ap.error("--card is required without --control")

    host = CardHost(a.port, log=a.log, connect_timeout=a.connect_timeout,
                    reconnect=not a.no_reconnect)
    # In the main loop the handler only sets a flag: taking a lock (Event.set)
    # in a signal handler can deadlock against the interrupted main thread.
    # Before that (connecting, waiting for the reader) it unwinds at once.
    stopping = []
    looping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        if not looping:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    server = None
    try:
        if a.control:
            server = ControlServer(host, a.control, a.log)
            threading.Thread(target=server.serve, daemon=True).start()
        if a.card:
            try:
                host.insert(a.card, **cards.parse_card_args(a.card_arg))
            except (TimeoutError, ValueError, RuntimeError) as e:
                print("cardhost: %s" % e, file=sys.stderr)
                return 2
            # one line for scripts to wait on: the reader has read the ATR
            print("inserted %s%s" % (a.card, "" if host.seen else " unseen"), flush=True)
        looping.append(True)
        while not stopping and not (server and server.done.is_set()):
            time.sleep(0.1)
    finally:
        host.close()
        if server:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
