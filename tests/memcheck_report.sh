#!/bin/sh
# Summarise the valgrind logs of `make memcheck` (one per process, DIR/<pid>.log):
# a process that ended normally has an "ERROR SUMMARY"; any error there
# (invalid access, uninitialised value, a definite leak: --errors-for-leak-kinds=definite)
# fails. Processes killed on purpose (kill -9 tests) leave no summary and are
# counted apart.
set -u
dir=${1:?usage: memcheck_report.sh DIR}
total=0 clean=0 killed=0 bad=0
for f in "$dir"/*.log; do
    [ -f "$f" ] || continue
    total=$((total + 1))
    s=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -1)
    if [ -z "$s" ]; then killed=$((killed + 1)); continue; fi
    if [ "$s" -eq 0 ]; then clean=$((clean + 1)); continue; fi
    bad=$((bad + 1))
    echo "!! $f: $s errors"
    grep -E "Invalid|uninitialised|definitely lost|at 0x|by 0x" "$f" | head -40
done
echo "memcheck: $total processes: $clean clean, $bad with errors, $killed without a summary (killed by the test)"
[ "$total" -gt 0 ] || { echo "memcheck: no valgrind log found in $dir"; exit 1; }
[ "$bad" -eq 0 ]
