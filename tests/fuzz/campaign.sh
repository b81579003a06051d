#!/bin/sh
# A fuzzing campaign: every libFuzzer target (or those named in $TARGETS) for
# $FUZZ_SECONDS each (default 600), $JOBS at a time (default 1), each from its
# seed corpus in tests/fuzz/corpus/<name>/ plus a work corpus kept in
# $OUT/<target>/. Prints one Markdown row per target: executions, edges
# covered (libFuzzer's "cov"), features, new units, and the result (a crash
# leaves its input in $OUT/<target>-crash-*; reproduce with
# `build/fuzz/<target> FILE`).
#   make fuzz && sh tests/fuzz/campaign.sh        (B, FUZZ_SECONDS, JOBS, OUT, TARGETS)
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
B=${B:-$top/build}
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
JOBS=${JOBS:-1}
# a unit slower than this (wall time) is reported as a hang; generous, as a
# campaign often runs at nice 19 beside other work
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-60}
OUT=${OUT:-$B/fuzz-campaign}
mkdir -p "$OUT"
[ -n "${TARGETS:-}" ] || TARGETS=$(cd "$B/fuzz" && ls fuzz_* 2>/dev/null)

one() {
    t=$1; n=${t#fuzz_}
    mkdir -p "$OUT/$t"
    seeds=""; [ -d "$here/corpus/$n" ] && seeds="$here/corpus/$n"
    "$B/fuzz/$t" -max_total_time="$FUZZ_SECONDS" -max_len=65536 -timeout="$FUZZ_TIMEOUT" \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/$t-" \
        "$OUT/$t" $seeds > "$OUT/$t.log" 2>&1
    echo $? > "$OUT/$t.rc"
}

running=0
for t in $TARGETS; do
    one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait; running=0; fi
done
wait

echo "| target | seconds | executions | edges (cov) | features (ft) | corpus units | result |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
fail=0
for t in $TARGETS; do
    log=$OUT/$t.log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    units=$(ls "$OUT/$t" | wc -l)
    rc=$(cat "$OUT/$t.rc" 2>/dev/null || echo '?')
    if [ "$rc" = 0 ]; then res="no crash"; else res="FAILED (exit $rc, see $log)"; fail=1; fi
    echo "| $t | $FUZZ_SECONDS | ${execs:-?} | ${cov:-?} | ${ft:-?} | $units | $res |"
done
exit $fail
