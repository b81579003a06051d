#!/usr/bin/python3
"""An independent verifier of vitaled's signed care sheets.

Written from docs/care-sheet.md ("The signed form", "Fields", "Validation",
"Due date"), not from the C code: Python's cbor2 decodes and re-encodes,
cryptography checks the signature, and the due date comes from
tests/data/holidays_table.py (Gauss's Easter, Python's datetime), which
shares nothing with protocol/holidays.c. When this file and the C code
disagree, the documentation decides.

    verify_sheet.py FILE [--cert CERT.pem | --pubkey KEY.pem | --spki KEY.der]
                         [--json]

Exit 0 when every check passes, 1 when one fails (each problem on a line),
2 on usage errors. As a module: verify(cose_bytes, public_key=None) returns
(problems, info) where problems is a list of strings (empty: valid) and info
the decoded sheet plus what was found (alg, due date recomputed ...).
"""
import datetime as dt
import json
import os
import re
import sys

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "data"))
import holidays_table  # noqa: E402  (independent holidays and due dates)
import holidays_dept_table  # noqa: E402  (the overseas departments' days)

PROT_ES256 = bytes.fromhex("a10126")      # {1: -7}
PROT_PS256 = bytes.fromhex("a1013824")    # {1: -37}
INSURANCE = {10: "maladie", 30: "maternite", 41: "at_mp", 90: "smg"}
MODES = ("physical", "digital-nfc", "digital-qr", "degraded")
MAX_AMOUNT = 100_000_000
MAX_AGE_DAYS = 730

# key: (type, required); the keys of both models, then each model's own
COMMON = {
    "v": (int, True), "id": (str, True), "nir": (str, True),
    "seq": (int, True), "mode": (str, True), "totals": (dict, True),
    "at_date": (str, False), "created": (int, True), "insurer": (dict, True),
    "due_date": (str, True), "evidence": (dict, False), "care_date": (str, True),
    "insurance": (int, True), "birth_date": (str, False), "birth_rank": (int, False),
    "prescriber": (dict, False), "terminal_id": (str, True), "structure_id": (str, False),
    "tiers_payant": (bool, True), "practitioner_id": (str, True),
}
TOP = dict(COMMON, acts=(list, True), amc=(bool, True))            # model 1
TOP2 = dict(COMMON, lines=(list, True), amc=(dict, False), at_number=(str, False),
            maternity_date=(str, False), pathway=(str, False), referrer_id=(str, False),
            exemption=(str, False))                                # model 2
ACT = {"code": (str, True), "date": (str, True), "amount": (int, True), "coef_milli": (int, True)}
LINE = {  # model 2's lines, by kind
    "act": dict(ACT, kind=(str, True)),
    "medicine": {"kind": (str, True), "date": (str, True), "cip13": (str, True),
                 "service": (str, True), "quantity": (int, True), "unit_price": (int, True),
                 "amount": (int, True)},
    "device": {"kind": (str, True), "date": (str, True), "lpp": (str, True),
               "quantity": (int, True), "unit_price": (int, True), "amount": (int, True)},
}
AMC = {"id": (str, False), "tiers_payant": (bool, True)}
SERVICE_CODES = ("PH1", "PH2", "PH4", "PH7", "MX1", "MX4", "MX7")
PATHWAYS = ("medecin_traitant", "new_medecin_traitant", "substitute", "referred",
            "direct_access", "emergency", "away_from_home", "outside")
EXEMPTIONS = ("ald", "invalidity", "prevention", "other")
TOTALS = {"amc": (int, True), "amo": (int, True), "total": (int, True), "patient": (int, True)}
INSURER = {"caisse": (str, True), "centre": (str, True), "regime": (str, True)}
EVIDENCE = {"read_at": (int, False), "credential": (bytes, False), "card_serial": (str, False),
            "device_answer": (bytes, False)}
PRESCRIBER = {"id": (str, False), "date": (str, False)}

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NGAP = re.compile(r"^[A-Z]{1,5}$")
CCAM = re.compile(r"^[A-Z]{4}[0-9]{3}$")


