#!/usr/bin/env bash
# COMPRESS=DEFLATE: server CPU per FETCHed MB with and without compression, and the ratio.
# One release server; per mail kind (text, mixed) and transport (TLS, clear text) a FETCH
# loop of MB megabytes without, then with, COMPRESS DEFLATE (scripts/compress_fetch.py reads
# the server's utime+stime around the loop). The layer alone: cargo bench --bench compress.
#
#   scripts/bench-compress.sh
#   MB=100 scripts/bench-compress.sh
set -euo pipefail
USERS=2
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MB=${MB:-300}
trap surel_stop EXIT
(cd "$ROOT" && cargo build --release --quiet --bin surel)
surel_start "allow_plaintext = true"
for kind in text mixed; do
    user=user000$([ "$kind" = text ] && echo 1 || echo 2)@example.test
    for tls in 1 0; do
        port=$(surel_port $([ "$tls" = 1 ] && echo 993 || echo 143))
        for z in 0 1; do
            python3 "$ROOT/scripts/compress_fetch.py" "$port" "$user" password "$kind" "$MB" "$tls" "$z" "$SUREL_PID"
        done
    done
done
