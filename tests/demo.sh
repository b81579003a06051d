#!/bin/sh
# make demo: the main job end to end on the simulated world, printing what
# happens. Everything runs in a temporary directory and is stopped by PID on
# every exit path. Parts appear as they are built: the daemon and its API
# first; readers, cards, PINs, sheets and the insurer as they land.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
B=${B:-build}
case "$B" in /*) ;; *) B="$top/$B" ;; esac
export B
exec /usr/bin/python3 "$here/demo.py"