def nir_ok(nir):
    """13 characters + 2-digit key; key = 97 - (number mod 97); 2A -> 19, 2B -> 18."""
    if len(nir) != 15 or not nir[13:].isdigit():
        return False
    body = nir[:13].upper()
    if body[5:7] in ("2A", "2B"):
        body = body[:5] + ("19" if body[5:7] == "2A" else "18") + body[7:]
    if not body.isdigit():
        return False
    return 97 - int(body) % 97 == int(nir[13:])


def cip13_ok(code):
    """13 digits under 3400; EAN-13 check digit: from the right, the data
    digits weigh 3, 1, 3, ... and the check digit tops the sum up to a
    multiple of 10 (GS1 General Specifications)."""
    if not (len(code) == 13 and code.isdigit() and code.startswith("3400")):
        return False
    data = code[:12]
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(data)))
    return (10 - total % 10) % 10 == int(code[12])


def date(s):
    if not isinstance(s, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        raise ValueError(s)
    return dt.date.fromisoformat(s)


def check_map(obj, spec, where, problems):
    if not isinstance(obj, dict):
        problems.append("%s: not a map" % where)
        return False
    for k in obj:
        if not isinstance(k, str):
            problems.append("%s: a key that is not text: %r" % (where, k))
        elif k not in spec:
            problems.append("%s.%s: unknown key" % (where, k))
    for k, (typ, req) in spec.items():
        if k not in obj:
            if req:
                problems.append("%s.%s: missing" % (where, k))
            continue
        v = obj[k]
        ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
        if not ok:
            problems.append("%s.%s: %s, not %s" % (where, k, type(v).__name__, typ.__name__))
    return True


def load_key(path):
    data = open(path, "rb").read()
    if b"BEGIN CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    if b"BEGIN" in data:
        return serialization.load_pem_public_key(data)
    try:
        return x509.load_der_x509_certificate(data).public_key()
    except ValueError:
        return serialization.load_der_public_key(data)


def check_signature(alg, key, tbs, sig, problems):
    try:
        if alg == "ES256":
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                problems.append("signature: ES256 needs a P-256 key")
                return False
            if len(sig) != 64:
                problems.append("signature: ES256 is r||s, 64 bytes, not %d" % len(sig))
                return False
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, tbs, ec.ECDSA(hashes.SHA256()))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                problems.append("signature: PS256 needs an RSA key")
                return False
            key.verify(sig, tbs, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                       hashes.SHA256())
        return True
    except InvalidSignature:
        problems.append("signature: does not verify with the given key")
        return False


def check_context(s, care, problems):
    """Model 2's medical context and AMC (docs/care-sheet.md)."""
    ins = s.get("insurance")
    if "at_number" in s and (ins != 41 or not re.fullmatch(r"[0-9A-Z]{1,15}", s["at_number"])):
        problems.append("at_number: only for at_mp, 1 to 15 capitals or digits")
    if ins == 30:
        if "maternity_date" not in s:
            problems.append("maternity_date: missing for maternite")
        else:
            m = date(s["maternity_date"])
            if m > care or m < care - dt.timedelta(days=MAX_AGE_DAYS):
                problems.append("maternity_date: not within the two years up to the care date")
    elif "maternity_date" in s:
        problems.append("maternity_date: only for maternite")
    if "pathway" in s and s["pathway"] not in PATHWAYS:
        problems.append("pathway: unknown %r" % s["pathway"])
    if s.get("pathway") == "referred":
        r = s.get("referrer_id", "")
        if not (r.isdigit() and len(r) in (9, 11)):
            problems.append("referrer_id: referred needs a 9 or 11 digit id")
    elif "referrer_id" in s:
        problems.append("referrer_id: only for the referred pathway")
    if "exemption" in s:
        if s["exemption"] not in EXEMPTIONS:
            problems.append("exemption: unknown %r" % s["exemption"])
        elif ins != 10:
            problems.append("exemption: only under maladie")
    amc = s.get("amc")
    if amc is not None:
        if check_map(amc, AMC, "amc", problems):
            aid = amc.get("id")
            if aid is not None and not (aid.isdigit() and 8 <= len(aid) <= 10):
                problems.append("amc.id: 8 to 10 digits")
            if amc.get("tiers_payant") and aid is None:
                problems.append("amc.id: AMC tiers payant needs the AMC's number")


