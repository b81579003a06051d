#!/bin/bash
# Self-test of the NFC test world: the phone applet and the verifier on their
# own (every knob gives its docs/digital-card.md §12 reason), then libnfc's real
# pn532_uart driver against tests/world/pn532emu.py: nfc-list, the C probe
# (tests/world/nfc_probe.c) with a good phone and with each fault knob, the
# away / vanish / back controls, and timings. Everything lives in a private temp
# dir. The emulator is stopped by its PID on every exit path.
#
#   tests/world/selftest_nfc.sh [-v]      exit 0: pass, 1: fail, 77: skipped
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
VERBOSE=0
[ "${1:-}" = "-v" ] && VERBOSE=1

for tool in nfc-list gcc pkg-config "$PY"; do
	command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not found"; exit 77; }
done
pkg-config --exists libnfc || { echo "SKIP: libnfc-dev not installed"; exit 77; }
"$PY" -c 'import cbor2, cryptography' 2>/dev/null ||
	{ echo "SKIP: python3-cbor2 / python3-cryptography missing"; exit 77; }

TMP=$(mktemp -d /tmp/vitaled-nfc.XXXXXX)
LINK=$TMP/pn532
SOCK=$TMP/control.sock
WORLD=$TMP/world
OUT=$TMP/out
EMU_PID=""

cleanup() {
	if [ -n "$EMU_PID" ]; then
		kill "$EMU_PID" 2>/dev/null
		wait "$EMU_PID" 2>/dev/null
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "  ok    $*"; }
ko() { FAIL=$((FAIL + 1)); echo "  FAIL  $*"; }
expect() {	# expect NAME EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok "$1: $3"; else ko "$1: expected '$2', got '$3'"; fi
}

ctl() { "$PY" "$HERE/pn532emu.py" --control "$SOCK" --send "$*" >/dev/null; }

# probe ARGS... -> prints the result name; the full output stays in $TMP/probe.out
probe() {
	rm -rf "$OUT" && mkdir -p "$OUT"
	"$TMP/nfc_probe" -o "$OUT" "$@" "pn532_uart:$LINK" >"$TMP/probe.out" 2>&1
	[ "$VERBOSE" = 1 ] && sed 's/^/        /' "$TMP/probe.out" >&2
	sed -n 's/^result=//p' "$TMP/probe.out"
}

# verify -> "ok" or the failure reason, for what the last probe wrote
verify() {
	local r
	r=$("$PY" "$HERE/verify_credential.py" --anchor "$WORLD/ca.pem" --select "$OUT/select.cbor" \
		--credential "$OUT/credential.cbor" --answer "$OUT/answer.cbor" \
		--nonce-file "$OUT/nonce.bin" 2>&1)
	[ "$VERBOSE" = 1 ] && echo "        $r" >&2
	case $r in
	ok*) echo ok ;;
	fail*) r=${r#fail }; echo "${r%%:*}" ;;
	*) echo "error: $r" ;;
	esac
}

echo "== 1. applet and verifier, no transport"
if "$PY" - "$HERE" "$TMP/offline" <<'EOF'
import sys, os
sys.path.insert(0, sys.argv[1])
import phone_applet as pa, verify_credential as vc
d = sys.argv[2]
os.makedirs(d)
good = pa.make_phone(d)
anchors = vc.load_anchors([os.path.join(d, "ca.pem")])
cases = [
    ({}, "ok"), ({"chunk": 17}, "ok"), ({"pending_s": 0.2}, "ok"),
    ({"code": "refuse"}, "code_refused"), ({"code": "block"}, "code_blocked"),
    ({"pending_s": 5}, "code_timeout"), ({"sign_other_nonce": True}, "nonce_mismatch"),
    ({"uv": False}, "uv_false"), ({"huge": 20000}, "answer_too_large"),
    ({"huge": 8192}, "ok"), ({"huge": 8193}, "answer_too_large"),
    ({"bad_issuer_sig": True}, "credential_signature"), ({"version": 2}, "bad_version"),
    ({"no_applet": True}, "no_applet"), ({"issuer": "expired"}, "chain_expired"),
    ({"issuer": "unknown_ca"}, "chain_untrusted"), ({"issuer": "forged_ca"}, "chain_untrusted"),
    ({"issuer": "no_purpose"}, "issuer_purpose"), ({"expired": True}, "credential_expired"),
    ({"not_yet_valid": True}, "credential_not_yet_valid"),
]
bad = 0
for knobs, want in cases:
    phone = pa.make_phone(d, **dict(knobs))
    try:
        vc.terminal_session(phone.apdu, anchors, poll_interval=0.02, code_timeout=0.3)
        got = "ok"
    except vc.VerifyError as e:
        got = e.reason
    bad += got != want
    print("  %-5s %s: %s" % ("ok" if got == want else "FAIL", knobs or "good phone", got))
