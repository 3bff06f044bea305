//! An IMAP client for the tests: tagged commands, untagged responses with literals inlined.

use super::*;

/// Reads one response line, with any literals it announces inlined.
pub fn response_line(c: &mut Client) -> Option<Vec<u8>> {
    let mut line = c.raw_until(b"\r\n");
    if line.is_empty() {
        return None;
    }
    loop {
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let Some(open) = text.strip_suffix('}').and_then(|t| t.rfind('{')) else {
            return Some(line);
        };
        let n: usize = text[open + 1..text.len() - 1]
            .trim_end_matches('+')
            .parse()
            .ok()?;
        line.extend(c.read_exact_bytes(n));
        line.extend(c.raw_until(b"\r\n"));
    }
}

/// Sends a tagged command; returns (untagged lines, tagged status line).
pub fn imap(c: &mut Client, tag: &str, command: &str) -> (Vec<String>, String) {
    c.send(&format!("{tag} {command}\r\n"));
    collect(c, tag)
}

pub fn collect(c: &mut Client, tag: &str) -> (Vec<String>, String) {
    let mut untagged = Vec::new();
    loop {
        let line = response_line(c).expect("response");
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.starts_with(&format!("{tag} ")) {
            return (untagged, text);
        }
        untagged.push(text);
    }
}

pub fn ok(c: &mut Client, tag: &str, command: &str) -> Vec<String> {
    let (untagged, status) = imap(c, tag, command);
    assert!(
        status.starts_with(&format!("{tag} OK")),
        "{command} -> {status} {untagged:?}"
    );
    untagged
}

/// Logs `user` in over implicit TLS.
pub fn login_tls_as(server: &TestServer, user: &str) -> Client {
    let mut c = Client::connect_tls(server.addr("imaps"));
    assert!(c.line().unwrap().starts_with("* OK"));
    ok(&mut c, "l", &format!("LOGIN {user} \"{PASSWORD}\""));
    c
}

/// APPENDs `message` with a synchronizing literal; `target` is the mailbox and any flags or
/// date (`INBOX (\\Seen) "date"`). Returns the tagged OK line.
pub fn append_ok(c: &mut Client, tag: &str, target: &str, message: &str) -> String {
    c.send(&format!("{tag} APPEND {target} {{{}}}\r\n", message.len()));
    let go_ahead = c.line().expect("continuation");
    assert!(go_ahead.starts_with('+'), "{go_ahead}");
    c.send(message);
    c.send("\r\n");
    let (_, status) = collect(c, tag);
    assert!(status.starts_with(&format!("{tag} OK")), "{status}");
    status
}

/// The MAILBOXID (RFC 8474) of a mailbox, from `STATUS name (MAILBOXID)`.
pub fn mailbox_id(c: &mut Client, tag: &str, mailbox: &str) -> String {
    let untagged = ok(c, tag, &format!("STATUS {mailbox} (MAILBOXID)"));
    assert_eq!(untagged.len(), 1, "{untagged:?}");
    untagged[0]
        .split("(MAILBOXID (")
        .nth(1)
        .and_then(|r| r.strip_suffix("))"))
        .unwrap_or_else(|| panic!("no MAILBOXID in {untagged:?}"))
        .to_string()
}