def check_rules(s, problems, info):
    """The Validation section of docs/care-sheet.md, judged as of 'created'."""
    version = s.get("v")
    if version not in (1, 2):
        problems.append("v: %r, not 1 or 2" % version)
    if not UUID4.match(s.get("id", "")):
        problems.append("id: not a lower-case UUID v4")
    if not (1 <= len(s.get("terminal_id", "")) <= 64):
        problems.append("terminal_id: empty or too long")
    if not nir_ok(s.get("nir", "")):
        problems.append("nir: bad NIR (key)")
    if not isinstance(s.get("seq"), int) or s["seq"] < 1:
        problems.append("seq: must be 1 or more")
    ins = s.get("insurer", {})
    for k, n in (("regime", 2), ("caisse", 3), ("centre", 4)):
        v = ins.get(k, "")
        if not (isinstance(v, str) and len(v) == n and v.isdigit()):
            problems.append("insurer.%s: must be %d digits" % (k, n))
    pid = s.get("practitioner_id", "")
    if not (pid.isdigit() and len(pid) in (9, 11)):
        problems.append("practitioner_id: must be 9 or 11 digits")
    if "structure_id" in s and not (s["structure_id"].isdigit() and len(s["structure_id"]) in (9, 14)):
        problems.append("structure_id: must be 9 or 14 digits")
    if s.get("insurance") not in INSURANCE:
        problems.append("insurance: unknown code %r" % s.get("insurance"))
    if s.get("mode") not in MODES:
        problems.append("mode: unknown %r" % s.get("mode"))
    created = s.get("created", 0)
    # a sheet is judged as of its signing; its care date is a local date,
    # which may be one day ahead of the UTC day
    today = dt.datetime.fromtimestamp(created, dt.timezone.utc).date() + dt.timedelta(days=1)
    try:
        care = date(s.get("care_date"))
    except (ValueError, TypeError):
        problems.append("care_date: not a date")
        return
    if care > today:
        problems.append("care_date: after the sheet was made")
    if care < today - dt.timedelta(days=MAX_AGE_DAYS + 1):
        problems.append("care_date: more than %d days old" % MAX_AGE_DAYS)
    if "birth_date" in s and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s["birth_date"]):
        problems.append("birth_date: not YYYY-MM-DD")
    if "birth_rank" in s and not 1 <= s["birth_rank"] <= 9:
        problems.append("birth_rank: 1 to 9")
    pre = s.get("prescriber")
    if pre is not None:
        if not pre:
            problems.append("prescriber: empty map")
        if "id" in pre and not (pre["id"].isdigit() and len(pre["id"]) in (9, 11)):
            problems.append("prescriber.id: 9 or 11 digits")
        if "date" in pre:
            if "id" not in pre:
                problems.append("prescriber.date: without a prescriber")
            if date(pre["date"]) > care:
                problems.append("prescriber.date: after the care date")
    if s.get("insurance") == 41:
        if "at_date" not in s:
            problems.append("at_date: missing for at_mp")
        elif date(s["at_date"]) > care:
            problems.append("at_date: after the care date")
    elif "at_date" in s:
        problems.append("at_date: only for at_mp")
    acts = s.get("acts", []) if version == 1 else s.get("lines", [])
    where = "acts" if version == 1 else "lines"
    if not 1 <= len(acts) <= 32:
        problems.append("%s: %d lines, 1 to 32 expected" % (where, len(acts)))
    total = 0
    for i, a in enumerate(acts):
        kind = "act" if version == 1 else (a.get("kind") if isinstance(a, dict) else None)
        if kind not in LINE:
            problems.append("%s[%d].kind: %r" % (where, i, kind))
            continue
        if not check_map(a, ACT if version == 1 else LINE[kind], "%s[%d]" % (where, i), problems):
            continue
        try:
            d = date(a.get("date"))
            if d > care or d < care - dt.timedelta(days=MAX_AGE_DAYS):
                problems.append("%s[%d].date: outside the two years up to the care date" % (where, i))
        except (ValueError, TypeError):
            problems.append("%s[%d].date: not a date" % (where, i))
        amt = a.get("amount", -1)
        if kind == "act":
            code = a.get("code", "")
            if not (NGAP.match(code) or CCAM.match(code) or (version == 2 and code in SERVICE_CODES)):
                problems.append("%s[%d].code: not NGAP, CCAM or a service code" % (where, i))
            if not 0 < a.get("coef_milli", 0) <= 1_000_000:
                problems.append("%s[%d].coef_milli: out of range" % (where, i))
        else:
            if kind == "medicine":
                if not cip13_ok(a.get("cip13", "")):
                    problems.append("%s[%d].cip13: not a CIP13" % (where, i))
                if a.get("service") not in SERVICE_CODES:
                    problems.append("%s[%d].service: not a pharmacy service code" % (where, i))
            elif not re.fullmatch(r"[0-9]{7}", a.get("lpp", "")):
                problems.append("%s[%d].lpp: not 7 digits" % (where, i))
            q, u = a.get("quantity", 0), a.get("unit_price", -1)
            if not 1 <= q <= 9999 or not 0 <= u <= MAX_AMOUNT:
                problems.append("%s[%d]: quantity or unit price out of range" % (where, i))
            elif amt != q * u:
                problems.append("%s[%d].amount: %r is not %d x %d" % (where, i, amt, q, u))
        if not 0 <= amt <= MAX_AMOUNT:
            problems.append("%s[%d].amount: out of range" % (where, i))
        total += amt
    if version == 2:
        check_context(s, care, problems)
    t = s.get("totals", {})
    if t.get("total") != total:
        problems.append("totals.total: %r, the acts add up to %d" % (t.get("total"), total))
    if t.get("amo", 0) + t.get("amc", 0) + t.get("patient", 0) != t.get("total"):
        problems.append("totals: amo + amc + patient is not the total")
    if any(t.get(k, 0) < 0 for k in TOTALS):
        problems.append("totals: a negative part")
    if not s.get("amc") and t.get("amc", 0) != 0:  # model 2: the map is absent
        problems.append("totals.amc: an AMC part without the AMC flag")
    ev = s.get("evidence")
    mode = s.get("mode")
    if mode == "degraded":
        if ev is not None:
            problems.append("evidence: a degraded sheet has none")
    elif ev is None or not ev:
        problems.append("evidence: missing (only a degraded sheet has none)")
    elif mode == "physical":
        if set(ev) != {"card_serial", "read_at"}:
            problems.append("evidence: a physical card gives card_serial and read_at only")
        elif not ev["card_serial"] or ev["read_at"] > created + 300:
            problems.append("evidence: empty serial or read after the sheet was made")
    else:
        if "device_answer" not in ev or "card_serial" in ev or "read_at" in ev:
            problems.append("evidence: a phone gives device_answer (and credential)")
    if created <= 0:
        problems.append("created: missing")
    # due date: CSS R.161-47, recomputed with an independent calendar
    try:
        due = date(s.get("due_date"))
    except (ValueError, TypeError):
        problems.append("due_date: not a date")
        return
    n = 8 if s.get("tiers_payant") else 3
    want = holidays_table.due(care, n, False)
    want_am = holidays_table.due(care, n, True)
    info["due_recomputed"] = want.isoformat()
    info["due_alsace_moselle"] = want_am.isoformat()
    # the sheet does not say where it was made: any department's calendar
    overseas = {dep: holidays_dept_table.due(care, n, dep) for dep in holidays_dept_table.SLAVERY_DAY}
    if due == want:
        info["due_calendar"] = "metropolitan"
    elif due == want_am:
        info["due_calendar"] = "alsace-moselle"
    elif due in overseas.values():
        info["due_calendar"] = [d for d, v in sorted(overseas.items()) if v == due][0]
    else:
        problems.append("due_date: %s, but %d working days after %s is %s (Alsace-Moselle: %s; "
                        "overseas: %s)" % (due, n, care, want, want_am,
                                           ", ".join(sorted({v.isoformat() for v in overseas.values()}))))


