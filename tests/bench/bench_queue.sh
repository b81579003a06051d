#!/bin/sh
# Bench rows for the durable queue (storage/queue): durable inserts per second
# against raw SQLite with the same pragmas, in the same process and on the
# same disk (build/tools/bench_queue; see tests/tools/bench_queue.c).
set -eu
exec "$B/tools/bench_queue"
