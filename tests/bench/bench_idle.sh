#!/bin/sh
# Idle cost of vitaled's PC/SC side: a private pcscd with two vpcd readers
# and no card, vitaled watching them, both left alone for BENCH_IDLE_S
# seconds (default 60). Measured from /proc over the same window:
#   - CPU time (utime + stime of every thread, /proc/PID/stat) of vitaled,
#     with pcscd's as the baseline (pcscd polls each vpcd reader every 0.4 s);
#   - wake-ups (voluntary + involuntary context switches of every thread).
# A blocking SCardGetStatusChange costs vitaled nothing between events; a
# polling loop would show here.
#
# Prints markdown rows | row | value | baseline | ratio | (tests/bench/run.sh
# prints the table's header).
# Env: B (build dir, default ./build), BENCH_IDLE_S. Exit 77 when pcscd or
# vpcd is missing. Stops what it started, by PID, on every exit path.
set -eu

B=${B:-./build}
S=${BENCH_IDLE_S:-60}
here=$(cd "$(dirname "$0")" && pwd)
world=${PCSCWORLD_DIR:-$here/../world}

[ -x /usr/sbin/pcscd ] && [ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] ||
	{ echo "bench_idle: pcscd/vpcd not installed; skipped" >&2; exit 77; }
[ -x "$B/vitaled" ] || { echo "bench_idle: $B/vitaled not built" >&2; exit 1; }

tmp=$(mktemp -d /tmp/bench_idle.XXXXXX)
vpid=""
cleanup() {
	if [ -n "$vpid" ] && kill -0 "$vpid" 2>/dev/null; then
		kill -TERM "$vpid" 2>/dev/null || true
		wait "$vpid" 2>/dev/null || true
	fi
	/usr/bin/python3 "$world/world.py" stop "$tmp/pcsc" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$(/usr/bin/python3 "$world/world.py" start "$tmp/pcsc")"
export PCSCLITE_CSOCK_NAME
ppid=$(cat "$tmp/pcsc/pcscd.pid")

"$B/vitaled" -s "$tmp/v.sock" -d "$tmp/state" -l notice 2>"$tmp/vitaled.log" &
vpid=$!

# both readers reported: the daemon is in its steady idle state
i=0
while :; do
	n=$("$B/vitalectl" --socket "$tmp/v.sock" readers --json 2>/dev/null |
		grep -c '"name"' || true)
	[ "${n:-0}" -ge 2 ] && break
	i=$((i + 1))
	[ $i -lt 200 ] || { echo "bench_idle: vitaled did not report 2 readers" >&2; exit 1; }
	sleep 0.05
done
sleep 1

ticks() { # utime + stime of the whole process, in clock ticks
	sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
switches() { # context switches of all its threads
	cat /proc/"$1"/task/*/status 2>/dev/null |
		awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print s + 0 }'
}

v0=$(ticks $vpid); p0=$(ticks $ppid); vs0=$(switches $vpid); ps0=$(switches $ppid)
sleep "$S"
v1=$(ticks $vpid); p1=$(ticks $ppid); vs1=$(switches $vpid); ps1=$(switches $ppid)
kill -0 "$vpid" || { echo "bench_idle: vitaled died" >&2; exit 1; }
hz=$(getconf CLK_TCK)

awk -v v=$((v1 - v0)) -v p=$((p1 - p0)) -v vs=$((vs1 - vs0)) -v ps=$((ps1 - ps0)) \
    -v s="$S" -v hz="$hz" 'BEGIN {
	r = p > 0 ? sprintf("%.3f", v / p) : "n/a"
	printf "| idle CPU over %d s, 2 readers, no card: vitaled vs pcscd | %.2f s | %.2f s | %s |\n",
	       s, v / hz, p / hz, r
	r = ps > 0 ? sprintf("%.3f", vs / ps) : "n/a"
	printf "| idle wake-ups per s: vitaled vs pcscd | %.2f | %.2f | %s |\n", vs / s, ps / s, r
}'
