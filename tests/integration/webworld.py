"""The web bridge's test world, shared by test_web.py, test_web_kiosk.py and
tests/demo.py: vitaled-web started beside a test daemon, page servers on
loopback, and small HTTP helpers. Everything started here is stopped by PID
on every exit path (harness.track)."""
import http.client
import http.server
import json
import os
import socket
import subprocess
import threading
import time

import harness

TOP = harness.TOP
VITALED_WEB = os.path.join(harness.B, "vitaled-web")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Bridge:
    """vitaled-web for daemon d, reading conf_path (the daemon's file with a
    [web] section), on port, its state and control socket in tmp."""

    def __init__(self, d, tmp, port, conf_path=None):
        self.d = d
        self.port = port
        self.dir = os.path.join(tmp, "web")
        self.ctl = os.path.join(tmp, "web-control.sock")
        self.log = os.path.join(tmp, "vitaled-web.log")
        self.conf = conf_path or d.conf
        self.proc = None

    def start(self):
        cmd = [VITALED_WEB, "--config", self.conf, "--socket", self.d.sock, "--port", str(self.port),
               "--state-dir", self.dir, "--control-socket", self.ctl]
        self.logf = open(self.log, "ab")
        env = dict(os.environ)
        env.pop("LISTEN_FDS", None)
        self.proc = harness.track(subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, env=env))
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise harness.Failure("vitaled-web exited: %s" % self.log_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if os.path.exists(self.ctl):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise harness.Failure("vitaled-web did not listen: %s" % self.log_text())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.returncode not in (0, -9, -15):
            raise harness.Failure("vitaled-web exit %s: %s" % (self.proc.returncode, self.log_text()[-2000:]))

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def request(self, method, path, origin=None, body=None, token=None, headers=None, host=None):
        """(status, headers dict (lower-case names), parsed JSON or None)."""
        h = dict(headers or {})
        if origin:
            h["Origin"] = origin
        if token:
            h["Authorization"] = "Bearer " + token
        if host:
            h["Host"] = host
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        # an event stream never ends: its status and headers are the answer
        stream = (r.getheader("Content-Type") or "").startswith("text/event-stream")
        raw = b"" if stream else r.read()
        c.close()
        try:
            j = json.loads(raw) if raw else None
        except ValueError:
            j = None
        return r.status, {k.lower(): v for k, v in r.getheaders()}, j

    def status(self, origin):
        st, _, j = self.request("GET", "/v1/status", origin=origin)
        if st != 200:
            raise harness.Failure("GET /v1/status: %d %r" % (st, j))
        return j

    def ctl_cmd(self, *args, check_rc=0):
        p = subprocess.run([harness.VITALECTL, "--json", "web", "--web-socket", self.ctl] + list(args),
                           capture_output=True, text=True, timeout=30)
        if check_rc is not None and p.returncode != check_rc:
            raise harness.Failure("vitalectl web %s: exit %d: %s %s" % (" ".join(args), p.returncode,
                                                                       p.stdout, p.stderr))
        return json.loads(p.stdout) if p.stdout.strip() else None

    def pair(self, origin, scope, app="test"):
        """Pair as a page of origin would, approved at the terminal: (token, token id)."""
        st, _, j = self.request("POST", "/v1/pair", origin=origin, body={"app": app, "scope": scope})
        if st != 200:
            raise harness.Failure("POST /v1/pair: %d %r" % (st, j))
        info = self.ctl_cmd("pair", j["code"])
        st, _, t = self.request("GET", "/v1/pair/" + j["pairing"], origin=origin)
        if st != 200 or t.get("state") != "approved":
            raise harness.Failure("collecting the token: %d %r" % (st, t))
        return t["token"], info["id"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def serve_dir(directory, port):
    """A static file server on 127.0.0.1:port for directory, on a daemon thread."""
    handler = lambda *a, **k: _Handler(*a, directory=directory, **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# A function the test pages get: one request, whatever happens, as data.
PROBE_JS = r"""
window.probe = async function (url, opts) {
  try {
    const r = await fetch(url, opts || {});
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return {status: r.status, body: body, type: r.type};
  } catch (e) {
    return {status: 0, error: String(e)};
  }
};
"""


def probe(page, url, method="GET", token=None, body=None, ctype="application/json", mode=None):
    """One fetch from page: {status, body, type} or {status: 0, error}."""
    opts = {"method": method, "headers": {}}
    if token:
        opts["headers"]["Authorization"] = "Bearer " + token
    if body is not None:
        opts["body"] = json.dumps(body)
        opts["headers"]["Content-Type"] = ctype
    if mode:
        opts["mode"] = mode
    page.eval(PROBE_JS)
    return page.eval("probe(%s, %s)" % (json.dumps(url), json.dumps(opts)))
