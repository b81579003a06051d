"""Headless Chromium driven over the DevTools protocol, for the web bridge's
browser tests (test_web.py, test_web_kiosk.py) and tests/demo.py. Debian's
chromium and python3-websocket only: no npm, nothing downloaded.

    b = Browser(tmp)                       # chromium --headless, its own profile in tmp
    p = b.page()                           # a new tab
    p.navigate("http://localhost:8000/")   # returns after the load event
    p.eval("document.title")               # a value (promises awaited)
    p.screenshot("/path/shot.png")
    p.serve("http://rebind.test:1234/", html)   # answer that URL from here (Fetch domain)
    b.close()                              # also on any exit path (harness.track)

The browser runs as root, hence --no-sandbox; it only ever loads pages of the
test's own servers on loopback (host-resolver-rules maps the test's names to
127.0.0.1 and everything else to nothing).
"""
import base64
import json
import os
import shutil
import subprocess
import time

import websocket  # Debian python3-websocket

import harness

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def available():
    return os.access(CHROMIUM, os.X_OK)


class CdpError(harness.Failure):
    pass


class Page:
    def __init__(self, ws_url, timeout=30.0):
        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events = []
        self.served = {}       # url -> (status, content type, body)
        self.console = []
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _handle(self, msg):
        m = msg.get("method")
        if m == "Fetch.requestPaused":
            p = msg["params"]
            url = p["request"]["url"]
            hit = self.served.get(url)
            if hit and p.get("resourceType") == "Document":
                status, ctype, body = hit
                self._send("Fetch.fulfillRequest", {
                    "requestId": p["requestId"], "responseCode": status,
                    "responseHeaders": [{"name": "Content-Type", "value": ctype}],
                    "body": base64.b64encode(body.encode()).decode()})
            else:
                self._send("Fetch.continueRequest", {"requestId": p["requestId"]})
            return
        if m == "Runtime.consoleAPICalled":
            args = msg["params"].get("args", [])
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        self.events.append(msg)

    def _send(self, method, params=None):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        return self.next_id

    def call(self, method, params=None, timeout=30.0):
        i = self._send(method, params)
        end = time.monotonic() + timeout
        while True:
            self.ws.settimeout(max(0.05, end - time.monotonic()))
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                raise CdpError("%s: no answer within %.0f s" % (method, timeout))
            if msg.get("id") == i:
                if "error" in msg:
                    raise CdpError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self._handle(msg)

    def pump(self, seconds):
        """Handle events for a while (interceptions, console)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ws.settimeout(max(0.05, end - time.monotonic()))
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                return
            if "method" in msg:
                self._handle(msg)

    def serve(self, url, html, status=200, ctype="text/html; charset=utf-8"):
        """Answer a navigation to url with html (the network is not asked)."""
        self.served[url] = (status, ctype, html)
        self.call("Fetch.enable", {"patterns": [{"urlPattern": u, "requestStage": "Request"}
                                                for u in self.served]})

    def navigate(self, url, timeout=30.0):
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        r = self.call("Page.navigate", {"url": url}, timeout)
        if r.get("errorText"):
            raise CdpError("navigate %s: %s" % (url, r["errorText"]))
        end = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > end:
                raise CdpError("navigate %s: no load event" % url)
            self.pump(0.1)

    def eval(self, expr, timeout=30.0):
        """The value of a JavaScript expression (a promise is awaited)."""
        r = self.call("Runtime.evaluate", {"expression": expr, "awaitPromise": True,
                                           "returnByValue": True, "timeout": int(timeout * 1000)},
                      timeout + 5)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError("eval: %s" % (d.get("exception", {}).get("description") or d.get("text")))
        return r["result"].get("value")

    def wait(self, expr, timeout=20.0, what=None):
        """Wait until a JavaScript expression is truthy; its value."""
        end = time.monotonic() + timeout
        while True:
            v = self.eval(expr)
            if v:
                return v
            if time.monotonic() > end:
                raise CdpError("waited %.0f s for %s" % (timeout, what or expr))
            self.pump(0.1)

    def viewport(self, width, height):
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False})

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", {"format": "png"})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


class Browser:
    def __init__(self, tmp, map_hosts=("rebind.test", "app.test"), extra_args=()):
        self.dir = os.path.join(tmp, "chromium")
        os.makedirs(self.dir, exist_ok=True)
        rules = ", ".join("MAP %s 127.0.0.1" % h for h in map_hosts)
        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--metrics-recording-only",
                "--disable-component-update", "--password-store=basic", "--use-mock-keychain",
                "--host-resolver-rules=%s, EXCLUDE localhost" % rules if rules else "",
                "--remote-debugging-port=0", "--user-data-dir=" + self.dir] + list(extra_args) + ["about:blank"]
        self.log = open(os.path.join(tmp, "chromium.log"), "wb")
        if os.path.exists(os.path.join(self.dir, "DevToolsActivePort")):
            os.unlink(os.path.join(self.dir, "DevToolsActivePort"))   # a previous run's
        self.proc = harness.track(subprocess.Popen([a for a in args if a], stdout=self.log,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        port_file = os.path.join(self.dir, "DevToolsActivePort")
        end = time.monotonic() + 30
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if self.proc.poll() is not None or time.monotonic() > end:
                raise CdpError("chromium did not start (see %s)" % self.log.name)
            time.sleep(0.05)
        with open(port_file) as f:
            self.port = int(f.readline().strip())
        self.pages = []

    def _http(self, path, method="GET"):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return json.loads(body)

    def page(self):
        t = self._http("/json/new?about:blank", "PUT")
        p = Page(t["webSocketDebuggerUrl"])
        self.pages.append(p)
        return p

    def close(self):
        for p in self.pages:
            p.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
