#!/bin/sh
# Run the integration tests: every tests/integration/test_*.sh and test_*.py
# (or only those whose name contains $1). Each test gets B (the build dir)
# and TEST_WRAPPER in its environment; exit 0 = pass, 77 = skip, else fail.
# Each test starts and stops what it needs itself.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
B=${B:-build}
case "$B" in /*) ;; *) B="$top/$B" ;; esac
export B TEST_WRAPPER="${TEST_WRAPPER:-}"
filter=${1:-}
pass=0 fail=0 skip=0 failed=""
for t in "$here"/test_*.sh "$here"/test_*.py; do
    [ -f "$t" ] || continue
    name=$(basename "$t")
    if [ -n "$filter" ]; then
        case "$name" in *"$filter"*) ;; *) continue ;; esac
    fi
    echo "== $name"
    start=$(date +%s)
    case "$t" in
        *.py) (cd "$top" && /usr/bin/python3 "$t") ;;
        *)    (cd "$top" && sh "$t") ;;
    esac
    rc=$?
    dur=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); echo "-- PASS $name (${dur}s)"
    elif [ $rc -eq 77 ]; then
        skip=$((skip + 1)); echo "-- SKIP $name"
    else
        fail=$((fail + 1)); failed="$failed $name"; echo "-- FAIL $name (exit $rc, ${dur}s)"
    fi
done
echo "integration: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] || { echo "failed:$failed"; exit 1; }
