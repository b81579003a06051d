#!/bin/sh
# make deb-test: the Debian package in a clean Debian 12 (bookworm) that this
# script bootstraps itself with mmdebstrap (variant apt: the essential
# packages and apt, nothing else) into a directory, used as a chroot (no
# systemd runs there: the package's scripts then enable the units without
# starting them). In it:
#   apt installs vitaled and libvitaled-client0 from $B/deb (their dependencies
#   from the Debian mirror), vitaled --check-config accepts the installed
#   configuration, files, owners, modes, the conffile, the enabled units and
#   the vitaled user are as they should be; vitaled runs as that user, makes
#   its queue and key, answers the installed vitalectl and stops;
#   apt-get remove: the programs go, the configuration, the queue, its key and
#   the user stay; apt-get purge: the configuration goes, the queue, its key
#   and the user still stay (see packaging/debian/vitaled.postrm).
#
# The bootstrap tarball is cached in /var/tmp/vitaled-deb-test (kept 7 days,
# then made again for the security updates) and so are the .debs apt fetched.
# Needs root (chroot, mount). Exit 0: every check passed.
set -eu
top=$(pwd)
B=${B:-$top/build}
case "$B" in /*) ;; *) B="$top/$B" ;; esac
start=$(date +%s)
say() { echo "deb-test: $*"; }
fail() { echo "deb-test: FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (chroot, mount)"
command -v mmdebstrap >/dev/null 2>&1 || fail "mmdebstrap is not installed (packaging/deps.sh installs it)"
ls "$B"/deb/vitaled_*.deb >/dev/null 2>&1 || fail "no package in $B/deb: run make deb"

MIRROR=${DEB_TEST_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEB_TEST_SECURITY:-http://deb.debian.org/debian-security}
cache=/var/tmp/vitaled-deb-test
mkdir -p "$cache/archives"
key=$(printf '%s\n' bookworm apt "$MIRROR" "$SECURITY" | cksum | cut -d' ' -f1)
tarball=$cache/bookworm-$key.tar
if [ -f "$tarball" ] && [ -z "$(find "$tarball" -mtime +7)" ]; then
    say "clean Debian 12 from the cache ($tarball)"
else
    say "bootstrapping a clean Debian 12 with mmdebstrap (once a week; about 2-3 min)"
    rm -f "$cache"/bookworm-*.tar
    mmdebstrap --quiet --variant=apt --mode=root bookworm "$tarball.tmp" \
        "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
        "deb $SECURITY bookworm-security main" || fail "mmdebstrap"
    mv "$tarball.tmp" "$tarball"
fi

work=$B/deb-test
root=$work/root
pid=""
mounted=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "$mounted" ] && umount "$root/proc" 2>/dev/null
    # never remove a tree with something still mounted in it
    if grep -q " $root/" /proc/mounts; then
        echo "deb-test: $root still has mounts; left in place"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
grep -q " $root/" /proc/mounts 2>/dev/null && fail "$root has mounts left from an earlier run"
rm -rf "$work"
mkdir -p "$root"
tar -C "$root" -xf "$tarball"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mounted=1
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

mkdir -p "$root/tmp/debs"
cp "$B"/deb/vitaled_*.deb "$B"/deb/libvitaled-client0_*.deb "$root/tmp/debs/"
cp "$cache"/archives/*.deb "$root/var/cache/apt/archives/" 2>/dev/null || true
in_root apt-get -q update >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get update"; }
debs=$(cd "$root" && ls tmp/debs/*.deb | sed 's|^|/|')
in_root apt-get -q install -y --no-install-recommends $debs \
    >>"$work/apt.log" 2>&1 || { tail -40 "$work/apt.log"; fail "apt-get install"; }
cp "$root"/var/cache/apt/archives/*.deb "$cache/archives/" 2>/dev/null || true
# keep only the newest of each package in the cache
ls -t "$cache"/archives/*.deb 2>/dev/null | awk -F_ 'seen[$1]++' | xargs -r rm -f
say "installed with apt: $(in_root dpkg-query -W -f='${Package} ${Version} ' vitaled libvitaled-client0)"

# the configuration, as installed, passes
in_root vitaled --check-config >"$work/check.out" 2>&1 || { cat "$work/check.out"; fail "vitaled --check-config"; }
grep -q '^# configuration OK' "$work/check.out" || fail "--check-config did not say OK"
in_root vitaled --check-config --config /etc/vitaled/vitaled.conf >/dev/null || fail "--check-config --config"

# the user and the group
pw=$(in_root getent passwd vitaled) || fail "no vitaled user"
uid=$(echo "$pw" | cut -d: -f3)
[ "$uid" -lt 1000 ] && [ "$uid" -gt 0 ] || fail "vitaled is not a system user: $pw"
[ "$(echo "$pw" | cut -d: -f6)" = /var/lib/vitaled ] || fail "vitaled's home: $pw"
case "$(echo "$pw" | cut -d: -f7)" in */nologin|/bin/false) ;; *) fail "vitaled has a login shell: $pw" ;; esac
in_root getent group vitaled >/dev/null || fail "no vitaled group"

