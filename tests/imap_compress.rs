//! IMAP COMPRESS=DEFLATE (RFC 4978) over real sockets: login over TLS, COMPRESS, then a whole
//! session through the client's own deflate/inflate pair; compressed bytes pipelined right
//! after the command; a decompression bomb; a listener with the offer turned off.

mod common;

use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@example.test";

/// A multi-KiB message: mail text with some variety, so it compresses like mail does.
fn message(len: usize) -> String {
    let mut m = String::from(
        "From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\n\
         Subject: Quarterly figures\r\nMessage-ID: <q3@example.test>\r\n\r\n",
    );
    let mut i = 0;
    while m.len() < len {
        m.push_str(&format!(
            "Line {i}: region {} reported {} orders worth {}.{:02} EUR this week.\r\n",
            i % 7,
            i * 37 % 1000,
            i * 1234 % 99_999,
            i % 100
        ));
        i += 1;
    }
    m
}

fn status_numbers(c: &mut Client, tag: &str) -> (u64, u64) {
    let untagged = ok(c, tag, "STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)");
    assert_eq!(untagged.len(), 1, "{untagged:?}");
    let nums: Vec<u64> = untagged[0]
        .trim_end_matches(')')
        .split(' ')
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

fn capability_line(c: &mut Client, tag: &str) -> String {
    let untagged = ok(c, tag, "CAPABILITY");
    assert_eq!(untagged.len(), 1, "{untagged:?}");
    untagged[0].clone()
}

#[test]
fn a_whole_session_over_tls_then_deflate() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = login_tls_as(&server, ALICE);
    let caps = capability_line(&mut c, "c1");
    assert!(caps.ends_with(" COMPRESS=DEFLATE"), "{caps}");
    assert_eq!(caps.matches("COMPRESS").count(), 1, "{caps}");

    assert_eq!(
        imap(&mut c, "z1", "COMPRESS DEFLATE"),
        (vec![], "z1 OK DEFLATE active".into())
    );
    c.start_deflate();
    assert_eq!(
        imap(&mut c, "z2", "COMPRESS DEFLATE"),
        (
            vec![],
            "z2 NO [COMPRESSIONACTIVE] DEFLATE active via COMPRESS".into()
        )
    );
    assert_eq!(
        imap(&mut c, "z3", "COMPRESS LZ4"),
        (vec![], "z3 BAD Unknown compression mechanism".into())
    );
    assert_eq!(capability_line(&mut c, "c2"), caps);

    // APPEND of a 48 KiB message: client-to-server literal through the inflater.
    let msg = message(48 * 1024);
    c.send(&format!("a1 APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()));
    let (untagged, status) = collect(&mut c, "a1");
    assert!(untagged.is_empty(), "{untagged:?}");
    let (validity, modseq) = status_numbers(&mut c, "s0");
    assert_eq!(
        status,
        format!("a1 OK [APPENDUID {validity} 1] APPEND completed")
    );

    let id = mailbox_id(&mut c, "s2", "INBOX");
    assert_eq!(
        ok(&mut c, "s1", "SELECT INBOX"),
        vec![
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)".to_string(),
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted".to_string(),
            "* 1 EXISTS".to_string(),
            "* 1 RECENT".to_string(),
            "* OK [UNSEEN 1] First unseen".to_string(),
            format!("* OK [UIDVALIDITY {validity}] UIDs valid"),
            "* OK [UIDNEXT 2] Predicted next UID".to_string(),
            format!("* OK [MAILBOXID ({id})] Ok"),
            format!("* OK [HIGHESTMODSEQ {modseq}] Highest"),
        ]
    );

    // FETCH of the whole message: the literal comes back byte for byte.
    let before = c.deflate_totals().unwrap();
    c.send("f1 FETCH 1 (UID RFC822.SIZE BODY.PEEK[])\r\n");
    let line = response_line(&mut c).unwrap();
    let expected = format!(
        "* 1 FETCH (UID 1 RFC822.SIZE {n} BODY[] {{{n}}}\r\n{msg})\r\n",
        n = msg.len()
    );
    assert!(line == expected.as_bytes(), "FETCH response differs");
    let (untagged, status) = collect(&mut c, "f1");
    assert!(untagged.is_empty(), "{untagged:?}");
    assert_eq!(status, "f1 OK FETCH completed");
    let after = c.deflate_totals().unwrap();
    let (wire, plain) = (after.0 - before.0, after.1 - before.1);
    assert!(
        wire * 3 < plain,
        "mail text is at least 3:1 on the wire: {wire} for {plain}"
    );

    // IDLE: an update pushed through the split stream's compressed write half.
    c.send("i1 IDLE\r\n");
    assert_eq!(c.line().as_deref(), Some("+ idling"));
    let mut other = login_tls_as(&server, ALICE);
    let small = "Subject: second\r\n\r\nhello\r\n";
    other.send(&format!(
        "o1 APPEND INBOX {{{}+}}\r\n{small}\r\n",
        small.len()
    ));
    let (_, status) = collect(&mut other, "o1");
    assert!(status.starts_with("o1 OK [APPENDUID"), "{status}");
    let deadline = Instant::now() + Duration::from_secs(10);
    assert_eq!(c.line().as_deref(), Some("* 2 EXISTS"));
    assert_eq!(c.line().as_deref(), Some("* 2 RECENT"));
    assert!(Instant::now() < deadline);
    // DONE and the next command in one compressed write: the command must not wait in the
    // inflater while the connection goes back to reading the socket.
    c.send("DONE\r\nn0 NOOP\r\n");
    assert_eq!(
        collect(&mut c, "i1"),
        (vec![], "i1 OK IDLE terminated".into())
    );
    assert_eq!(
        collect(&mut c, "n0"),
        (vec![], "n0 OK NOOP completed".into())
    );

    assert_eq!(
        ok(&mut c, "f2", "FETCH 2 (FLAGS BODY[])"),
        vec![format!(
            "* 2 FETCH (FLAGS (\\Seen \\Recent) BODY[] {{{}}}\r\n{small} MODSEQ ({}))",
            small.len(),
            // STATUS HIGHESTMODSEQ enabled CONDSTORE (RFC 7162 §3.1); the APPEND and \Seen
            // each took a MODSEQ.
            modseq + 2
        )]
    );
    assert_eq!(
        imap(&mut c, "n1", "NOOP"),
        (vec![], "n1 OK NOOP completed".into())
    );
    assert_eq!(
        imap(&mut c, "l1", "LOGOUT"),
        (
            vec!["* BYE mx.test logging out".to_string()],
            "l1 OK LOGOUT completed".into()
        )
    );
    assert!(c.line().is_none(), "closed after LOGOUT");
}

/// Raw DEFLATE of `data` with a sync flush, continuing `compress`'s stream.
fn deflate(compress: &mut flate2::Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1024);
    let mut pos = 0;
    loop {
        let before = compress.total_in();
        compress
            .compress_vec(&data[pos..], &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        pos += (compress.total_in() - before) as usize;
        if pos == data.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

#[test]
fn compressed_commands_pipelined_after_compress_are_not_lost() {
    // Also a level other than the default: the client cannot tell, it only has to inflate.
    let server = TestServer::start(&[ALICE], "[limits]\nimap_compress_level = 9\n");
    let mut c = login_tls_as(&server, ALICE);
    // The client does not wait for the OK: its next command, compressed, goes in the same
    // write, so the server reads it together with the COMPRESS line.
    let mut z = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut burst = b"p1 COMPRESS DEFLATE\r\n".to_vec();
    burst.extend(deflate(&mut z, b"p2 NOOP\r\np3 CAPA"));
    c.send_bytes(&burst);
    assert_eq!(c.line().as_deref(), Some("p1 OK DEFLATE active"));
    c.start_deflate_with(z);
    c.send("BILITY\r\n");
    assert_eq!(
        collect(&mut c, "p2"),
        (vec![], "p2 OK NOOP completed".into())
    );
    let (untagged, status) = collect(&mut c, "p3");
    assert_eq!(status, "p3 OK CAPABILITY completed");
    assert!(untagged.len() == 1 && untagged[0].ends_with(" COMPRESS=DEFLATE"));
}

#[test]
fn a_decompression_bomb_meets_the_line_limit_and_the_session_survives() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = login_tls_as(&server, ALICE);
    let rss_before = server_rss_kib(&server);
    assert_eq!(
        imap(&mut c, "z", "COMPRESS DEFLATE"),
        (vec![], "z OK DEFLATE active".into())
    );
    let mut z = flate2::Compress::new(flate2::Compression::best(), false);
    // 64 MiB of line without an end, in about 64 KiB on the wire.
    let mut bomb = deflate(&mut z, b"b1 ");
    for _ in 0..64 {
        bomb.extend(deflate(&mut z, &vec![b'A'; 1 << 20]));
    }
    assert!(bomb.len() < 256 * 1024, "{}", bomb.len());
    c.send_bytes(&bomb);
    c.start_deflate_with(z);
    c.send("\r\nb2 NOOP\r\n");
    assert_eq!(c.line().as_deref(), Some("b1 BAD Line too long"));
    assert_eq!(
        collect(&mut c, "b2"),
        (vec![], "b2 OK NOOP completed".into())
    );
    // The server process did not buffer the line: its resident memory stays far below it.
    let rss = server_rss_kib(&server);
    assert!(
        rss < rss_before + 16 * 1024,
        "server RSS {rss_before} KiB, then {rss} KiB after a 64 MiB line"
    );
}

#[test]
fn an_oversized_literal_over_compression_closes_instead_of_inflating_it() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = login_tls_as(&server, ALICE);
    assert_eq!(
        imap(&mut c, "z", "COMPRESS DEFLATE"),
        (vec![], "z OK DEFLATE active".into())
    );
    // A literal the server must refuse, sent anyway (LITERAL+), its bytes inflating 1000:1:
    // skipping them would keep the server inflating for as long as the client likes.
    let mut z = flate2::Compress::new(flate2::Compression::best(), false);
    let mut burst = deflate(&mut z, b"big APPEND INBOX {9999999999999999999+}\r\n");
    for _ in 0..16 {
        burst.extend(deflate(&mut z, &vec![0u8; 1 << 20]));
    }
    c.send_bytes(&burst);
    c.start_deflate_with(z);
    assert_eq!(
        c.line().as_deref(),
        Some("big NO [TOOBIG] Literal of 9999999999999999999 octets is too big")
    );
    assert_eq!(c.line().as_deref(), Some("* BYE Literal too big to skip"));
    assert!(c.line().is_none(), "closed");
    // Others are served.
    let mut other = login_tls_as(&server, ALICE);
    ok(&mut other, "n", "NOOP");
}

fn server_rss_kib(server: &TestServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

#[test]
fn a_listener_without_the_offer_refuses_compress() {
    let server = TestServer::start(&[ALICE], "[limits]\nimap_compress = false\n");
    let mut c = login_tls_as(&server, ALICE);
    let caps = capability_line(&mut c, "c");
    assert!(!caps.contains("COMPRESS"), "{caps}");
    assert_eq!(
        imap(&mut c, "z", "COMPRESS DEFLATE"),
        (vec![], "z BAD Command not supported".into())
    );
    assert_eq!(
        imap(&mut c, "n", "NOOP"),
        (vec![], "n OK NOOP completed".into())
    );
}

#[test]
fn compress_before_login_is_refused_in_clear_text_too() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = Client::connect(server.addr("imap"));
    let greeting = c.line().unwrap();
    assert!(!greeting.contains("COMPRESS"), "{greeting}");
    assert_eq!(
        imap(&mut c, "z", "COMPRESS DEFLATE"),
        (vec![], "z BAD Not authenticated".into())
    );
}

/// Interoperability: Python's imaplib (which has no COMPRESS) with zlib's raw DEFLATE
/// (`wbits=-15`) swapped in under it after STARTTLS, login and COMPRESS.
#[test]
fn python_imaplib_with_zlib_after_starttls() {
    let server = TestServer::start(&[ALICE], "");
    let script = r#"
import imaplib, smtplib, ssl, sys, zlib
smtp_port, imap_port, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = "".join("Line %d: the quarterly report for region %d is attached.\r\n" % (i, i % 7) for i in range(600))
with smtplib.SMTP("127.0.0.1", smtp_port) as s:
    s.sendmail("py@r.test", ["alice@example.test"], "Subject: zlib\r\n\r\n" + body)

class Compressing(imaplib.IMAP4):
    z = False
    def compress(self):
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        assert typ == "OK" and data == [b"DEFLATE active"], (typ, data)
        self.c = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.d = zlib.decompressobj(-15)
        self.buf, self.wire, self.plain, self.z = b"", 0, 0, True
    def send(self, data):
        if self.z:
            data = self.c.compress(data) + self.c.flush(zlib.Z_SYNC_FLUSH)
        super().send(data)
    def _fill(self):
        raw = self.sock.recv(65536)
        if not raw:
            raise EOFError("server closed")
        out = self.d.decompress(raw)
        self.wire += len(raw); self.plain += len(out); self.buf += out
    def read(self, size):
        if not self.z:
            return super().read(size)
        while len(self.buf) < size:
            self._fill()
        out, self.buf = self.buf[:size], self.buf[size:]
        return out
    def readline(self):
        if not self.z:
            return super().readline()
        while b"\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

imaplib.Commands["COMPRESS"] = ("AUTH", "SELECTED")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = Compressing("127.0.0.1", imap_port)
m.starttls(ctx)
m.login("alice@example.test", password)
assert "COMPRESS=DEFLATE" not in m.capabilities, m.capabilities
typ, data = m.capability()
assert data[0].endswith(b" COMPRESS=DEFLATE"), data
m.compress()
typ, data = m._simple_command("COMPRESS", "DEFLATE")
assert typ == "NO", (typ, data)
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"1", data
typ, data = m.fetch("1", "(BODY[TEXT])")
assert typ == "OK" and data[0][1] == body.encode(), data[0][0]
assert m.wire * 3 < m.plain, (m.wire, m.plain)
msg = "Subject: appended\r\n\r\n" + body[:5000]
typ, data = m.append("INBOX", None, None, msg.encode())
assert typ == "OK", data
typ, data = m.fetch("2", "(RFC822)")
assert data[0][1] == msg.encode(), data
assert m.noop()[0] == "OK"
assert m.logout()[0] == "BYE"
print("python-ok", m.wire, m.plain)
"#;
    run_python_client(script, &server, "imap");
}
