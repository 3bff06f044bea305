#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/: realistic sessions and records, most
taken from the unit tests. Run from anywhere; it replaces the seed files it names (files the
fuzzer added are kept)."""
import base64
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def b(s):
    return s.encode() if isinstance(s, str) else s


# ---- SMTP -------------------------------------------------------------------------------
PIPELINE = (b"EHLO client.example\r\nMAIL FROM:<sender@remote.example>\r\n"
            b"RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
            b"Subject: hi\r\n\r\n..leading dot\r\n...two\r\nbody\r\n.\r\nQUIT\r\n")
plain = base64.b64encode(b"\0alice\0secret")
SMTP = {
    "pipeline": (0x08, 0, PIPELINE),
    "pipeline-split": (0x08, 7, PIPELINE),
    "submission-auth-plain": (0x05, 3, b"EHLO c\r\nAUTH PLAIN " + plain +
        b"\r\nMAIL FROM:<alice@example.org> RET=HDRS ENVID=QQ+2B1\r\n"
        b"RCPT TO:<bob@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@remote.example\r\n"
        b"RCPT TO:<team@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n"),
    "auth-login": (0x15, 0, b"EHLO c\r\nAUTH LOGIN\r\n" + base64.b64encode(b"alice") + b"\r\n" +
        base64.b64encode(b"wrong") + b"\r\nAUTH LOGIN " + base64.b64encode(b"alice") + b"\r\n" +
        base64.b64encode(b"secret") + b"\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n" + plain + b"\r\n"),
    "bdat": (0x20, 0, b"EHLO c\r\nMAIL FROM:<a@remote.example> BODY=8BITMIME SMTPUTF8\r\n"
        b"RCPT TO:<alice@example.org>\r\nRCPT TO:<postmaster>\r\nBDAT 5\r\nhelloBDAT 8 LAST\r\n"
        b"\r\n.\r\nabcQUIT\r\n"),
    "bdat-then-data": (0x00, 2, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\n"
        b"BDAT 3\r\nabcDATA\r\nBDAT 0 LAST\r\nRSET\r\n"),
    "starttls": (0x08, 0, b"EHLO c\r\nSTARTTLS\r\nEHLO evil\r\nEHLO c\r\nSTARTTLS\r\nQUIT\r\n"),
    "smuggling": (0x00, 1, b"HELO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\n"
        b"DATA\r\na\n.\nMAIL FROM:<evil@x>\r\n\r.\r\nb\r\n.\r\nNOOP\r\nVRFY alice\r\nHELP\r\nQUIT\r\n"),
    "limits": (0x80, 5, b"EHLO c\r\nMAIL FROM:<a@remote.example> SIZE=100\r\n"
        b"RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<team@example.org>\r\n"
        b"RCPT TO:<alice@example.org>\r\nRCPT TO:<x@remote.example>\r\nDATA\r\n" + b"x" * 60 +
        b"\r\n.\r\nMAIL FROM:<a@remote.example> SIZE=999999\r\n" + b"NOOP " + b"y" * 100 +
        b"\r\nbare\nRSET\r\n"),
    "relay-fail": (0x61, 0, b"EHLO c\r\nMAIL FROM:<\"quoted local\"@[192.0.2.1]>\r\n"
        b"RCPT TO:<@hop.example,@b.example:x@remote.example>\r\nRCPT TO:<u@[IPv6:2001:db8::1]>\r\n"
        b"DATA\r\nm\r\n.\r\n"),
    "utf8": (0x00, 0, "EHLO c\r\nMAIL FROM:<jös@exämple.org> SMTPUTF8\r\n"
        "RCPT TO:<alice@example.org>\r\nDATA\r\nSubject: é\r\n\r\nü\r\n.\r\n".encode()),
}
for name, (flags, seed, data) in SMTP.items():
    put("smtp_session", name, bytes([flags, seed]) + data)

for i, line in enumerate(PIPELINE.split(b"\r\n")[:-1] + [
        b"MAIL FROM:<> SIZE=1000 BODY=7BIT RET=FULL ENVID=abc+2Bd AUTH=<>",
        b"RCPT TO:<postmaster> NOTIFY=NEVER", b"RCPT TO:<\"a b\\\"c\"@example.org> ORCPT=rfc822;a+40b",
        b"BDAT 18446744073709551615 LAST", b"AUTH PLAIN =", b"mail from:<a@[IPv6:::1]>",
        b"RCPT TO:<@a.example,@b.example:u@c.example>", b"EXPN list", b"STARTTLS", b"HELO [127.0.0.1]"]):
    put("smtp_command", "%02d" % i, line + b"\r\n")

DATA = [b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", b"..\r\n...\r\n.x\r\na.b\r\n ..\r\n.\r\n",
        b"body\n.\nMAIL FROM:<evil@x>\r\n\r.\r\n.\r\n", b"a\r\n..b\r\n.\rc\r\n\n.\n\r.\r\r\n...\r\n.x\r\n.\r\n",
        b".\r\n", b"0123456789\r\nmore\r\n.\r\nNOOP"]
for i, d in enumerate(DATA):
    put("smtp_data", "%02d" % i, bytes([i, 10 + i, 12]) + d)

# ---- POP3 -------------------------------------------------------------------------------
POP3 = {
    "transaction": (0x01, 0, b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\n"
        b"TOP 2 1\r\nTOP 1 0\r\nDELE 1\r\nLIST 1\r\nRETR 1\r\nRSET\r\nDELE 3\r\nUIDL 3\r\nNOOP\r\nQUIT\r\n"),
    "split": (0x01, 9, b"USER alice\r\nPASS secret\r\nRETR 2\r\nDELE 2\r\nDELE 2\r\nQUIT\r\n"),
    "sasl": (0x04, 0, b"AUTH\r\nAUTH PLAIN\r\n" + plain + b"\r\nQUIT\r\n"),
    "sasl-ir": (0x05, 0, b"AUTH PLAIN " + plain + b"\r\nSTAT\r\nQUIT\r\n"),
    "login": (0x01, 0, b"AUTH LOGIN\r\n" + base64.b64encode(b"alice") + b"\r\n" +
        base64.b64encode(b"secret") + b"\r\nLIST 9\r\nQUIT\r\n"),
    "stls": (0x02, 0, b"CAPA\r\nUSER a\r\nSTLS\r\nUSER x\r\nCAPA\r\n"),
    "errors": (0x85, 3, b"UTF8\r\nUSER alice\r\nPASS nope\r\nAUTH CRAM-MD5\r\nRETR 1\r\n" + b"X" * 50 +
        b"\r\nAUTH PLAIN\r\n!!!\r\nUSER bob\r\nPASS secret\r\n"),
    "in-use": (0x09, 0, b"USER alice\r\nPASS secret\r\nQUIT\r\n"),
}
for name, (flags, seed, data) in POP3.items():
    put("pop3_session", name, bytes([flags, seed]) + data)

# ---- IMAP -------------------------------------------------------------------------------
IMAP = {
    "select-fetch": (0x01, 0, b"a LOGIN alice pw\r\nb SELECT INBOX\r\nc FETCH 1:* (UID FLAGS ENVELOPE)\r\n"
        b"d FETCH 2 (BODYSTRUCTURE BODY.PEEK[1.MIME] BODY[2.TEXT]<0.10> BINARY.PEEK[1] BINARY.SIZE[1])\r\n"
        b"e STORE 1,3 +FLAGS (\\Flagged $Work)\r\nf UID STORE 3 -FLAGS.SILENT (\\Flagged)\r\n"
        b"g SEARCH FLAGGED\r\nh UID SEARCH KEYWORD $work SUBJECT three\r\n"
        b"i SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN\r\nj SEARCH BODY WORLD NOT SEEN\r\n"
        b"k FETCH 1 (RFC822.HEADER RFC822 INTERNALDATE RFC822.SIZE)\r\nl LOGOUT\r\n"),
    "mailboxes": (0x01, 5, b"a LOGIN alice pw\r\na CREATE Work\r\nb CREATE Work/Projects\r\n"
        b"c CREATE Work\r\nd SUBSCRIBE Work/Projects\r\ne LIST \"\" *\r\nf LSUB \"\" *\r\n"
        b"g LIST (SUBSCRIBED) \"\" Work* RETURN (STATUS (MESSAGES) CHILDREN)\r\n"
        b"h RENAME Work/Projects Work/Done\r\ni STATUS INBOX (MESSAGES UNSEEN UIDNEXT SIZE HIGHESTMODSEQ)\r\n"
        b"j NAMESPACE\r\nk LIST \"\" Entw&APw-rfe\r\nm DELETE Work/Done\r\nn DELETE INBOX\r\n"),
    "copy-move-expunge": (0x01, 0, b"1 LOGIN alice pw\r\n2 ENABLE QRESYNC\r\n3 SELECT INBOX\r\n"
        b"4 CREATE Archive/2023\r\n5 COPY 1 Archive/2023\r\n6 UID MOVE 2 Archive/2023\r\n"
        b"7 STORE 1 +FLAGS (\\Deleted)\r\n8 EXPUNGE\r\n9 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n"
        b"10 STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Flagged)\r\n11 SEARCH MODSEQ 1\r\n"
        b"12 EXAMINE Archive/2023\r\n13 CLOSE\r\n14 UNSELECT\r\n15 CHECK\r\n"),
    "append-literals": (0x01, 11, b"a LOGIN {5}\r\nalice {2}\r\npw\r\nb APPEND INBOX (\\Seen) {14}\r\n"
        b"Subject: x\r\n\r\n\r\nc APPEND Sent (\\Seen) {3+}\r\none {3+}\r\ntwo () {5+}\r\nthree\r\n"
        b"d APPEND INBOX ~{5}\r\na\0b\r\n\r\ne APPEND INBOX {999999999}\r\nf SELECT INBOX\r\n"
        b"g FETCH * BODY.PEEK[]\r\n"),
    "auth-idle": (0x03, 0, b"a CAPABILITY\r\nb AUTHENTICATE PLAIN\r\n" + base64.b64encode(b"\0alice\0pw") +
        b"\r\nc SELECT INBOX\r\nd IDLE\r\nDONE\r\ne IDLE\r\nnope\r\nf ID (\"name\" \"x\")\r\ng NOOP\r\n"),
    "auth-login": (0x01, 0, b"a AUTHENTICATE LOGIN\r\n" + base64.b64encode(b"alice") + b"\r\n" +
        base64.b64encode(b"pw") + b"\r\nb ENABLE IMAP4rev2\r\nc SELECT INBOX (CONDSTORE)\r\nd UID SEARCH ALL\r\n"),
    "starttls": (0x04, 0, b"a CAPABILITY\r\nb LOGIN alice pw\r\nc STARTTLS\r\nd LOGIN alice pw\r\n"),
    "errors": (0x09, 3, b"a LOGIN alice wrong\r\nb LOGIN alice pw\r\nc SELECT INBOX\r\nd FETCH 1 (FLAGS\r\n"
        b"e SEARCH (OR SEEN\r\nf FETCH 1 BODY[1.2.3.4.5]\r\ng SEARCH CHARSET KOI8-R ALL\r\n"
        b"h FETCH 9 FLAGS\r\n* NOOP\r\n"),
}
for name, (flags, seed, data) in IMAP.items():
    put("imap_session", name, bytes([flags, seed]) + data)
    put("imap_reader", name, bytes([0x36, seed]) + data)
put("imap_reader", "line-mode", bytes([0x31, 0]) + b"DONE\r\n" + base64.b64encode(b"\0u\0p") + b"\r\n*\r\n")

# ---- SASL -------------------------------------------------------------------------------
for i, s in enumerate([plain, base64.b64encode(b"alice"), b"=", b"AGFsaWNlAHNlY3JldA", b"QQ==",
                       b"\0alice\0secret", b"admin\0alice\0secret", b"\0\0", b"QR==", b"Zm9v YmFy"]):
    put("sasl", "%02d" % i, s)

# ---- Store records ----------------------------------------------------------------------
def s32(v): return struct.pack("<I", v)
def s64(v): return struct.pack("<Q", v)
def st(v): v = b(v); return s32(len(v)) + v
def flags(sys_, kws): return bytes([sys_]) + struct.pack("<H", len(kws)) + b"".join(st(k) for k in kws)

RECORDS = {
    1: st("alice@example.org") + s64(7) + st("Archive/2024") + s32(1700000000) + bytes([5, 1]),
    2: st("a") + s64(3),
    3: st("a") + s64(3) + st("New/Name"),
    4: st("a") + s64(3),
    5: st("a") + s64(3),
    6: st("a") + s64(1) + s32(42) + s64(9) + struct.pack("<q", 1700000000) + flags(5, ["$Work"]) +
       s32(22) + b"Subject: x\r\n\r\nhello\r\n",
    7: st("a") + s64(1) + s32(42) + flags(1, ["$a", "$b"]) + s64(10),
    8: st("a") + s64(1) + s32(42) + s64(11),
}
for kind, payload in RECORDS.items():
    put("store_records", "record-%d" % kind, bytes([0, kind]) + payload)
status = bytes([1]) + s32(2) + struct.pack("<q", 1700000600) + st("451 4.3.0 try later") + bytes([0])
queue_msg = (st("QID1") + struct.pack("<q", 1700000000) + bytes([0]) + st("alice@example.org") + bytes([2]) +
             bytes([1]) + st("env+2B1") + bytes([0, 1]) + s32(2) +
             st("bob@remote.example") + bytes([1]) + st("rfc822;bob@remote.example") + bytes([6]) + status +
             st("carol@remote.example") + bytes([0]) + bytes([0]) + status + s32(9) + b"Subject:\r\n")
put("store_records", "queue-message", bytes([1, 1]) + queue_msg)
put("store_records", "queue-update", bytes([1, 2]) + st("QID1") + bytes([1, 0]) + s32(1) + s32(0) + status)
mailbox = (s64(1) + st("INBOX") + bytes([0, 1]) + s32(1700000000) + s32(3) + s64(5) + s32(1) +
           s32(1) + s32(22) + struct.pack("<q", 1700000000) + flags(1, ["$Work"]) + s64(4) + bytes([1]) +
           s32(0) + s64(9) + s32(1) + s32(2) + s64(5))
cp_body = s32(0) + s64(4096) + s64(2) + s32(1700000000) + s32(1) + st("alice") + s32(1) + mailbox
put("store_records", "checkpoint", bytes([2, 0]) + cp_body)

# ---- Config -----------------------------------------------------------------------------
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "default-config.toml"), "rb") as f:
    put("config", "default", f.read())
for i, c in enumerate([
        b"[ports]\nsmtp = 2525\n[limits]\nmax_recipients = 7\n",
        b"hostname = \"x\"\n[ports]\nsmtpp = 1\n",
        b"a = 1\nb = = 2\n",
        b"[relay]\nallowed_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nsmarthost = \"smtp.example.net:587\"\n"
        b"[relay.routes]\n\"example.net\" = \"127.0.0.1:2525\"\n"
        b"\"secure.example\" = { host = \"mx.secure.example\", tls = \"verify\" }\n",
        b"[aliases]\n\"sales@example.org\" = [\"alice@example.org\", \"bob@example.org\"]\n",
        "hostname = \"mx.ex\u00e4mple\"\n[store]\nfsync = false\n".encode()]):
    put("config", "%02d" % i, c)

# ---- Relay replies and DSN fields -------------------------------------------------------
for i, (limits, seed, data) in enumerate([
        (0xff, 0, b"220 mx.example.net ESMTP\r\n250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
                  b"250-8BITMIME\r\n250 STARTTLS\r\n250 2.1.0 Ok\r\n550 5.1.1 <x@y>: User unknown\r\n"
                  b"451-4.3.0 try\r\n451-4.3.0 again\r\n451 4.3.0 later\r\n354 go\r\n221 bye\n"),
        (0x40, 3, b"250-a\r\n250 b\r\n250\r\n220-\xe9t\xe9\r\n220 ok\r\n"),
        (0xff, 0, b"alice@example.org\0ENV+2B1\0bob@remote.example\0rfc822;b+40b\0mx.remote.example[192.0.2.1]\0"
                  b"550 5.1.1 user unknown\0Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n"),
        (0x10, 1, b"421 4.7.0 too busy\r\n999 nonsense\r\n")]):
    put("relay_reply", "%02d" % i, bytes([limits, seed]) + data)
