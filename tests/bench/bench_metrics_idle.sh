#!/bin/sh
# What [metrics] textfile costs an idle daemon: two vitaled side by side, no
# readers (pcsc disabled), no card, no client, over the same BENCH_IDLE_S
# seconds (default 60): one without a textfile (the baseline), one writing
# it every interval_s = 60 (the default). Wake-ups are context switches of
# every thread (/proc/PID/task/*/status); the textfile's timer should add
# about one write per minute, nothing else.
# Prints markdown rows | row | value | baseline | ratio |. Env: B, BENCH_IDLE_S.
set -eu
B=${B:-./build}
S=${BENCH_IDLE_S:-60}
[ -x "$B/vitaled" ] || { echo "bench_metrics_idle: $B/vitaled not built" >&2; exit 1; }
tmp=$(mktemp -d /tmp/bench_metrics_idle.XXXXXX)
p0="" p1=""
cleanup() {
	for p in $p0 $p1; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for n in 0 1; do
	mkdir -p "$tmp/$n/state"
	printf '[daemon]\nsocket = %s/%s/s.sock\nstate_dir = %s/%s/state\nlog_level = notice\n[pcsc]\nenabled = false\n' \
		"$tmp" $n "$tmp" $n > "$tmp/$n/c.conf"
done
printf '[metrics]\ntextfile = %s/1/vitaled.prom\ninterval_s = 60\n' "$tmp" >> "$tmp/1/c.conf"
"$B/vitaled" --config "$tmp/0/c.conf" 2>"$tmp/0/log" & p0=$!
"$B/vitaled" --config "$tmp/1/c.conf" 2>"$tmp/1/log" & p1=$!
i=0
until [ -S "$tmp/0/s.sock" ] && [ -S "$tmp/1/s.sock" ]; do
	i=$((i + 1)); [ $i -lt 200 ] || { echo "bench_metrics_idle: no socket" >&2; exit 1; }
	sleep 0.05
done
sleep 2
switches() {
	cat /proc/"$1"/task/*/status 2>/dev/null |
		awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print s + 0 }'
}
a0=$(switches $p0); a1=$(switches $p1)
sleep "$S"
b0=$(switches $p0); b1=$(switches $p1)
[ -s "$tmp/1/vitaled.prom" ] || { echo "bench_metrics_idle: no textfile written" >&2; exit 1; }
awk -v w=$((b1 - a1)) -v base=$((b0 - a0)) -v s="$S" 'BEGIN {
	r = base > 0 ? sprintf("%.2f", w / base) : "n/a"
	printf "| idle wake-ups over %d s, no readers: [metrics] textfile every 60 s vs none | %d | %d | %s |\n", s, w, base, r
}'
