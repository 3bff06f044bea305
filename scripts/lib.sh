# Shared by bench.sh and bench-compare.sh: build, start surel on loopback with test accounts,
# run loadgen scenarios several times and report medians. Source it; don't run it.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUREL=${SUREL:-"$ROOT/target/release/surel"}      # override to compare builds
LOADGEN=${LOADGEN:-"$ROOT/target/release/loadgen"}

USERS=${USERS:-1000}          # accounts user0001..userNNNN@example.test, password "password"
MSGS=${MSGS:-20000}           # messages per delivery run
SIZE=${SIZE:-4096}            # message size in bytes
CONC=${CONC:-32}              # concurrent SMTP connections
FETCH_CONC=${FETCH_CONC:-50}  # concurrent POP3/IMAP sessions
SESSIONS=${SESSIONS:-3000}    # sessions per fetch run (each fetches one whole mailbox)
PER_USER=${PER_USER:-20}      # messages per mailbox for the fetch runs
RUNS=${RUNS:-3}               # runs per scenario; the median is reported
PORT_OFFSET=${PORT_OFFSET:-23000}  # below the ephemeral port range
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/surel-bench.XXXXXX")}
RESULTS="$WORK/results"
mkdir -p "$RESULTS"

build() {
    (cd "$ROOT" && cargo build --release --workspace --quiet)
}

# Starts surel with a fresh data directory; $1 = extra keys for the [auth] table (optional).
# All load comes from 127.0.0.1, so the per-address caps that protect a real server are lifted.
surel_start() {
    local data="$WORK/surel-data"
    rm -rf "$data"
    mkdir -p "$data"
    if [ ! -s "$WORK/users.txt" ]; then
        for i in $(seq 1 "$USERS"); do printf 'user%04d@example.test password\n' "$i"; done >"$WORK/users.txt"
    fi
    "$SUREL" user import "$WORK/users.txt" --data-dir "$data" >/dev/null
    cat >"$WORK/surel.toml" <<TOML
hostname = "bench.example.test"
data_dir = "$data"
listen_address = "127.0.0.1"
[limits]
max_connections = 100000
max_connections_per_ip = 100000
[auth]
max_pending_per_ip = 100000
${1:-}
TOML
    "$SUREL" serve --config "$WORK/surel.toml" --port-offset "$PORT_OFFSET" >"$WORK/surel.log" 2>&1 &
    SUREL_PID=$!
    for _ in $(seq 1 200); do
        [ -s "$data/ports" ] && return 0
        sleep 0.05
    done
    echo "surel did not start; log:" >&2
    cat "$WORK/surel.log" >&2
    return 1
}

surel_stop() {
    [ -n "${SUREL_PID:-}" ] || return 0
    kill -TERM "$SUREL_PID" 2>/dev/null || true
    wait "$SUREL_PID" 2>/dev/null || true
    SUREL_PID=
}

surel_port() { echo $(($1 + PORT_OFFSET)); }

# CPU seconds (user+system) used so far by process $1 and its threads.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# run NAME loadgen-args...: RUNS runs, JSON per run in $RESULTS/NAME.N.json. When SERVER_PID
# is set, the server's CPU seconds for each run go to $RESULTS/NAME.N.cpu.
run() {
    local name=$1 r before
    shift
    for r in $(seq 1 "$RUNS"); do
        before=0
        [ -n "${SERVER_PID:-}" ] && before=$(cpu_seconds "$SERVER_PID")
        "$LOADGEN" "$@" --quiet --json "$RESULTS/$name.$r.json" >"$RESULTS/$name.$r.txt" 2>&1 ||
            { echo "loadgen failed for $name (run $r):" >&2; tail -20 "$RESULTS/$name.$r.txt" >&2; return 1; }
        if [ -n "${SERVER_PID:-}" ]; then
            awk -v a="$(cpu_seconds "$SERVER_PID")" -v b="$before" 'BEGIN {print a - b}' >"$RESULTS/$name.$r.cpu"
        fi
    done
}

# Prints one row per scenario: median messages/s, MB/s, p50/p99 latency, client CPU.
report() {
    python3 - "$RESULTS" "$@" <<'PY'
import json, statistics, sys, glob, os
results, names = sys.argv[1], sys.argv[2:]
print(f"{'scenario':<28}{'msgs/s':>10}{'MB/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'client CPU':>12}{'server CPU/msg':>16}")
for name in names:
    runs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(results, f"{name}.*.json")))]
    if not runs:
        continue
    med = lambda k: statistics.median(r[k] for r in runs)
    lat = lambda k: statistics.median(r["latency"][k] for r in runs) / 1000
    errs = sum(sum(r["errors"].values()) for r in runs)
    cpu = statistics.median(r["cpu"]["pct_of_one_core"] for r in runs)
    server = []
    for f, r in zip(sorted(glob.glob(os.path.join(results, f"{name}.*.json"))), runs):
        c = f[:-5] + ".cpu"
        if os.path.exists(c) and r["messages"]:
            server.append(float(open(c).read()) / r["messages"] * 1e6)
    per_msg = f"{statistics.median(server):.0f} µs" if server else "-"
    print(f"{name:<28}{med('messages_per_s'):>10.0f}{med('mb_per_s'):>9.1f}{lat('p50_us'):>9.1f}{lat('p99_us'):>9.1f}{errs:>8}{cpu:>11.0f}%{per_msg:>16}")
PY
}

# Median messages/s of a scenario (for ratios).
median_rate() {
    python3 - "$RESULTS" "$1" <<'PY'
import json, statistics, sys, glob, os
runs = [json.load(open(f)) for f in glob.glob(os.path.join(sys.argv[1], f"{sys.argv[2]}.*.json"))]
print(f"{statistics.median(r['messages_per_s'] for r in runs):.1f}" if runs else "nan")
PY
}
