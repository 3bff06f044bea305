#!/usr/bin/env bash
# Relay throughput, side by side in one run: the same load through surel (every message
# fsync'd in its outbound queue before 250, then relayed) and through Postfix from
# ../shared/peers (RELAY_TO: Postfix's queue, fsync'd, relaying as a smarthost client), each to
# its own loadgen SMTP sink. A relay benchmark measures until the queues are empty: the figure
# is end-to-end messages per second, from the first message sent to the last one the sink
# accepted. Scenarios: 1 and 10 recipient domains, with and without a share of temporary
# failures at the sink (retried after 1 s by both relays).
#
#   scripts/bench-relay.sh                         # 50 000 messages, 3 runs (about 35 minutes)
#   MSGS=5000 RUNS=1 scripts/bench-relay.sh         # quicker
#   SCENARIOS="1:0 1:5" scripts/bench-relay.sh      # domains:tempfail-percent pairs
#   SUREL_ONLY=1 scripts/bench-relay.sh             # no Postfix (machines without ../shared)
set -euo pipefail
# Large enough that the retry tail of the tempfail scenarios (a few seconds, the same 1 s retry
# delay for both relays) does not dominate surel's run.
MSGS=${MSGS:-50000}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PEERS=${PEERS:-$(cd "$ROOT/../shared/peers" 2>/dev/null && pwd || true)}
SCENARIOS=${SCENARIOS:-"1:0 10:0 1:5 10:5"}
SUREL_ONLY=${SUREL_ONLY:-0}
SINK_PORT=${SINK_PORT:-22126}
PEER_SINK_PORT=${PEER_SINK_PORT:-22127}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}

cleanup() {
    surel_stop
    [ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null
    [ -n "${PEER_STARTED:-}" ] && RUN_DIR="$PEER_RUN_DIR" bash "$PEERS/stop.sh" >/dev/null 2>&1
    true
}
trap cleanup EXIT

build

# sink_start PORT TEMPFAIL: a loadgen sink on one core, its counters in $WORK/sink.json.
sink_start() {
    rm -f "$WORK/sink.json"
    "$LOADGEN" sink --listen "127.0.0.1:$1" --cores 1 --tempfail-pct "$2" --seed 7 \
        --stats-file "$WORK/sink.json" --duration "$RUN_TIMEOUT" --quiet >"$WORK/sink.log" 2>&1 &
    SINK_PID=$!
    for _ in $(seq 1 100); do [ -s "$WORK/sink.json" ] && return 0; sleep 0.05; done
    echo "sink did not start" >&2; cat "$WORK/sink.log" >&2; return 1
}
sink_stop() { kill "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null || true; SINK_PID=; }
sink_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or 0)" "$WORK/sink.json" "$1" 2>/dev/null || echo 0; }

# CPU seconds of the relay under test: surel's process, or Postfix's cgroup (all its daemons).
surel_cpu() { cpu_seconds "$SUREL_PID"; }
postfix_cpu() {
    # Postfix is a master and its daemons: their CPU while alive, and what the master
    # collected from the ones that exited (cutime/cstime), in a cgroup when there is one.
    local dir; dir=$(peer_cgroup_dir postfix)
    if [ -n "$dir" ] && [ -r "$dir/cpu.stat" ]; then
        awk '$1 == "usage_usec" {print $2 / 1e6}' "$dir/cpu.stat"
        return
    fi
    local master; master=$(cat "$RUN_DIR/pids/postfix.pid" 2>/dev/null | tr -d ' ')
    [ -n "$master" ] || { echo 0; return; }
    python3 - "$master" <<'PY'
import os, sys
master, hz, total = sys.argv[1], os.sysconf("SC_CLK_TCK"), 0
def fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        f = fields(pid)
    except OSError:
        continue
    if pid == master:
        total += sum(int(x) for x in f[11:15])   # utime stime cutime cstime
    elif f[1] == master:
        total += sum(int(x) for x in f[11:13])   # a live daemon: utime stime
print(total / hz)
PY
}

# measure NAME CPU_FN TARGET DOMAINS: sends MSGS messages, waits for the sink to have them
# all, writes "e2e_msgs_per_s cpu_us_per_msg accepted_msgs_per_s" to $RESULTS/NAME.N.
measure() {
    local name=$1 cpu_fn=$2 target=$3 domains=$4 r t0 cpu0 pattern users
    if [ "$domains" = 1 ]; then pattern="user%04d@example.net"; users=1000
    else pattern="rcpt@d%d.example.net"; users=$domains; fi
    for r in $(seq 1 "$RUNS"); do
        local base; base=$(sink_field recipients_delivered)
        cpu0=$($cpu_fn)
        t0=$(date +%s%3N)
        "$LOADGEN" smtp --target "$target" --connections "$CONC" --count "$MSGS" --size "$SIZE" \
            --users "$users" --user-pattern "$pattern" --from "sender@example.test" \
            --quiet --json "$RESULTS/$name.$r.json" >"$RESULTS/$name.$r.txt" 2>&1 ||
            { echo "loadgen failed for $name:" >&2; tail -5 "$RESULTS/$name.$r.txt" >&2; return 1; }
        local deadline=$(( $(date +%s) + RUN_TIMEOUT ))
        while [ "$(sink_field recipients_delivered)" -lt $((base + MSGS)) ]; do
            [ "$(date +%s)" -lt "$deadline" ] || { echo "$name: the queue did not drain" >&2; return 1; }
            sleep 0.05
        done
        local t1; t1=$(sink_field last_message_unix_ms)
        local accepted; accepted=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['messages_per_s'])" "$RESULTS/$name.$r.json")
        awk -v n="$MSGS" -v t0="$t0" -v t1="$t1" -v c1="$($cpu_fn)" -v c0="$cpu0" -v acc="$accepted" \
            'BEGIN {printf "%.1f %.0f %.1f\n", n / ((t1 - t0) / 1000), (c1 - c0) / n * 1e6, acc}' >"$RESULTS/$name.$r"
        sleep 1
    done
}

