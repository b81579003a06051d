#!/bin/sh
# Install the Debian packages that building, testing and the demo need, only
# the missing ones. Idempotent; runs `apt-get update` at most once. A stamp file
# (keyed by this script's content) makes later calls on the same machine free.
# Other parts of vitaled add their packages to the lists below.
set -eu

BUILD="gcc make pkg-config libc6-dev libpcsclite-dev libnfc-dev libssl-dev
libcurl4-openssl-dev libsqlite3-dev libjansson-dev libinih-dev libsystemd-dev
libp11-dev libp11-kit-dev check
libcairo2-dev libqrencode-dev fonts-dejavu-core
zlib1g-dev"
TEST="pcscd pcsc-tools vsmartcard-vpcd libnfc-bin socat softhsm2 opensc
libengine-pkcs11-openssl python3 python3-cbor2 python3-cryptography openssl
sqlite3 systemd procps psmisc util-linux gdb valgrind clang libclang-rt-14-dev
fiu-utils libfiu-dev iproute2
golang-go golang-github-varlink-go-dev mandoc prometheus bash-completion
poppler-utils zbar-tools
qrencode"
PKGS="$BUILD $TEST"
# the web bridge (vitaled-web) and its browser tests / kiosk screenshots
PKGS="$PKGS libmicrohttpd-dev chromium python3-websocket fonts-dejavu-core"
# the Debian package: make deb (debhelper, lintian), make deb-test (mmdebstrap)
PKGS="$PKGS build-essential dpkg-dev debhelper fakeroot lintian mmdebstrap binutils"

here=$(cd "$(dirname "$0")" && pwd)
sum=$(cat "$0" | cksum | cut -d' ' -f1)
stamp_dir=/var/tmp
[ -w "$stamp_dir" ] || stamp_dir=${TMPDIR:-/tmp}
stamp="$stamp_dir/vitaled-deps.$sum.stamp"
[ -f "$stamp" ] && exit 0

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = "installed" ] || missing="$missing $p"
done

if [ -n "$missing" ]; then
    echo "deps: installing:$missing"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "deps: need root or sudo to install:$missing" >&2; exit 1; }
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    # update once if the package lists are missing or any package is unknown
    if ! $SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
        $SUDO apt-get update -q
        $SUDO apt-get install -y -q --no-install-recommends $missing
    fi
fi
# pcscd's own system instance is never used by the tests (they start private
# instances); nothing to configure here.
touch "$stamp" 2>/dev/null || true
echo "deps: all build and test packages present"
