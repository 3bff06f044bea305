#!/usr/bin/env bash
# The standard scenarios in one run, side by side: surel, Postfix + Dovecot (the reference
# system in ../shared/peers, started here and stopped at the end) and smtp-sink (SMTP with no
# storage: the protocol ceiling of this machine). Same loadgen, same message sizes, same
# concurrency, fsync on everywhere. Prints medians and surel/peer ratios.
#
#   scripts/bench-compare.sh
#   MSGS=5000 RUNS=1 scripts/bench-compare.sh        # quicker
#   DELIVERY=0 USERS=100 PER_USER=200 SESSIONS=300 scripts/bench-compare.sh   # fetch only
#   FETCH_TLS=0 scripts/bench-compare.sh   # POP3/IMAP in clear text on both (surel with
#                                          # allow_plaintext, as the peer allows on loopback)
#
# Postfix accepts mail into its queue and delivers it to Dovecot afterwards; its delivery
# rate is reported both as accepted/s (loadgen's figure) and end to end (until the queue is
# empty). surel answers 250 only once a message is fsync'd in the mailbox, so its accepted
# rate is its end-to-end rate. POP3/IMAP run over implicit TLS on both (995/993).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PEERS=${PEERS:-$(cd "$ROOT/../shared/peers" && pwd)}
SINK_PORT=${SINK_PORT:-22026}
DELIVERY=${DELIVERY:-1}
FETCH_TLS=${FETCH_TLS:-1}
if [ "$FETCH_TLS" = 1 ]; then
    POP3=(995 --tls) IMAP=(993 --tls) SUREL_EXTRA=""
else
    POP3=(110) IMAP=(143) SUREL_EXTRA="allow_plaintext = true"
fi

