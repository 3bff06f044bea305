#!/usr/bin/env bash
# Memory per idle IMAP connection: builds release, starts surel on loopback (temporary data
# directory, USERS accounts, one message each), warms the login cache, then holds CONNS
# connections in IDLE with `loadgen hold --pid <surel>` and prints surel's VmRSS before /
# after and (after - before) / connections, once per mode.
#
#   scripts/idle-conns.sh                        # CONNS=10000, plain and implicit TLS
#   CONNS=2000 MODES="tls starttls" HOLD=30 scripts/idle-conns.sh
#
# Modes: plain (IMAP on 143 with [auth] allow_plaintext = true: passwords in clear, loopback
# only), tls (imaps, 993), starttls (143 + STARTTLS). Each mode gets a fresh server.
# Env: CONNS (10000), USERS (1000), HOLD seconds (10), RAMP connections/s (2000),
# PUSH messages (100) delivered over SMTP to the first PUSH accounts during the hold (checks
# the server pushes EXISTS to every idler; expect PUSH x CONNS/USERS EXISTS, 0 = none),
# PORT_OFFSET (21000), MODES ("plain tls"), NO_BUILD=1 to skip the build, WORK (temp dir).
set -euo pipefail
# Below the ephemeral range (32768-60999 by default): with 41000 the listeners (41110, 41143,
# ...) can collide with the client sockets of this or another run ("Address already in use").
PORT_OFFSET=${PORT_OFFSET:-21000}
USERS=${USERS:-1000}
CONNS=${CONNS:-10000}
HOLD=${HOLD:-10}
RAMP=${RAMP:-2000}
MODES=${MODES:-"plain tls"}
PUSH=${PUSH:-100}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap surel_stop EXIT INT TERM

# Both processes need a descriptor per connection (plus listeners, store files, io_uring).
want=$((CONNS + 1024))
[ "$want" -lt 200000 ] && want=200000
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"  # a container may cap the hard limit
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 256)) ]; then
    echo "warning: ulimit -n is $(ulimit -n) (not root?); surel may refuse connections beyond it" >&2
fi
echo "ulimit -n $(ulimit -n); $(sysctl -n net.core.somaxconn 2>/dev/null | sed 's/^/somaxconn /');" \
    "ephemeral ports $(sysctl -n net.ipv4.ip_local_port_range 2>/dev/null | tr -s '\t ' '-')"

[ -n "${NO_BUILD:-}" ] || build

for mode in $MODES; do
    case "$mode" in
    plain)
        extra="allow_plaintext = true"
        port=$(surel_port 143)
        flags=()
        ;;
    tls)
        extra=""
        port=$(surel_port 993)
        flags=(--tls)
        ;;
    starttls)
        extra=""
        port=$(surel_port 143)
        flags=(--starttls)
        ;;
    *)
        echo "unknown mode $mode (plain|tls|starttls)" >&2
        exit 2
        ;;
    esac
    echo
    echo "=== $mode: $CONNS idle IMAP connections to 127.0.0.1:$port, $USERS accounts ==="
    surel_start "$extra"
    SERVER_PID=$SUREL_PID
    "$LOADGEN" seed --target "127.0.0.1:$(surel_port 25)" --users "$USERS" --per-user 1 --quiet \
        >"$RESULTS/seed-$mode.txt" 2>&1 ||
        { echo "seed failed:" >&2; tail -20 "$RESULTS/seed-$mode.txt" >&2; exit 1; }
    # Warm-up: each account's first login pays for its Argon2 verification once.
    "$LOADGEN" imap --target "127.0.0.1:$port" "${flags[@]}" --users "$USERS" --count "$USERS" \
        --connections 50 --headers-only --quiet >"$RESULTS/warmup-$mode.txt" 2>&1 ||
        { echo "warm-up failed:" >&2; tail -20 "$RESULTS/warmup-$mode.txt" >&2; exit 1; }
    sleep "${SETTLE:-2}" # let the server go quiet before the 'before' sample
    out=$RESULTS/hold-$mode.txt
    "$LOADGEN" hold --target "127.0.0.1:$port" "${flags[@]}" --users "$USERS" \
        --connections "$CONNS" --hold "$HOLD" --ramp-rate "$RAMP" --pid "$SERVER_PID" \
        --json "$RESULTS/hold-$mode.json" >"$out" 2>&1 &
    hold_pid=$!
    if [ "$PUSH" -gt 0 ]; then
        # once every connection idles (loadgen prints "holding"), deliver PUSH messages
        until grep -q '; holding' "$out" || ! kill -0 "$hold_pid" 2>/dev/null; do sleep 0.1; done
        if kill -0 "$hold_pid" 2>/dev/null; then
            "$LOADGEN" smtp --target "127.0.0.1:$(surel_port 25)" --users "$USERS" --count "$PUSH" \
                --connections 4 --quiet >"$RESULTS/push-$mode.txt" 2>&1 ||
                echo "push delivery failed (see $RESULTS/push-$mode.txt)" >&2
            per_user=$(( (CONNS + USERS - 1) / USERS ))
            echo "pushed $PUSH messages during the hold (expect about $(( PUSH < USERS ? PUSH * per_user : CONNS )) EXISTS)"
        fi
    fi
    status=0
    wait "$hold_pid" || status=$?
    cat "$out"
    [ "$status" = 0 ] || echo "loadgen hold exited with status $status" >&2
    surel_stop
    cp "$WORK/surel.log" "$RESULTS/surel-$mode.log"
    problems=$(grep -ciE 'error|warn|panic' "$RESULTS/surel-$mode.log" || true)
    echo "surel log: $(wc -l <"$RESULTS/surel-$mode.log") lines, $problems with error/warn/panic ($RESULTS/surel-$mode.log)"
    grep -iE 'error|warn|panic' "$RESULTS/surel-$mode.log" | sed 's/^/    /' | head -5 || true
done

echo
python3 - "$RESULTS" $MODES <<'PY'
import json, os, sys
res, modes = sys.argv[1], sys.argv[2:]
print(f"{'mode':<10}{'conns':>7}{'estab':>7}{'failed':>7}{'alive':>7}{'EXISTS':>8}{'ramp s':>8}"
      f"{'RSS before':>12}{'RSS after':>11}{'KiB/conn':>10}{'marginal':>10}{'end of hold':>13}{'client':>8}")
for m in modes:
    f = os.path.join(res, f"hold-{m}.json")
    if not os.path.exists(f):
        print(f"{m:<10} (no result)")
        continue
    h = json.load(open(f))["hold"]
    s = h.get("server") or {}
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    print(f"{m:<10}{h['requested']:>7}{h['established']:>7}{h['failed']:>7}{h['alive_at_end']:>7}"
          f"{h['exists_seen']:>8}{h['establish_s']:>8.2f}{s.get('before', {}).get('vm_rss_kib', 0):>8} KiB"
          f"{s.get('idle', {}).get('vm_rss_kib', 0):>7} KiB{fmt(s.get('kib_per_conn')):>10}"
          f"{fmt(s.get('kib_per_conn_marginal')):>10}{fmt(s.get('kib_per_conn_end_of_hold')):>13}"
          f"{fmt(h.get('client_kib_per_conn')):>8}")
print("KiB per connection: (after-before)/established; marginal = (after-checkpoint)/connections")
print("opened after the checkpoint at 1/5; end of hold = same as the first, sampled before DONE;")
print("client = loadgen's own RSS / connections. RSS = VmRSS of the whole surel process.")
PY
echo "(per-mode output, JSON and surel logs in $RESULTS)"
