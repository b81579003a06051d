#!/bin/sh
# Bench row for the digital card: one full verification of a presentation
# (issuer chain to the anchor, the issuer's and the device's ES256
# signatures, payload checks) beside one bare ES256 verify in the same run.
# The measurement lives in tests/unit/check_credential.c (case "bench"):
# a tool in tests/tools cannot link the core library.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
B=${B:-$top/build}
t="$B/tests/check_credential"
if [ ! -x "$t" ]; then
    make -C "$top" --no-print-directory B="$B" "$t" >/dev/null || exit 1
fi
cd "$top" && CK_RUN_CASE=bench CK_FORK=no BENCH_ROWS=1 "$t" | grep '^|'