# status words (docs/digital-card.md §5)
p = pa.make_phone(d)
sel = bytes.fromhex("00A4040009F0564954414C45440100")
sws = [
    ("GET CREDENTIAL before SELECT", "80CA000000", "6985"),
    ("AUTHENTICATE before SELECT", "808800000101" + "00", "6985"),
    ("unknown CLA", "90CA000000", "6E00"),
    ("unknown INS", "80CB000000", "6D00"),
    ("short command", "80CA00", "6700"),
    ("extended length", "80CA00000000", "6700"),
    ("other AID", "00A4040009F0564954414C45440200", "6A82"),
    ("SELECT P2=0C", "00A4040C09F0564954414C45440100", "6A86"),
    ("SELECT", sel.hex(), "9000"),
    ("GET RESPONSE, nothing pending", "00C0000000", "6985"),
    ("GET CREDENTIAL P1=01", "80CA010000", "6A86"),
    ("GET CREDENTIAL with data", "80CA00000100", "6700"),
    ("AUTHENTICATE not CBOR map", "8088000001FF00", "6A80"),
    ("AUTHENTICATE no data", "8088000000", "6700"),
    ("GET CREDENTIAL Le=10", "80CA000010", "6100"),
    ("GET RESPONSE Le=05", "00C0000005", "6100"),
    ("SELECT drops the chain, GET RESPONSE", "00C0000000", "6985"),
]
for name, apdu, want in sws:
    if name.startswith("SELECT drops"):
        p.apdu(sel)
    got = p.apdu(bytes.fromhex(apdu))[-2:].hex().upper()
    ok = got == want or (want == "6100" and got[:2] == "61")
    bad += not ok
    print("  %-5s status word, %s: %s" % ("ok" if ok else "FAIL", name, got))
sys.exit(1 if bad else 0)
EOF
then ok "offline matrix"; else ko "offline matrix"; fi

echo "== 2. build the C probe"
if gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wpointer-arith -Wcast-qual -Wwrite-strings -Wundef -Wconversion \
	-Werror -o "$TMP/nfc_probe" "$HERE/nfc_probe.c" $(pkg-config --cflags --libs libnfc) -pthread; then
	ok "nfc_probe built"
else
	ko "nfc_probe does not build"
	exit 1
fi

echo "== 3. start the PN532 emulator"
"$PY" "$HERE/pn532emu.py" --link "$LINK" --control "$SOCK" --world "$WORLD" \
	--log "$TMP/frames.log" --tap >"$TMP/emu.out" 2>&1 &
EMU_PID=$!
for _ in $(seq 100); do
	[ -S "$SOCK" ] && break
	kill -0 "$EMU_PID" 2>/dev/null || break
	sleep 0.05
done
if [ -S "$SOCK" ]; then ok "emulator ready (pid $EMU_PID)"; else ko "emulator did not start"; cat "$TMP/emu.out"; exit 1; fi

echo "== 4. nfc-list"
LIBNFC_DEFAULT_DEVICE="pn532_uart:$LINK" LIBNFC_AUTO_SCAN=false nfc-list >"$TMP/list.out" 2>&1
if grep -q "1 ISO14443A passive target(s) found" "$TMP/list.out" &&
	grep -q "SAK (SEL_RES): 20" "$TMP/list.out"; then
	ok "nfc-list lists one ISO 14443-4A target"
else
	ko "nfc-list"
	cat "$TMP/list.out"
fi

echo "== 5. a good phone through libnfc"
expect "probe, good phone" ok "$(probe)"
expect "verify, good phone" ok "$(verify)"
cp "$TMP/probe.out" "$TMP/good.out"
UID1=$(sed -n 's/^ok .*uid=\([0-9a-f]*\).*/\1/p' <<<"$("$PY" "$HERE/pn532emu.py" --control "$SOCK" --send status)")
ctl tap
UID2=$(sed -n 's/^ok .*uid=\([0-9a-f]*\).*/\1/p' <<<"$("$PY" "$HERE/pn532emu.py" --control "$SOCK" --send status)")
if [ -n "$UID1" ] && [ "$UID1" != "$UID2" ]; then ok "a new tap has a new random UID"; else ko "UID $UID1 / $UID2"; fi

