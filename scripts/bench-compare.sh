#!/usr/bin/env bash
# The standard scenarios in one run, side by side: surel, Postfix + Dovecot (the reference
# system in ../shared/peers, started here and stopped at the end) and smtp-sink (SMTP with no
# storage: the protocol ceiling of this machine). Same loadgen, same message sizes, same
# concurrency, fsync on everywhere. Prints medians and surel/peer ratios.
#
#   scripts/bench-compare.sh
#   MSGS=5000 RUNS=1 scripts/bench-compare.sh        # quicker
#
# Postfix accepts mail into its queue and delivers it to Dovecot afterwards; its delivery
# rate is reported both as accepted/s (loadgen's figure) and end to end (until the queue is
# empty). surel answers 250 only once a message is fsync'd in the mailbox, so its accepted
# rate is its end-to-end rate. POP3/IMAP run over implicit TLS on both (995/993).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PEERS=${PEERS:-$(cd "$ROOT/../shared/peers" && pwd)}
SINK_PORT=${SINK_PORT:-22026}

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
DELIVERY=(--connections "$CONC" --count "$MSGS" --users "$USERS" --size "$SIZE")
FETCH=(--connections "$FETCH_CONC" --count "$SESSIONS" --users "$USERS")

# --- smtp-sink: the ceiling --------------------------------------------------------------
"$SMTP_SINK" -u nobody -c "127.0.0.1:$SINK_PORT" 5000 >/dev/null 2>&1 &
SINK_PID=$!
sleep 0.5
run sink-smtp-new-conn smtp --target "127.0.0.1:$SINK_PORT" "${DELIVERY[@]}"
kill "$SINK_PID"; SINK_PID=

# --- surel ---------------------------------------------------------------------------------
surel_start
SERVER_PID=$SUREL_PID
run surel-smtp-new-conn smtp --target "127.0.0.1:$(surel_port 25)" "${DELIVERY[@]}"
surel_stop
surel_start
SERVER_PID=$SUREL_PID
"$LOADGEN" seed --target "127.0.0.1:$(surel_port 25)" --users "$USERS" --per-user "$PER_USER" --size "$SIZE" --quiet >/dev/null
RUNS=1 run surel-warmup pop3 --target "127.0.0.1:$(surel_port 995)" --tls --count "$USERS" --users "$USERS" --connections "$FETCH_CONC"
run surel-pop3s-fetch pop3 --target "127.0.0.1:$(surel_port 995)" --tls "${FETCH[@]}"
HAVE_IMAP=
if grep -q '^imaps ' "$WORK/surel-data/ports"; then
    HAVE_IMAP=1
    run surel-imaps-fetch imap --target "127.0.0.1:$(surel_port 993)" --tls "${FETCH[@]}"
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
for r in $(seq 1 "$RUNS"); do
    t0=$(date +%s.%N)
    RUNS=1 run "peer-smtp-new-conn-$r" smtp --target 127.0.0.1:20025 "${DELIVERY[@]}"
    mv "$RESULTS/peer-smtp-new-conn-$r.1.json" "$RESULTS/peer-smtp-new-conn.$r.json"
    while [ "$(peer_queue_count)" -ne 0 ]; do sleep 0.1; done
    PEER_E2E+=("$(awk -v a="$(date +%s.%N)" -v b="$t0" -v n="$MSGS" 'BEGIN {printf "%.1f", n / (a - b)}')")
    peer_doveadm expunge -A mailbox INBOX all
done
"$LOADGEN" seed --target 127.0.0.1:20025 --users "$USERS" --per-user "$PER_USER" --size "$SIZE" --quiet >/dev/null
while [ "$(peer_queue_count)" -ne 0 ]; do sleep 0.2; done
run peer-pop3s-fetch pop3 --target 127.0.0.1:20995 --tls "${FETCH[@]}"
[ -n "$HAVE_IMAP" ] && run peer-imaps-fetch imap --target 127.0.0.1:20993 --tls "${FETCH[@]}"

# --- report ---------------------------------------------------------------------------------
echo
echo "$(nproc) cores, $(uname -r); delivery: $MSGS messages of $SIZE B, $CONC connections, new connection"
echo "per message, $USERS accounts; fetch: $SESSIONS sessions, $FETCH_CONC at a time, $PER_USER messages per"
echo "mailbox, implicit TLS; fsync on everywhere; median of $RUNS runs"
report sink-smtp-new-conn surel-smtp-new-conn peer-smtp-new-conn surel-pop3s-fetch peer-pop3s-fetch surel-imaps-fetch peer-imaps-fetch
peer_e2e=$(printf '%s\n' "${PEER_E2E[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "Postfix+Dovecot end to end (until the queue is empty): $peer_e2e msgs/s"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}'; }
echo
echo "surel / smtp-sink delivery:          $(ratio "$(median_rate surel-smtp-new-conn)" "$(median_rate sink-smtp-new-conn)")"
echo "surel / Postfix+Dovecot end to end:  $(ratio "$(median_rate surel-smtp-new-conn)" "$peer_e2e")"
echo "surel / Dovecot POP3 fetch:          $(ratio "$(median_rate surel-pop3s-fetch)" "$(median_rate peer-pop3s-fetch)")"
[ -n "$HAVE_IMAP" ] && echo "surel / Dovecot IMAP fetch:          $(ratio "$(median_rate surel-imaps-fetch)" "$(median_rate peer-imaps-fetch)")"
echo "(results and per-run JSON in $RESULTS)"
