#!/usr/bin/python3
"""Host the independent test phone (tests/world/phone_applet.py) on a pipe,
for tests/unit/check_digital.c's interoperability case. Test material only.

    phone_bridge.py WORLD_DIR TMPDIR KNOBS_JSON

Writes the trust anchor's path and a newline, then serves APDUs: each
message both ways is a 2-byte big-endian length and the bytes. A length of
0 from the terminal ends the session; 0xFFFF to the terminal means the
phone has left the field. Exits 77 when the applet cannot be imported.
"""

import json
import os
import sys


def read_exact(f, n):
    b = b""
    while len(b) < n:
        chunk = f.read(n - len(b))
        if not chunk:
            return None
        b += chunk
    return b


def main():
    world, tmpdir, knobs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    sys.path.insert(0, world)
    try:
        import phone_applet
    except ImportError as e:
        print("phone_applet unavailable: %s" % e, file=sys.stderr)
        return 77
    phone = phone_applet.make_phone(tmpdir, **knobs)
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    out.write((os.path.join(tmpdir, "ca.pem") + "\n").encode())
    out.flush()
    while True:
        h = read_exact(inp, 2)
        if not h:
            return 0
        n = int.from_bytes(h, "big")
        if n == 0:
            return 0
        capdu = read_exact(inp, n)
        if phone.gone:
            out.write(b"\xff\xff")
        else:
            r = phone.apdu(capdu)
            out.write(len(r).to_bytes(2, "big") + r)
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