def verify(data, public_key=None):
    problems, info = [], {}
    try:
        msg = cbor2.loads(data)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a verdict
        return ["not CBOR: %s" % e], info
    if not isinstance(msg, cbor2.CBORTag) or msg.tag != 18:
        return ["not a tagged COSE_Sign1 (tag 18)"], info
    parts = msg.value
    if not (isinstance(parts, list) and len(parts) == 4):
        return ["COSE_Sign1 is not an array of 4"], info
    prot, unprot, payload, sig = parts
    if cbor2.dumps(msg, canonical=True) != data:
        problems.append("COSE_Sign1: not deterministically encoded")
    if prot == PROT_ES256:
        alg = "ES256"
    elif prot == PROT_PS256:
        alg = "PS256"
    else:
        return ["protected header %r is not {1: -7} or {1: -37}" % prot], info
    info["alg"] = alg
    if unprot != {}:
        problems.append("unprotected header is not empty")
    if not isinstance(payload, bytes) or not isinstance(sig, bytes):
        return problems + ["payload or signature is not a byte string"], info
    tbs = cbor2.dumps(["Signature1", prot, b"", payload])
    if public_key is not None:
        info["signature_ok"] = check_signature(alg, public_key, tbs, sig, problems)
    try:
        s = cbor2.loads(payload)
    except Exception as e:  # noqa: BLE001
        return problems + ["payload: not CBOR: %s" % e], info
    if cbor2.dumps(s, canonical=True) != payload:
        problems.append("payload: not deterministic CBOR (RFC 8949 §4.2.1)")
    info["sheet"] = s
    if not check_map(s, TOP2 if isinstance(s, dict) and s.get("v") == 2 else TOP, "sheet",
                     problems):
        return problems, info
    for k, spec in (("totals", TOTALS), ("insurer", INSURER), ("evidence", EVIDENCE),
                    ("prescriber", PRESCRIBER)):
        if k in s:
            check_map(s[k], spec, k, problems)
    try:
        check_rules(s, problems, info)
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        problems.append("sheet: %s" % e)
    return problems, info


def main(argv):
    args = list(argv[1:])
    key = None
    as_json = False
    if "--json" in args:
        args.remove("--json")
        as_json = True
    for opt in ("--cert", "--pubkey", "--spki"):
        if opt in args:
            i = args.index(opt)
            if i + 1 >= len(args):
                print("usage: verify_sheet.py FILE [--cert PEM] [--json]", file=sys.stderr)
                return 2
            key = load_key(args[i + 1])
            del args[i:i + 2]
    if len(args) != 1:
        print("usage: verify_sheet.py FILE [--cert PEM | --pubkey PEM | --spki DER] [--json]",
              file=sys.stderr)
        return 2
    with open(args[0], "rb") as f:
        data = f.read()
    problems, info = verify(data, key)
    if as_json:
        s = info.get("sheet")
        out = {"ok": not problems, "problems": problems, "alg": info.get("alg"),
               "signature_ok": info.get("signature_ok"),
               "id": s.get("id") if isinstance(s, dict) else None,
               "seq": s.get("seq") if isinstance(s, dict) else None}
        print(json.dumps(out))
    else:
        for p in problems:
            print(p)
        if not problems:
            print("ok: %s, %s" % (info.get("alg"), "signature verified" if key else "signature not checked"))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
