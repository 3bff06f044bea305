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
# Memory: N logged-in clear-text connections, server RSS before and after each sends COMPRESS
# (and one NOOP through it, so both directions have run).
python3 - "$(surel_port 143)" "$SUREL_PID" "${CONNS:-200}" <<'PY'
import socket, sys, zlib
port, pid, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rss():
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")).split()[1])
def until(s, end):
    buf = b""
    while not buf.endswith(end):
        buf += s.recv(65536)
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port)); until(s, b"\r\n")
    s.sendall(b'l LOGIN user0001@example.test "password"\r\n'); until(s, b"] Logged in\r\n")
    conns.append(s)
before = rss()
for s in conns:
    s.sendall(b"z COMPRESS DEFLATE\r\n"); until(s, b"z OK DEFLATE active\r\n")
    c, d = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)
    s.sendall(c.compress(b"n NOOP\r\n") + c.flush(zlib.Z_SYNC_FLUSH))
    buf = b""
    while not buf.endswith(b"n OK NOOP completed\r\n"):
        buf += d.decompress(s.recv(65536))
after = rss()
print(f'{{"connections": {n}, "rss_kib_before": {before}, "rss_kib_after": {after}, "kib_per_compressed_connection": {(after - before) / n:.0f}}}')
PY