echo "== 6. fault knobs through libnfc"
ctl tap code=refuse;		expect "refuse" code_refused "$(probe)"
ctl tap code=block;		expect "block" code_blocked "$(probe)"
ctl tap pending_s=1;		expect "pending 1 s" ok "$(probe -i 250)"
expect "pending 1 s, verify" ok "$(verify)"
POLLS=$(sed -n 's/.*(\([0-9]*\) polls.*/\1/p' "$TMP/probe.out")
if [ "${POLLS:-0}" -ge 4 ]; then ok "pending 1 s polled $POLLS times"; else ko "pending polls: ${POLLS:-none}"; fi
ctl tap pending_s=5;		expect "pending 5 s, code timeout 1 s" code_timeout "$(probe -c 1000)"
ctl tap huge=20000;		expect "huge credential" answer_too_large "$(probe)"
ctl tap sign_other_nonce=1;	expect "replayed answer, probe" ok "$(probe)"
expect "replayed answer, verify" nonce_mismatch "$(verify)"
ctl tap uv=0;			probe >/dev/null; expect "uv false" uv_false "$(verify)"
ctl tap bad_issuer_sig=1;	probe >/dev/null; expect "bad issuer signature" credential_signature "$(verify)"
ctl tap issuer=expired;		probe >/dev/null; expect "expired issuer" chain_expired "$(verify)"
ctl tap issuer=unknown_ca;	probe >/dev/null; expect "unknown CA" chain_untrusted "$(verify)"
ctl tap issuer=no_purpose;	probe >/dev/null; expect "issuer without purpose" issuer_purpose "$(verify)"
ctl tap expired=1;		probe >/dev/null; expect "expired credential" credential_expired "$(verify)"
ctl tap vanish_after=3;		expect "phone vanishes after 3 APDUs" card_lost "$(probe)"
ctl tap no_applet=1;		expect "phone without the app" no_applet "$(probe)"

echo "== 7. away, vanish, back"
ctl away;			expect "phone away" no_target "$(probe -p 600)"
ctl tap;			expect "tap again" ok "$(probe)"
ctl vanish
T0=$(date +%s%N)
R=$(probe)
T1=$(date +%s%N)
expect "reader vanished, nfc_open fails" reader_error "$R"
echo "        (nfc_open gave up after $(( (T1 - T0) / 1000000 )) ms)"
ctl back;			expect "reader back" ok "$(probe)"
ctl away
(sleep 0.4; ctl vanish) &
VPID=$!
R=$(probe -p 1000)
wait "$VPID"
if [ "$R" = reader_error ] && grep -q "aborted by the watchdog" "$TMP/probe.out"; then
	ok "reader vanished during the poll: $(sed -n 's/^poll: \(aborted.*\)/\1/p' "$TMP/probe.out")"
else
	ko "vanish during the poll: $R"
fi
ctl back reset
ctl tap pending_s=10
(sleep 0.5; ctl vanish) &
VPID=$!
expect "reader vanished during code entry" card_lost "$(probe)"
wait "$VPID"
ctl back
ctl tap;			expect "after back, a good phone" ok "$(probe)"

echo "== 8. the emulator's log"
if grep -q "not emulated" "$TMP/frames.log"; then
	ko "libnfc sent commands the emulator does not know:"
	grep "not emulated" "$TMP/frames.log" | sort | uniq -c
else
	ok "every command libnfc sent was emulated"
fi
if grep -qi -e MARTIN -e Camille -e 284122A "$TMP/frames.log"; then
	ko "identity data in the frame log"
else
	ok "no identity data in the frame log"
fi

echo "== 9. timings (emulated PN532 on a pty; libnfc 1.8)"
ctl tap
probe -n 200 -s >/dev/null
grep -E "^timing (nfc_open|nfc_initiator_init|poll|read)" "$TMP/probe.out" | sed 's/^/  /'
grep -E "^(timing|apdu)" "$TMP/good.out" | grep -v -e "timing read" | sed 's/^/  good phone: /'

echo "== $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
