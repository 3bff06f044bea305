#!/usr/bin/env bash
# surel's standard benchmark: builds release, starts surel on loopback (temporary data
# directory, USERS accounts, fsync on), runs the standard scenarios RUNS times each with
# loadgen and prints medians. Every run is bounded by a message or session count.
#
#   scripts/bench.sh                 # all scenarios
#   MSGS=5000 RUNS=1 scripts/bench.sh
#   FETCH_ONLY=1 SESSIONS=1000 NO_BUILD=1 scripts/bench.sh   # POP3/IMAP fetch only, no build
#
# Scenarios: SMTP delivery with a new connection per message and with 100 messages per
# connection (4 KB, 32 connections, 1000 recipients' accounts), then POP3 and IMAP fetch of
# PER_USER messages per mailbox by 50 sessions (after one warm-up pass that fills the login
# cache, as a long-running server's would be).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap surel_stop EXIT

[ -n "${NO_BUILD:-}" ] || build
SMTP=127.0.0.1:$(surel_port 25)
COMMON=(--users "$USERS" --size "$SIZE")
DELIVERY=(surel-smtp-new-conn surel-smtp-reuse)
if [ -z "${FETCH_ONLY:-}" ]; then
    surel_start
    SERVER_PID=$SUREL_PID
    run surel-smtp-new-conn smtp --target "$SMTP" --connections "$CONC" --count "$MSGS" "${COMMON[@]}"
    run surel-smtp-reuse smtp --target "$SMTP" --connections "$CONC" --count "$MSGS" --msgs-per-conn 100 "${COMMON[@]}"
    surel_stop
else
    DELIVERY=()
fi

# Fetch runs: a fresh store with exactly PER_USER messages in each mailbox.
surel_start
SERVER_PID=$SUREL_PID
"$LOADGEN" seed --target "$SMTP" --users "$USERS" --per-user "$PER_USER" --size "$SIZE" --quiet >/dev/null
FETCH=(--connections "$FETCH_CONC" --count "$SESSIONS" --users "$USERS")
# Warm-up: the first login of each account pays for its Argon2 hash once.
RUNS=1 run warmup pop3 --target "127.0.0.1:$(surel_port 995)" --tls --count "$USERS" --users "$USERS" --connections "$FETCH_CONC"
run surel-pop3s-fetch pop3 --target "127.0.0.1:$(surel_port 995)" --tls "${FETCH[@]}"
if grep -q '^imaps ' "$WORK/surel-data/ports"; then
    run surel-imaps-fetch imap --target "127.0.0.1:$(surel_port 993)" --tls "${FETCH[@]}"
    run surel-imaps-headers imap --target "127.0.0.1:$(surel_port 993)" --tls --headers-only "${FETCH[@]}"
fi

echo
echo "surel on $(nproc) cores, $(uname -r); $MSGS messages of $SIZE B per delivery run, $CONC connections;"
echo "fetch: $SESSIONS sessions, $FETCH_CONC at a time, $PER_USER messages per mailbox; median of $RUNS runs"
report "${DELIVERY[@]}" surel-pop3s-fetch surel-imaps-fetch surel-imaps-headers
echo "(results and per-run JSON in $RESULTS)"
