#!/bin/sh
# The systemd units as installed: `systemd-analyze verify` on vitaled.service
# and vitaled.socket (with the installed binary and man pages, so that
# ExecStart= and Documentation= are checked too), the socket's path, group and
# mode, and the service's exposure by `systemd-analyze security` at or under
# 1.5. The check is shown able to fail: a unit with a planted fault must be
# reported. Skips (77) only where systemd-analyze is missing.
set -u
top=$(pwd)
B=${B:-$top/build}
command -v systemd-analyze >/dev/null 2>&1 || { echo "SKIP: systemd-analyze is not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "FAIL: $*"; exit 1; }

# installed under $tmp with no DESTDIR, so the paths in the units are real
make -s -C "$top" install B="$B" PREFIX="$tmp/usr" SYSCONFDIR="$tmp/etc" UNITDIR="$tmp/units" \
    SYSUSERSDIR="$tmp/sysusers" TMPFILESDIR="$tmp/tmpfiles" >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log"; fail "make install"; }
svc=$tmp/units/vitaled.service sock=$tmp/units/vitaled.socket
grep -qx "ExecStart=$tmp/usr/sbin/vitaled --foreground --config $tmp/etc/vitaled/vitaled.conf" "$svc" \
    || fail "ExecStart does not name the installed binary: $(grep ExecStart "$svc")"

verify() { MANPATH="$tmp/usr/share/man" systemd-analyze verify "$@" >"$tmp/verify.out" 2>&1; }
verify "$svc" "$sock" || { cat "$tmp/verify.out"; fail "systemd-analyze verify (exit)"; }
[ -s "$tmp/verify.out" ] && { cat "$tmp/verify.out"; fail "systemd-analyze verify printed warnings"; }
echo "systemd-analyze verify: vitaled.service and vitaled.socket clean"

# the checker catches a planted fault (an unknown key, a missing binary)
mkdir -p "$tmp/bad"
sed 's/^RestrictRealtime=yes/RestrictRealtme=yes/' "$svc" > "$tmp/bad/vitaled.service"
cp "$sock" "$tmp/bad/"
verify "$tmp/bad/vitaled.service" "$tmp/bad/vitaled.socket"
grep -q RestrictRealtme "$tmp/verify.out" || { cat "$tmp/verify.out"; fail "a misspelt key was not reported"; }
sed "s|^ExecStart=$tmp/usr/sbin/vitaled|ExecStart=$tmp/usr/sbin/vitaled-nowhere|" "$svc" > "$tmp/bad/vitaled.service"
verify "$tmp/bad/vitaled.service" "$tmp/bad/vitaled.socket" && fail "a missing ExecStart binary passed verify"

# the socket: the path, group and mode vitaled itself uses by default
for l in ListenStream=/run/vitaled/vitaled.sock SocketGroup=vitaled SocketMode=0660; do
    grep -qx "$l" "$sock" || fail "vitaled.socket lacks $l"
done
def=$("$tmp/usr/sbin/vitaled" --check-config --config /dev/null) || fail "vitaled --check-config"
echo "$def" | grep -q '^socket = /run/vitaled/vitaled.sock' || fail "[daemon] socket's default differs from the socket unit"
echo "$def" | grep -q '^socket_group = vitaled' || fail "[api] socket_group's default differs"
echo "$def" | grep -q '^socket_mode = 0660' || fail "[api] socket_mode's default differs"

# exposure: at most 1.5, with the serial and USB device classes the readers need
systemd-analyze security --offline=yes "$svc" >"$tmp/sec.out" 2>&1
score=$(sed -n 's/.*Overall exposure level for vitaled.service: \([0-9.]*\).*/\1/p' "$tmp/sec.out")
[ -n "$score" ] || { cat "$tmp/sec.out"; fail "no exposure figure"; }
awk -v s="$score" 'BEGIN { exit !(s <= 1.5) }' || { grep '✗' "$tmp/sec.out"; fail "exposure $score > 1.5"; }
for c in char-ttyUSB char-ttyACM char-usb_device; do
    grep -q "^DeviceAllow=$c rw" "$svc" || fail "DeviceAllow lacks $c (NFC readers)"
done
grep -q '^PrivateDevices=yes' "$svc" && fail "PrivateDevices=yes would hide the NFC readers"
grep -q '^LimitNOFILE=' "$svc" || fail "no LimitNOFILE"
echo "systemd-analyze security: exposure $score (limit 1.5)"

# socket activation as vitaled.socket does it: the listening socket passed by
# systemd's own tool (LISTEN_FDS), used instead of binding [daemon] socket
if command -v systemd-socket-activate >/dev/null 2>&1; then
    systemd-socket-activate -l "$tmp/act.sock" "$B/vitaled" --foreground --socket "$tmp/own.sock" \
        --state-dir "$tmp/state" >"$tmp/act.log" 2>&1 &
    apid=$!
    trap 'kill $apid 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
    i=0
    while [ ! -S "$tmp/act.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    out=$("$B/vitalectl" --socket "$tmp/act.sock" status 2>&1) || { cat "$tmp/act.log"; fail "vitalectl on the activated socket: $out"; }
    grep -q 'api: listening on socket from systemd' "$tmp/act.log" || { cat "$tmp/act.log"; fail "the passed socket was not used"; }
    [ -e "$tmp/own.sock" ] && fail "vitaled bound its own socket although systemd passed one"
    kill -TERM $apid; wait $apid || { cat "$tmp/act.log"; fail "vitaled (socket-activated) did not stop cleanly"; }
    [ -S "$tmp/act.sock" ] || fail "vitaled removed the socket systemd owns"
    echo "socket activation: the passed socket answers; vitaled bound none of its own"
else
    echo "socket activation: not checked (no systemd-socket-activate)"
fi