median() { # NAME FIELD(1-3)
    { cat "$RESULTS/$1".[0-9] "$RESULTS/$1".[0-9][0-9] 2>/dev/null || true; } | awk -v f="$2" '{print $f}' | sort -g |
        awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'
}

# --- surel ----------------------------------------------------------------------------------
for sc in $SCENARIOS; do
    domains=${sc%%:*} fail=${sc##*:}
    sink_start "$SINK_PORT" "$fail"
    surel_start "[relay]
allowed_networks = [\"127.0.0.0/8\"]
smarthost = \"127.0.0.1:$SINK_PORT\"
retry_initial_secs = 1
retry_max_secs = 1"
    measure "surel-d$domains-f$fail" surel_cpu "127.0.0.1:$(surel_port 25)" "$domains"
    surel_stop
    sink_stop
done

# --- Postfix --------------------------------------------------------------------------------
if [ "$SUREL_ONLY" != 1 ]; then
    [ -n "$PEERS" ] || { echo "no ../shared/peers: use SUREL_ONLY=1" >&2; exit 1; }
    command -v postfix >/dev/null || bash "$PEERS/install.sh"
    PEER_RUN_DIR="$WORK/peer"
    chmod 0711 "$WORK"
    for sc in $SCENARIOS; do
        domains=${sc%%:*} fail=${sc##*:}
        sink_start "$PEER_SINK_PORT" "$fail"
        PEER_STARTED=1
        RUN_DIR="$PEER_RUN_DIR" RELAY_TO="127.0.0.1:$PEER_SINK_PORT" bash "$PEERS/start.sh" >"$WORK/peer-start.log"
        RUN_DIR="$PEER_RUN_DIR"
        . "$PEERS/lib.sh"
        peer_set_paths
        # The same retry timing as surel's, so a temporary failure costs both the same wait.
        peer_postconf -e minimal_backoff_time=1s maximal_backoff_time=1s queue_run_delay=1s
        postfix -c "$PF_ETC" reload >/dev/null 2>&1
        sleep 1
        measure "postfix-d$domains-f$fail" postfix_cpu 127.0.0.1:20025 "$domains"
        RUN_DIR="$PEER_RUN_DIR" bash "$PEERS/stop.sh" >/dev/null 2>&1; PEER_STARTED=
        sink_stop
    done
fi

# --- report ---------------------------------------------------------------------------------
echo
echo "$(nproc) cores, $(uname -r); $MSGS messages of $SIZE B, $CONC client connections, a new"
echo "connection per message, one recipient each; fsync on; median of $RUNS runs; end to end ="
echo "first message sent -> last message accepted by the sink (the queue empty)"
printf "%-8s %-9s %12s %14s %7s %15s %17s\n" domains tempfail "surel msg/s" "Postfix msg/s" ratio "surel CPU/msg" "Postfix CPU/msg"
for sc in $SCENARIOS; do
    domains=${sc%%:*} fail=${sc##*:}
    s=$(median "surel-d$domains-f$fail" 1)
    p=$(median "postfix-d$domains-f$fail" 1)
    c=$(median "surel-d$domains-f$fail" 2)
    pc=$(median "postfix-d$domains-f$fail" 2)
    ratio=$(awk -v a="$s" -v b="$p" 'BEGIN {if (b > 0) printf "%.1f", a / b; else print "-"}')
    printf "%-8s %-9s %12s %14s %7s %12s µs %14s µs\n" "$domains" "$fail%" "$s" "$p" "$ratio" "$c" "$pc"
done
echo "(per-run figures in $RESULTS: e2e msgs/s, server CPU µs/msg, accepted msgs/s)"
