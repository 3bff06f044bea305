#!/usr/bin/env bash
# Crash harness: SIGKILLs a release build of surel at random moments under mixed load (SMTP
# delivery, IMAP APPEND/STORE/EXPUNGE/MOVE, POP3 DELE/QUIT, compaction) and checks after every
# restart that nothing acknowledged was lost, duplicated or changed, and that
# `surel store check` finds the store clean. The driver is scripts/crash_driver.py.
#
# Usage: scripts/crash-test.sh [CYCLES]        (default 100)
# Environment: MAX_MINUTES (default 60: no new cycle starts after that), SEED, WORK (kept
# afterwards; default a temporary directory, removed when the run passes), CORES (default 2).
# Exit status 0 only if every cycle passed. Runs at low CPU priority (nice).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CYCLES=${1:-100}
MAX_MINUTES=${MAX_MINUTES:-60}
CORES=${CORES:-2}
KEEP=${WORK:+1}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/surel-crash.XXXXXX")}

(cd "$ROOT" && nice cargo build --release --bin surel --quiet)

args=(--surel "$ROOT/target/release/surel" --cycles "$CYCLES" --work "$WORK"
      --cores "$CORES" --max-seconds $((MAX_MINUTES * 60)))
[ -n "${SEED:-}" ] && args+=(--seed "$SEED")

# The driver stops starting cycles at MAX_MINUTES; the outer timeout only catches a hang.
status=0
timeout --signal=TERM --kill-after=60 $((MAX_MINUTES * 60 + 600)) \
    nice -n 10 python3 "$ROOT/scripts/crash_driver.py" "${args[@]}" || status=$?
if [ "$status" -eq 0 ] && [ -z "$KEEP" ]; then
    rm -rf "$WORK"
else
    echo "work directory kept: $WORK (server log: $WORK/server.log)" >&2
fi
exit "$status"
