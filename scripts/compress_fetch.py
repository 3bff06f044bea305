#!/usr/bin/env python3
"""FETCH loop for the COMPRESS=DEFLATE measurement (scripts/bench-compress.sh).

compress_fetch.py PORT USER PASSWORD KIND MB TLS COMPRESS [PID]

Logs in, APPENDs 20 messages of KIND (text: 48 KiB of prose; mixed: 16 KiB of prose and its
HTML twin plus a 32 KiB base64 attachment) once, then FETCHes 1:20 BODY.PEEK[] until MB
megabytes of message data have come back, reading the server's CPU time (utime+stime from
/proc/PID/stat) around the loop only. Prints one JSON line.
"""
import json, os, random, socket, ssl, sys, time, zlib, base64

port, user, password, kind, mb = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
use_tls, use_z = sys.argv[6] == "1", sys.argv[7] == "1"
pid = int(sys.argv[8]) if len(sys.argv) > 8 else None
HZ = os.sysconf("SC_CLK_TCK")
WORDS = ("the report meeting budget quarter team please find attached regards we will discuss next "
         "week project deadline customer invoice update thanks for your help with this and of to in "
         "is on that review draft schedule Monday Friday office numbers sales growth figures agenda "
         "minutes action items owner").split()
rng = random.Random(4978)

def prose(n):
    out, line = [], []
    size = 0
    while size < n:
        w = rng.choice(WORDS) + ("." if rng.random() < 0.09 else "")
        line.append(w)
        size += len(w) + 1
        if sum(len(x) + 1 for x in line) > 68:
            out.append(" ".join(line)); line = []
    out.append(" ".join(line))
    return "\r\n".join(out)

def message(i):
    head = ("From: Bob Example <bob@example.org>\r\nTo: Alice <alice@example.com>\r\n"
            f"Subject: Re: quarterly numbers ({i})\r\nDate: Tue, 14 Nov 2023 10:00:00 +0100\r\n"
            f"Message-ID: <{i}.{rng.getrandbits(48)}@example.org>\r\nMIME-Version: 1.0\r\n")
    if kind == "text":
        return head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + prose(48 * 1024) + "\r\n"
    body = prose(16 * 1024)
    html = "<html><body><p>" + body.replace("\r\n", "<br>\r\n") + "</p></body></html>"
    att = base64.encodebytes(rng.randbytes(32 * 1024)).decode().replace("\n", "\r\n")
    return (head + f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n'
            f"--b{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
            f"--b{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
            f'--b{i}\r\nContent-Type: application/pdf; name="f.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            f"{att}--b{i}--\r\n")

sock = socket.create_connection(("127.0.0.1", port))
if use_tls:
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    sock = ctx.wrap_socket(sock)
comp = decomp = None
wire = plain = 0
buf = b""

def send(data):
    if comp:
        data = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    sock.sendall(data)

def until(end):
    """Reads until the plain stream ends with `end`; returns the octets it took."""
    global buf, wire, plain
    got = 0
    while not buf.endswith(end):
        raw = sock.recv(1 << 18)
        if not raw:
            raise SystemExit("server closed: " + repr(buf[-200:]))
        wire += len(raw)
        data = decomp.decompress(raw) if decomp else raw
        plain += len(data); got += len(data)
        buf = (buf + data)[-256:]
    buf = b""
    return got

until(b"\r\n")
send(f'l LOGIN {user} "{password}"\r\n'.encode()); until(b"] Logged in\r\n")
if use_z:
    send(b"z COMPRESS DEFLATE\r\n"); until(b"z OK DEFLATE active\r\n")
    comp = zlib.compressobj(6, zlib.DEFLATED, -15); decomp = zlib.decompressobj(-15)
send(b"s SELECT INBOX\r\n"); until(b"s OK [READ-WRITE] SELECT completed\r\n")
msgs = [message(i).encode() for i in range(20)]
size = sum(len(m) for m in msgs)
# Mailbox filled once per account (the first run); later runs find it full.
send(b"c0 SEARCH ALL\r\n")
raw_before = plain
until(b"c0 OK SEARCH completed\r\n")
if plain - raw_before < 40:
    for i, m in enumerate(msgs):
        send(f"a{i} APPEND INBOX {{{len(m)}+}}\r\n".encode() + m + b"\r\n")
        until(b"APPEND completed\r\n")
def cpu():
    if pid is None:
        return 0.0
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ
wire0, plain0, cpu0, t0 = wire, plain, cpu(), time.monotonic()
k = 0
while plain - plain0 < mb * 1e6:
    k += 1
    send(f"f{k} FETCH 1:20 BODY.PEEK[]\r\n".encode())
    until(f"f{k} OK FETCH completed\r\n".encode())
cpu1, t1 = cpu(), time.monotonic()
send(b"q LOGOUT\r\n"); until(b"q OK LOGOUT completed\r\n")
mbytes = (plain - plain0) / 1e6
print(json.dumps({"kind": kind, "tls": use_tls, "compress": use_z, "mb_plain": round(mbytes, 1),
                  "mb_wire": round((wire - wire0) / 1e6, 1), "ratio": round((plain - plain0) / (wire - wire0), 2),
                  "server_cpu_s": round(cpu1 - cpu0, 2), "server_cpu_ms_per_mb": round((cpu1 - cpu0) * 1000 / mbytes, 2),
                  "seconds": round(t1 - t0, 2), "message_bytes": size}))