# files: owner, group, mode
check() { # path owner:group mode
    got=$(in_root stat -c '%U:%G %a' "$1" 2>/dev/null) || fail "missing: $1"
    [ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
}
check /usr/sbin/vitaled root:root 755
check /usr/bin/vitalectl root:root 755
check /usr/sbin/vitaled-web root:root 755
check /etc/vitaled/vitaled.conf root:root 644
check /etc/vitaled/profiles.d root:root 755
check /var/lib/vitaled vitaled:vitaled 700
check /run/vitaled vitaled:vitaled 750
check /lib/systemd/system/vitaled.service root:root 644
check /lib/systemd/system/vitaled.socket root:root 644
check /usr/lib/sysusers.d/vitaled.conf root:root 644
check /usr/lib/tmpfiles.d/vitaled.conf root:root 644
check /usr/share/doc/vitaled/copyright root:root 644
check /usr/share/doc/vitaled/vitaled.conf.example.gz root:root 644
check /usr/share/man/man8/vitaled.8.gz root:root 644
lib=$(in_root sh -c 'ls /usr/lib/*/libvitaled-client.so.0.1.0') || fail "libvitaled-client.so.0.1.0 not installed"
check "$lib" root:root 644
[ "$(in_root readlink "${lib%.1.0}")" = libvitaled-client.so.0.1.0 ] || fail "libvitaled-client.so.0 link"
in_root dpkg-query -W -f='${Conffiles}\n' vitaled | grep -q ' /etc/vitaled/vitaled.conf ' \
    || fail "/etc/vitaled/vitaled.conf is not a conffile"
grep -qx 'ExecStart=/usr/sbin/vitaled --foreground --config /etc/vitaled/vitaled.conf' \
    "$root/lib/systemd/system/vitaled.service" || fail "the unit's ExecStart"
# enabled at install (started at boot; nothing runs in a chroot)
[ -L "$root/etc/systemd/system/multi-user.target.wants/vitaled.service" ] || fail "vitaled.service not enabled"
[ -L "$root/etc/systemd/system/sockets.target.wants/vitaled.socket" ] || fail "vitaled.socket not enabled"
[ -e "$root/etc/systemd/system/sockets.target.wants/vitaled-web.socket" ] && fail "the web bridge is enabled (opt-in)"
say "configuration, user $(echo "$pw" | cut -d: -f1-4), files, modes, conffile, enabled units: ok"

# vitaled runs as its user on the installed configuration: it makes the queue
# and its key, and the installed vitalectl talks to it
(ulimit -l 8192; exec chroot --userspec=vitaled:vitaled "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin \
    /usr/sbin/vitaled --foreground --config /etc/vitaled/vitaled.conf) >"$work/vitaled.log" 2>&1 &
pid=$!
i=0
while [ ! -S "$root/run/vitaled/vitaled.sock" ] && [ $i -lt 200 ] && kill -0 "$pid" 2>/dev/null; do
    sleep 0.1; i=$((i + 1))
done
[ -S "$root/run/vitaled/vitaled.sock" ] || { cat "$work/vitaled.log"; fail "vitaled did not open its socket"; }
check /run/vitaled/vitaled.sock vitaled:vitaled 660
in_root vitalectl status >"$work/status.out" 2>&1 || { cat "$work/status.out" "$work/vitaled.log"; fail "vitalectl status"; }
kill -TERM "$pid"
wait "$pid" || { cat "$work/vitaled.log"; fail "vitaled did not stop cleanly"; }
pid=""
check /var/lib/vitaled/queue.key vitaled:vitaled 600
check /var/lib/vitaled/queue.db vitaled:vitaled 600
keysum=$(cksum < "$root/var/lib/vitaled/queue.key")
say "vitaled ran as vitaled, made its queue and key, answered vitalectl, stopped"

# remove: programs gone; configuration, queue, key, user stay
in_root apt-get -q remove -y vitaled >>"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; fail "apt-get remove"; }
[ -e "$root/usr/sbin/vitaled" ] && fail "remove left /usr/sbin/vitaled"
[ -e "$root/lib/systemd/system/vitaled.service" ] && fail "remove left the unit"
[ -f "$root/etc/vitaled/vitaled.conf" ] || fail "remove took the configuration (a conffile stays until purge)"
[ "$(cksum < "$root/var/lib/vitaled/queue.key")" = "$keysum" ] || fail "remove changed or took the queue key"
[ -f "$root/var/lib/vitaled/queue.db" ] || fail "remove took the queue"
in_root getent passwd vitaled >/dev/null || fail "remove took the vitaled user"
say "removed: programs gone; configuration, queue, key and user kept"

# purge: configuration gone; the queue, its key and the user still stay
in_root apt-get -q purge -y vitaled >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "apt-get purge"; }
[ -e "$root/etc/vitaled" ] && fail "purge left /etc/vitaled"
[ -e "$root/etc/systemd/system/multi-user.target.wants/vitaled.service" ] && fail "purge left the unit enabled"
[ -e "$root/run/vitaled" ] && fail "purge left /run/vitaled"
[ "$(cksum < "$root/var/lib/vitaled/queue.key")" = "$keysum" ] || fail "purge changed or took the queue key"
[ -f "$root/var/lib/vitaled/queue.db" ] || fail "purge took the queue (it may hold sheets not yet uploaded)"
grep -q 'is kept' "$work/purge.log" || fail "purge did not say that /var/lib/vitaled is kept"
st=$(in_root dpkg-query -W -f='${db:Status-Status}' vitaled 2>/dev/null || true)
[ "$st" = "not-installed" ] || [ -z "$st" ] || fail "after purge dpkg says: $st"
say "purged: configuration gone; queue, key and user kept (by design)"
say "passed in $(( $(date +%s) - start )) s"