cleanup() {
    surel_stop
    [ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null
    [ -n "${PEER_STARTED:-}" ] && RUN_DIR="$PEER_RUN_DIR" bash "$PEERS/stop.sh" >/dev/null 2>&1
    true
}
trap cleanup EXIT

build
if ! command -v postfix >/dev/null || ! command -v dovecot >/dev/null || ! command -v smtp-sink >/dev/null; then
    bash "$PEERS/install.sh"
fi
SMTP_SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
DELIVERY_ARGS=(--connections "$CONC" --count "$MSGS" --users "$USERS" --size "$SIZE")
FETCH=(--connections "$FETCH_CONC" --count "$SESSIONS" --users "$USERS")

# --- smtp-sink: the ceiling --------------------------------------------------------------
if [ "$DELIVERY" = 1 ]; then
"$SMTP_SINK" -u nobody -c "127.0.0.1:$SINK_PORT" 5000 >/dev/null 2>&1 &
SINK_PID=$!
sleep 0.5
run sink-smtp-new-conn smtp --target "127.0.0.1:$SINK_PORT" "${DELIVERY_ARGS[@]}"
kill "$SINK_PID"; SINK_PID=

# --- surel ---------------------------------------------------------------------------------
surel_start
SERVER_PID=$SUREL_PID
run surel-smtp-new-conn smtp --target "127.0.0.1:$(surel_port 25)" "${DELIVERY_ARGS[@]}"
surel_stop
fi
surel_start "$SUREL_EXTRA"
SERVER_PID=$SUREL_PID
"$LOADGEN" seed --target "127.0.0.1:$(surel_port 25)" --users "$USERS" --per-user "$PER_USER" --size "$SIZE" --quiet >/dev/null
RUNS=1 run surel-warmup pop3 --target "127.0.0.1:$(surel_port "${POP3[0]}")" "${POP3[@]:1}" --count "$USERS" --users "$USERS" --connections "$FETCH_CONC"
run surel-pop3-fetch pop3 --target "127.0.0.1:$(surel_port "${POP3[0]}")" "${POP3[@]:1}" "${FETCH[@]}"
HAVE_IMAP=
if grep -q '^imaps ' "$WORK/surel-data/ports"; then
    HAVE_IMAP=1
    run surel-imap-fetch imap --target "127.0.0.1:$(surel_port "${IMAP[0]}")" "${IMAP[@]:1}" "${FETCH[@]}"
fi
surel_stop
SERVER_PID=

# --- Postfix + Dovecot ---------------------------------------------------------------------
PEER_RUN_DIR="$WORK/peer"
chmod 0711 "$WORK" # Postfix and Dovecot drop privileges and must reach their state below it.
PEER_STARTED=1
RUN_DIR="$PEER_RUN_DIR" bash "$PEERS/start.sh" >"$WORK/peer-start.log"
RUN_DIR="$PEER_RUN_DIR"
. "$PEERS/lib.sh"
peer_set_paths
PEER_E2E=()
for r in $(seq 1 "$((DELIVERY ? RUNS : 0))"); do
    t0=$(date +%s.%N)
    RUNS=1 run "peer-smtp-new-conn-$r" smtp --target 127.0.0.1:20025 "${DELIVERY_ARGS[@]}"
    mv "$RESULTS/peer-smtp-new-conn-$r.1.json" "$RESULTS/peer-smtp-new-conn.$r.json"
    while [ "$(peer_queue_count)" -ne 0 ]; do sleep 0.1; done
    PEER_E2E+=("$(awk -v a="$(date +%s.%N)" -v b="$t0" -v n="$MSGS" 'BEGIN {printf "%.1f", n / (a - b)}')")
    peer_doveadm expunge -A mailbox INBOX all
done
"$LOADGEN" seed --target 127.0.0.1:20025 --users "$USERS" --per-user "$PER_USER" --size "$SIZE" --quiet >/dev/null
while [ "$(peer_queue_count)" -ne 0 ]; do sleep 0.2; done
run peer-pop3-fetch pop3 --target "127.0.0.1:$((20000 + POP3[0] % 1000))" "${POP3[@]:1}" "${FETCH[@]}"
[ -n "$HAVE_IMAP" ] && run peer-imap-fetch imap --target "127.0.0.1:$((20000 + IMAP[0] % 1000))" "${IMAP[@]:1}" "${FETCH[@]}"

# --- report ---------------------------------------------------------------------------------
echo
echo "$(nproc) cores, $(uname -r); delivery: $MSGS messages of $SIZE B, $CONC connections, new connection"
echo "per message, $USERS accounts; fetch: $SESSIONS sessions, $FETCH_CONC at a time, $PER_USER messages per"
echo "mailbox, $([ "$FETCH_TLS" = 1 ] && echo "implicit TLS" || echo "clear text"); fsync on everywhere; median of $RUNS runs"
report sink-smtp-new-conn surel-smtp-new-conn peer-smtp-new-conn surel-pop3-fetch peer-pop3-fetch surel-imap-fetch peer-imap-fetch
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}'; }
if [ "$DELIVERY" = 1 ]; then
    peer_e2e=$(printf '%s\n' "${PEER_E2E[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "Postfix+Dovecot end to end (until the queue is empty): $peer_e2e msgs/s"
    echo
    echo "surel / smtp-sink delivery:          $(ratio "$(median_rate surel-smtp-new-conn)" "$(median_rate sink-smtp-new-conn)")"
    echo "surel / Postfix+Dovecot end to end:  $(ratio "$(median_rate surel-smtp-new-conn)" "$peer_e2e")"
fi
echo "surel / Dovecot POP3 fetch:          $(ratio "$(median_rate surel-pop3-fetch)" "$(median_rate peer-pop3-fetch)")"
[ -n "$HAVE_IMAP" ] && echo "surel / Dovecot IMAP fetch:          $(ratio "$(median_rate surel-imap-fetch)" "$(median_rate peer-imap-fetch)")"
echo "(results and per-run JSON in $RESULTS)"
