//! Hostile clients over real sockets: garbage, NULs, 8-bit bytes, endless lines, abrupt
//! disconnects in every protocol. The server must keep serving and lose nothing stored.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use surel::store::MailStore;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| match self.next() % 10 {
                0 => b'\r',
                1 => b'\n',
                2 => 0,
                3 => b'{',
                4 => (self.next() % 256) as u8,
                _ => b"ABC XYZ.:<>@()\"*0123456789{}+"[(self.next() % 29) as usize],
            })
            .collect()
    }
}

fn assault(addr: std::net::SocketAddr, noise: &mut Noise) {
    for round in 0..12 {
        let Ok(mut s) = TcpStream::connect(addr) else {
            continue;
        };
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let len = match round % 4 {
            0 => 64,
            1 => 2_000,
            2 => 70_000, // longer than any line limit and the read buffer
            _ => (noise.next() % 5_000) as usize,
        };
        let _ = s.write_all(&noise.bytes(len));
        let mut sink = [0u8; 4096];
        // Read a little of what the server says, then hang up mid-conversation.
        let _ = s.read(&mut sink);
    }
}

#[test]
fn garbage_on_every_port_leaves_the_server_serving() {
    let mut server = TestServer::start(&["alice@example.test"], "[limits]\nmax_errors = 5\n");
    let mut c = smtp_session(&server);
    let (code, _) = smtp_send(
        &mut c,
        "s@r.test",
        &["alice@example.test"],
        "Subject: keep\r\n\r\nkept\r\n",
    );
    assert_eq!(code, 250);
    c.expect("QUIT", 221);

    let mut noise = Noise(0x5eed_1234_abcd_ef01);
    for protocol in ["smtp", "submission", "pop3", "imap"] {
        assault(server.addr(protocol), &mut noise);
    }
    // TLS ports get garbage instead of a handshake.
    for protocol in ["submissions", "pop3s", "imaps"] {
        assault(server.addr(protocol), &mut noise);
    }

    // Still serving every protocol.
    let mut c = smtp_session(&server);
    let (code, _) = smtp_send(
        &mut c,
        "s@r.test",
        &["alice@example.test"],
        "Subject: after\r\n\r\nafter\r\n",
    );
    assert_eq!(code, 250);
    c.expect("QUIT", 221);
    let mut p = Client::connect_tls(server.addr("pop3s"));
    assert!(p.line().unwrap().starts_with("+OK"));
    let mut i = Client::connect_tls(server.addr("imaps"));
    assert!(i.line().unwrap().starts_with("* OK"));

    server.stop();
    let store = server.open_store();
    let snap = store.snapshot("alice@example.test", "INBOX").unwrap();
    assert_eq!(
        snap.messages.len(),
        2,
        "exactly the two real messages are stored"
    );
}
