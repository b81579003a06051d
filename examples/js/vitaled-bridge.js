// A small client of vitaled-web, the local web bridge (docs/web-bridge.md),
// for a browser page: pairing, calls as JSON, events as Server-Sent Events.
// No dependency; modern browsers only (fetch streams, async/await).
//
//   const b = new VitaledBridge("http://127.0.0.1:8451");
//   await b.pair("My practice software", "control", code => show(code));  // a person approves
//   b.watch(ev => console.log(ev.type, ev));                              // the event stream
//   const st = await b.call("GetStatus");                                 // {parameters} or throws
"use strict";

class BridgeError extends Error {
  // name: the varlink error ("io.vitaled.Terminal.NoCard") or the bridge's
  // refusal ("io.vitaled.Web.TokenInvalid"); parameters: its fields.
  constructor(name, parameters, status) {
    super(name + (parameters && parameters.reason ? ": " + parameters.reason : ""));
    this.error = name;
    this.short = name.replace(/^io\.vitaled\.(Terminal|Web)\./, "");
    this.parameters = parameters || {};
    this.status = status;
  }
}

class VitaledBridge {
  constructor(base, token) {
    this.base = base.replace(/\/$/, "");
    this.token = token || null;
    this.abort = null;
  }

  async _json(path, options) {
    const r = await fetch(this.base + path, options);
    let body;
    try { body = await r.json(); } catch (e) { body = {}; }
    if (!r.ok)
      throw new BridgeError(body.error || ("HTTP " + r.status), body, r.status);
    return body;
  }

  // Ask for a token. show(code) is called with the 6-digit code: the person
  // compares it and approves at the terminal (`vitalectl web pair CODE`).
  // Resolves with the token once approved; rejects when refused or expired.
  async pair(app, scope, show, pollMs = 500) {
    const p = await this._json("/v1/pair", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({app, scope})});
    show(p.code, p.expires_in_s);
    for (;;) {
      await new Promise(res => setTimeout(res, pollMs));
      const s = await this._json("/v1/pair/" + p.pairing, {});
      if (s.state === "approved") {
        this.token = s.token;
        return s;
      }
    }
  }

  // Call io.vitaled.Terminal.<method>: its parameters, or a BridgeError
  // (a daemon error keeps its varlink name and parameters).
  async call(method, params) {
    const body = await this._json("/v1/call/" + method, {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + this.token},
      body: JSON.stringify(params || {})});
    if (body.error)
      throw new BridgeError(body.error, body.parameters, 200);
    return body.parameters;
  }

  // Follow the daemon's events (text/event-stream read with fetch, since
  // EventSource cannot send the token). onEvent(event) for each; onEnd(err)
  // when the stream ends. Resolves once the stream is open (every later
  // event will be seen).
  watch(onEvent, onEnd) {
    this.abort = new AbortController();
    let opened;
    const ready = new Promise(res => { opened = res; });
    const run = async () => {
      const r = await fetch(this.base + "/v1/events", {
        headers: {"Authorization": "Bearer " + this.token}, signal: this.abort.signal});
      if (!r.ok) {
        let body = {};
        try { body = await r.json(); } catch (e) { /* not JSON */ }
        throw new BridgeError(body.error || ("HTTP " + r.status), body, r.status);
      }
      opened();
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done)
          return;
        buf += dec.decode(value, {stream: true});
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split("\n").filter(l => l.startsWith("data: ")).map(l => l.slice(6)).join("\n");
          if (data)
            onEvent(JSON.parse(data));
        }
      }
    };
    run().then(() => onEnd && onEnd(null), e => { opened(); if (onEnd) onEnd(e); });
    return ready;
  }

  // The next event of type (and matching test(ev)), within timeoutMs.
  // Needs watch() running: the page's handler calls bridge.dispatch(ev).
  next(type, test, timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
      const w = {type, test, resolve};
      (this.waiters = this.waiters || []).push(w);
      setTimeout(() => {
        this.waiters = this.waiters.filter(x => x !== w);
        reject(new Error("no " + type + " event within " + timeoutMs / 1000 + " s"));
      }, timeoutMs);
    });
  }

  dispatch(ev) {
    for (const w of (this.waiters || []).slice()) {
      if (w.type === ev.type && (!w.test || w.test(ev))) {
        this.waiters = this.waiters.filter(x => x !== w);
        w.resolve(ev);
      }
    }
  }

  stop() {
    if (this.abort)
      this.abort.abort();
  }
}
