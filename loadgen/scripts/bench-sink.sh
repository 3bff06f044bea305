#!/usr/bin/env bash
# Compare loadgen with Postfix smtp-source against smtp-sink on loopback (no storage).
# Usage: loadgen/scripts/bench-sink.sh [ROUNDS] [EXTRA LOADGEN ARGS...]
# Needs a running sink, e.g.:  smtp-sink -u nobody -c 127.0.0.1:22026 2000 &
# Runs are interleaved (loadgen, loadgen --msgs-per-conn 100, smtp-source) to even out noise;
# prints each run's msg/s and the medians.
set -euo pipefail
ROUNDS=${1:-5}; shift || true
PORT=${PORT:-22026}; MSGS=${MSGS:-20000}; CONC=${CONC:-32}; SIZE=${SIZE:-4096}
LG=${LOADGEN:-$(dirname "$0")/../../target/release/loadgen}
declare -a A B C
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for r in $(seq "$ROUNDS"); do
  a=$("$LG" smtp --target 127.0.0.1:$PORT --connections $CONC --count $MSGS --size $SIZE --users 1000 -q "$@" --json /tmp/lg-bench.json >/dev/null && python3 -c 'import json;print(round(json.load(open("/tmp/lg-bench.json"))["messages_per_s"]))')
  b=$("$LG" smtp --target 127.0.0.1:$PORT --connections $CONC --count $MSGS --size $SIZE --users 1000 --msgs-per-conn 100 -q "$@" --json /tmp/lg-bench.json >/dev/null && python3 -c 'import json;print(round(json.load(open("/tmp/lg-bench.json"))["messages_per_s"]))')
  s=$( { /usr/bin/time -f %e /usr/sbin/smtp-source -c -l $SIZE -m $MSGS -s $CONC -N -f a@example.test -t user0001@example.test 127.0.0.1:$PORT >/dev/null; } 2>&1 | tail -1)
  c=$(python3 -c "print(round($MSGS/$s))")
  A+=("$a"); B+=("$b"); C+=("$c")
  echo "round $r: loadgen ${a} msg/s | loadgen reuse-100 ${b} msg/s | smtp-source ${c} msg/s (${s}s)"
done
echo "median: loadgen $(median "${A[@]}") | loadgen reuse-100 $(median "${B[@]}") | smtp-source $(median "${C[@]}") msg/s"
