#!/bin/sh
# make bench: print one table of figures, each beside a baseline measured in
# the same run on the same machine (the machines are shared and noisy, so
# ratios mean more than absolute numbers). Every tests/bench/bench_* script
# prints rows "| what | value | baseline | ratio |".
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
B=${B:-build}
case "$B" in /*) ;; *) B="$top/$B" ;; esac
export B
echo "| what | value | baseline | ratio |"
echo "| --- | --- | --- | --- |"
rc=0
for s in "$here"/bench_*; do
    [ -f "$s" ] || continue
    case "$s" in
        *.py) /usr/bin/python3 "$s" || rc=1 ;;
        *.sh) sh "$s" || rc=1 ;;
    esac
done
exit $rc
