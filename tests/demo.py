#!/usr/bin/python3
"""The demo behind `make demo`: start vitaled on a private socket and show
what it does, step by step, on the simulated world."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
from harness import VITALECTL, Daemon  # noqa: E402


def step(title):
    print("\n\033[1m== %s\033[0m" % title if sys.stdout.isatty() else "\n== %s" % title, flush=True)


def show(cmd, d):
    print("$ vitalectl " + " ".join(cmd), flush=True)
    p = subprocess.run([VITALECTL, "--socket", d.sock] + cmd, capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    if p.stderr:
        sys.stdout.write(p.stderr)
    return p


def main():
    step("start vitaled (private socket and state dir, no config file: built-in defaults)")
    with Daemon() as d:
        print("vitaled pid %d, socket %s" % (d.proc.pid, d.sock))
        step("the daemon at a glance")
        show(["status"], d)
        step("the same for scripts")
        p = show(["status", "--json"], d)
        st = json.loads(p.stdout)
        step("any varlink client works: the service's identity")
        show(["info"], d)
        step("a malformed request gets a clear error and the daemon stays up")
        c = d.client()
        c.send_raw(b'{"method": "io.vitaled.Terminal.GetStatus",,}\0')
        print("raw client sent invalid JSON; reply: %s" % json.dumps(c.recv()))
        c.close()
        show(["call", "io.vitaled.Terminal.NoSuchMethod"], d)
        step("stop with SIGTERM")
        rc, took = d.stop()
        print("vitaled exited with %d in %.2f s (terminal %s)" % (rc, took, st["terminal_id"]))
        print("\nlog of this run:")
        for line in d.log_text().splitlines():
            print("  " + line)
    print("\nDemo finished. Readers, cards, PINs and care sheets join this demo as they are built (see README).")


if __name__ == "__main__":
    main()
