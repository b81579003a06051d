// The till flow of docs/till-integration.md, in a browser page, through the
// bridge: pair, subscribe to events, wait for a card (or a phone: "enter
// your code on your phone"), read the holder, make the sheet, see it queued.
// Parameters in the page's URL: bridge (default http://127.0.0.1:8451),
// reader (default: any).
"use strict";

const q = new URLSearchParams(location.search);
const BRIDGE = q.get("bridge") || "http://127.0.0.1:8451";
const READER = q.get("reader") || null;
const bridge = new VitaledBridge(BRIDGE, sessionStorage.getItem("vitaled-token"));

function step(text, cls) {
  const d = document.createElement("div");
  d.className = "step " + (cls || "");
  d.textContent = text;
  document.getElementById("steps").appendChild(d);
  document.getElementById("log").textContent += text + "\n";
}

// What a till says for each named error (docs/till-integration.md).
function explain(e) {
  switch (e.short) {
    case "NoCard": return "no card (or it cannot back a sheet): " + (e.parameters.reason || "insert one");
    case "NotLoggedIn": return "the practitioner's PIN is needed first (vitalectl pin)";
    case "PinIncorrect": return "wrong PIN, " + e.parameters.tries_left + " tries left";
    case "PinBlocked": return "the PIN is blocked";
    case "QueueFull": return "the queue is full: try again later";
    case "InvalidSheet": return "the sheet is refused: " + e.parameters.field + ": " + e.parameters.reason;
    case "TokenMissing": case "TokenInvalid": return "not paired (or the pairing was revoked): pair again";
    case "ScopeInsufficient": return "this application may not do that: " + e.parameters.reason;
    default: return e.message;
  }
}

async function ensurePaired() {
  if (bridge.token) {
    try { await bridge.call("GetStatus"); return; } catch (e) {
      if (e.short !== "TokenInvalid") throw e;
      step("the saved token was revoked: pairing again");
    }
  }
  await bridge.pair("Example till (JS)", "control", code => {
    document.getElementById("pairing").hidden = false;
    document.getElementById("code").textContent = code;
    document.body.dataset.state = "pairing";
    document.body.dataset.code = code;
    step("pairing: approve code " + code + " at the terminal");
  });
  sessionStorage.setItem("vitaled-token", bridge.token);
  document.getElementById("pairing").hidden = true;
  step("paired", "ok");
}

async function waitForCard() {
  // a card already read in the reader will do; else the next CardRead
  try {
    const c = await bridge.call("GetCard", READER ? {reader: READER} : {});
    if (c.card.can_back_sheet) return c.card;
  } catch (e) {
    if (e.short !== "NoCard") throw e;
  }
  document.body.dataset.state = "waiting-card";
  step("insert a carte Vitale or tap a phone");
  for (;;) {
    const ev = await Promise.race([
      bridge.next("CardRead", e => !READER || e.reader === READER, 120000),
      bridge.next("CodeEntryRequested", e => !READER || e.reader === READER, 120000),
      bridge.next("CardError", e => !READER || e.reader === READER, 120000)]);
    if (ev.type === "CodeEntryRequested") { step("the patient enters the code on the phone"); continue; }
    if (ev.type === "CardError") { step("card refused: " + ev.reason, "err"); continue; }
    const c = await bridge.call("GetCard", {reader: ev.reader});
    if (c.card.can_back_sheet) return c.card;
    step("this card cannot back a sheet: " + c.card.why, "err");
  }
}

async function run() {
  await ensurePaired();
  await bridge.watch(ev => bridge.dispatch(ev), err => err && step("event stream ended: " + err.message, "err"));
  const st = await bridge.call("GetStatus");
  step("vitaled " + st.version + ", mode " + st.mode + ", " + st.readers.length + " reader(s)", "ok");

  const card = await waitForCard();
  const h = card.beneficiaries[0];
  document.getElementById("holder").textContent = h.given_name + " " + h.surname +
    " (" + card.presentation + ", " + card.reader + ")";
  document.body.dataset.holder = h.given_name + " " + h.surname;
  step("holder: " + h.given_name + " " + h.surname, "ok");

  const requestId = "js-" + Date.now() + "-" + Math.floor(Math.random() * 1e9);
  let sheetId = null;
  const queued = bridge.next("SheetQueued", e => sheetId === null || e.id === sheetId, 60000);
  const sheet = await bridge.call("CreateSheet", {
    reader: card.reader, request_id: requestId,
    sheet: {insurance: "maladie", amc: false, tiers_payant: false,
            acts: [{code: "C", coefficient: 1, amount: 2650}],
            totals: {total: 2650, amo: 1855, amc: 0, patient: 795},
            insurer: {regime: "01", caisse: "751", centre: "0012"}}});
  sheetId = sheet.id;
  step("sheet " + sheet.id + " number " + sheet.seq + ", due " + sheet.due_date, "ok");
  const ev = await queued;
  const list = await bridge.call("ListSheets", {request_id: requestId});
  const meta = list.sheets[0];
  document.getElementById("sheet").textContent = sheet.id + ": " + meta.state + " (SheetQueued, number " + ev.number + ")";
  document.body.dataset.sheet = sheet.id;
  document.body.dataset.sheetState = meta.state;
  step("the sheet is " + meta.state, "ok");
  document.body.dataset.state = "done";
}

run().catch(e => {
  step("stopped: " + (e instanceof BridgeError ? explain(e) : e.message), "err");
  document.body.dataset.state = "error";
  document.body.dataset.error = e.error || e.message;
});
