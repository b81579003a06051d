#!/bin/sh
# make install into a DESTDIR, then build a small program against the
# installed header, library and pkg-config file, and run it against a daemon
# started from the installed binary.
set -u
top=$(pwd)
B=${B:-$top/build}
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; exit 1; }

make -s -C "$top" install B="$B" DESTDIR="$tmp/root" PREFIX=/usr >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "make install"; }
# systemd's directories as `pkg-config systemd` names them (with the Makefile's fallbacks)
sdvar() { v=$(pkg-config --variable="$1" systemd 2>/dev/null); echo "${v:-$2}" | sed 's|^/||'; }
unitdir=$(sdvar systemdsystemunitdir /lib/systemd/system)
sysusersdir=$(sdvar sysusersdir /usr/lib/sysusers.d)
tmpfilesdir=$(sdvar tmpfilesdir /usr/lib/tmpfiles.d)
for f in usr/sbin/vitaled usr/bin/vitalectl usr/include/vitaled-client.h usr/lib/libvitaled-client.so.0.1.0 \
         usr/lib/libvitaled-client.a usr/lib/pkgconfig/vitaled-client.pc usr/share/man/man8/vitaled.8 \
         usr/share/man/man1/vitalectl.1 usr/share/man/man5/vitaled.conf.5 etc/vitaled/vitaled.conf \
         usr/share/doc/vitaled/vitaled.conf.example usr/share/doc/vitaled/LICENSE usr/share/doc/vitaled/README.md \
         usr/share/doc/vitaled/profiles/vitale2.profile usr/share/vitaled/varlink/io.vitaled.Terminal.varlink \
         "$unitdir/vitaled.service" "$unitdir/vitaled.socket" "$sysusersdir/vitaled.conf" "$tmpfilesdir/vitaled.conf"; do
    [ -f "$tmp/root/$f" ] || fail "not installed: $f"
done
[ -d "$tmp/root/etc/vitaled/profiles.d" ] || fail "not installed: etc/vitaled/profiles.d"
grep -q '^prefix=/usr$' "$tmp/root/usr/lib/pkgconfig/vitaled-client.pc" || fail "pkg-config prefix is not /usr"
grep -q '^libdir=/usr/lib$' "$tmp/root/usr/lib/pkgconfig/vitaled-client.pc" || fail "pkg-config libdir is not /usr/lib"
grep -qx 'ExecStart=/usr/sbin/vitaled --foreground --config /etc/vitaled/vitaled.conf' "$tmp/root/$unitdir/vitaled.service" \
    || fail "the unit's ExecStart is not the installed sbindir"
# nothing systemd would not read: no sysusers.d or tmpfiles.d under LIBDIR unless systemd says so
for d in usr/lib/sysusers.d usr/lib/tmpfiles.d; do
    case " $sysusersdir $tmpfilesdir " in *" $d "*) ;; *) [ -e "$tmp/root/$d" ] && fail "$d is not systemd's" ;; esac
done
# the shared library: SONAME .so.0, file .so.0.1.0, the two links
[ "$(readlink "$tmp/root/usr/lib/libvitaled-client.so.0")" = libvitaled-client.so.0.1.0 ] || fail "libvitaled-client.so.0 link"
[ "$(readlink "$tmp/root/usr/lib/libvitaled-client.so")" = libvitaled-client.so.0 ] || fail "libvitaled-client.so link"
soname=$(objdump -p "$tmp/root/usr/lib/libvitaled-client.so.0.1.0" | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = libvitaled-client.so.0 ] || fail "SONAME is '$soname'"
# the configuration installed is valid as it stands, and an existing one is never overwritten
"$tmp/root/usr/sbin/vitaled" --check-config --config "$tmp/root/etc/vitaled/vitaled.conf" >/dev/null \
    || fail "the installed vitaled.conf does not pass --check-config"
echo "# mine" >> "$tmp/root/etc/vitaled/vitaled.conf"
make -s -C "$top" install B="$B" DESTDIR="$tmp/root" PREFIX=/usr >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "make install (again)"; }
tail -1 "$tmp/root/etc/vitaled/vitaled.conf" | grep -qx '# mine' || fail "make install overwrote /etc/vitaled/vitaled.conf"
# Debian's multiarch LIBDIR moves the library and the .pc, not systemd's files
make -s -C "$top" install B="$B" DESTDIR="$tmp/ma" PREFIX=/usr LIBDIR=/usr/lib/x86_64-linux-gnu >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log"; fail "make install (multiarch)"; }
[ -f "$tmp/ma/usr/lib/x86_64-linux-gnu/libvitaled-client.so.0.1.0" ] || fail "multiarch: library"
[ -f "$tmp/ma/$sysusersdir/vitaled.conf" ] || fail "multiarch: sysusers.d moved with LIBDIR"
grep -q '^libdir=/usr/lib/x86_64-linux-gnu$' "$tmp/ma/usr/lib/x86_64-linux-gnu/pkgconfig/vitaled-client.pc" || fail "multiarch: .pc libdir"

cat > "$tmp/client.c" <<'C'
#include <stdio.h>
#include <vitaled-client.h>
int main(int argc, char **argv) {
    struct vtc *c; json_t *r = NULL; char *e = NULL;
    if (vtc_connect(argv[1], 5000, &c) != 0) return 3;
    int rc = vtc_call(c, "io.vitaled.Terminal.GetStatus", NULL, 0, &r, &e);
    if (rc != 0) return 4;
    printf("%s %lld\n", json_string_value(json_object_get(r, "state")),
           (long long)json_integer_value(json_object_get(r, "uptime_s")));
    json_decref(r); vtc_close(c); return 0;
}
C
PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_PATH="$tmp/root/usr/lib/pkgconfig" \
    gcc -o "$tmp/client" "$tmp/client.c" $(PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_PATH="$tmp/root/usr/lib/pkgconfig" pkg-config --cflags --libs vitaled-client) \
    -Wl,-rpath,"$tmp/root/usr/lib" || fail "cannot build against the installed library"

"$tmp/root/usr/sbin/vitaled" --socket "$tmp/s.sock" --state-dir "$tmp/state" 2>"$tmp/d.log" &
pid=$!
i=0
while [ ! -S "$tmp/s.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
out=$("$tmp/client" "$tmp/s.sock") || fail "client exit $?"
case "$out" in "running "*) ;; *) fail "unexpected reply: $out" ;; esac
"$tmp/root/usr/bin/vitalectl" --socket "$tmp/s.sock" status >/dev/null || fail "installed vitalectl"
echo "installed client library answered: $out"
# the till example, built from its installed copy as docs/till-integration.md
# says, runs against the installed daemon: no signer, no reader, so NoCard
ex="$tmp/root/usr/share/doc/vitaled/examples"
[ -f "$ex/till.c" ] && [ -f "$ex/till.py" ] || fail "not installed: the till examples"
gcc -o "$tmp/till" "$ex/till.c" $(PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_PATH="$tmp/root/usr/lib/pkgconfig" pkg-config --cflags --libs vitaled-client) \
    -Wl,-rpath,"$tmp/root/usr/lib" || fail "cannot build the till example against the installed library"
"$tmp/till" --socket "$tmp/s.sock" --card-timeout 0.5 >"$tmp/till.out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -qx 'RESULT {"error":"NoCard"}' "$tmp/till.out" || { cat "$tmp/till.out"; fail "the installed till example: exit $rc"; }
echo "installed till example: $(tail -1 "$tmp/till.out")"
