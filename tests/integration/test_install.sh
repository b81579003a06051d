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
for f in usr/sbin/vitaled usr/bin/vitalectl usr/include/vitaled-client.h usr/lib/libvitaled-client.so.0 \
         usr/lib/libvitaled-client.a usr/lib/pkgconfig/vitaled-client.pc usr/share/man/man8/vitaled.8 \
         usr/share/man/man1/vitalectl.1 usr/share/man/man5/vitaled.conf.5 etc/vitaled/vitaled.conf.example \
         lib/systemd/system/vitaled.service; do
    [ -e "$tmp/root/$f" ] || fail "not installed: $f"
done
grep -q '^prefix=/usr$' "$tmp/root/usr/lib/pkgconfig/vitaled-client.pc" || fail "pkg-config prefix is not /usr"

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
