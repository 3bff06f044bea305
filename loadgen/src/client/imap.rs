//! IMAP client: tagged/untagged/continuation responses, `{N}` literals, LOGIN/SELECT/FETCH/
//! STORE/EXPUNGE/IDLE/LOGOUT, STARTTLS.

use std::net::SocketAddr;
use std::time::Duration;

use monoio_rustls::TlsConnector;
use rustls::pki_types::ServerName;

use super::conn::Conn;
use super::smtp::trim_crlf;
use super::{ClientError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `* ...`
    Untagged,
    /// `+ ...`
    Continuation,
    /// `tag OK|NO|BAD ...`
    Tagged(String),
}

/// One complete server response: its lines joined (literal markers `{N}` kept in place),
/// plus the literals' sizes and (optionally) contents.
#[derive(Debug, Clone)]
pub struct Response {
    pub kind: Kind,
    pub text: Vec<u8>,
    pub literal_sizes: Vec<usize>,
    pub literals: Vec<Vec<u8>>,
}

impl Response {
    /// The status word of a tagged response (`OK`, `NO`, `BAD`).
    pub fn status(&self) -> Option<&[u8]> {
        let t = self.text.splitn(3, |&b| b == b' ').nth(1)?;
        Some(t)
    }
    pub fn text_lossy(&self) -> String {
        String::from_utf8_lossy(&self.text).into_owned()
    }
}

/// If a line (CRLF included or not) ends with a literal announcement `{N}` or `{N+}`,
/// return N.
pub fn literal_suffix(line: &[u8]) -> Option<usize> {
    let l = trim_crlf(line);
    let l = l.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', l)?;
    let mut digits = &l[open + 1..];
    if let Some(d) = digits.strip_suffix(b"+") {
        digits = d;
    }
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Classify the first line of a response.
pub fn classify(line: &[u8]) -> Kind {
    if line.starts_with(b"* ") || line == b"*" {
        Kind::Untagged
    } else if line.starts_with(b"+") {
        Kind::Continuation
    } else {
        let end = memchr::memchr(b' ', line).unwrap_or(line.len());
        Kind::Tagged(String::from_utf8_lossy(&line[..end]).into_owned())
    }
}

/// `* 12 EXISTS` / `* 3 FETCH (...)` / `* 4 EXPUNGE` → (12, "EXISTS").
pub fn parse_untagged_num(text: &[u8]) -> Option<(u32, &[u8])> {
    let rest = text.strip_prefix(b"* ")?;
    let sp = memchr::memchr(b' ', rest)?;
    let n: u32 = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
    let kw = &rest[sp + 1..];
    let end = memchr::memchr(b' ', kw).unwrap_or(kw.len());
    Some((n, &kw[..end]))
}

/// The UID inside a FETCH response's data item list.
pub fn fetch_uid(text: &[u8]) -> Option<u32> {
    let open = memchr::memchr(b'(', text)?;
    let items = &text[open..];
    let mut i = 0;
    while let Some(p) = memchr::memmem::find(&items[i..], b"UID ") {
        let at = i + p;
        let prev = if at == 0 { b'(' } else { items[at - 1] };
        if prev == b'(' || prev == b' ' {
            let digits: Vec<u8> = items[at + 4..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            return std::str::from_utf8(&digits).ok()?.parse().ok();
        }
        i = at + 4;
    }
    None
}

/// Quote a string for IMAP (quoted-string with `\` escapes).
pub fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    None,
    StartTls,
    Implicit,
}

pub struct ImapClient {
    pub conn: Conn,
    next_tag: u32,
    /// Keep literal contents in responses (needed for verification; off for pure load).
    pub keep_literals: bool,
}

impl ImapClient {
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        security: Security,
        tls: Option<(&TlsConnector, ServerName<'static>)>,
    ) -> Result<ImapClient> {
        let conn = match (security, tls.as_ref()) {
            (Security::Implicit, Some((c, n))) => {
                Conn::connect_tls(addr, timeout, c, n.clone()).await?
            }
            (Security::Implicit, None) => {
                return Err(ClientError::Protocol("TLS requested without config".into()));
            }
            _ => Conn::connect(addr, timeout).await?,
        };
        let mut c = ImapClient {
            conn,
            next_tag: 1,
            keep_literals: false,
        };
        let g = c.read_response().await?;
        if g.kind != Kind::Untagged
            || !(g.text.starts_with(b"* OK") || g.text.starts_with(b"* PREAUTH"))
        {
            return Err(ClientError::Reply {
                code: "greeting".into(),
                text: g.text_lossy(),
            });
        }
        if security == Security::StartTls {
            let Some((connector, name)) = tls else {
                return Err(ClientError::Protocol(
                    "STARTTLS requested without TLS config".into(),
                ));
            };
            c.command("STARTTLS", |_| {}).await?;
            c.conn.start_tls(connector, name).await?;
        }
        Ok(c)
    }

    /// Read one full response, including any literals and the lines that follow them.
    pub async fn read_response(&mut self) -> Result<Response> {
        let r = self.conn.read_line().await?;
        let first = self.conn.buf(r);
        let kind = classify(first);
        let mut resp = Response {
            kind,
            text: Vec::with_capacity(first.len()),
            literal_sizes: vec![],
            literals: vec![],
        };

        resp.text.extend_from_slice(trim_crlf(first));
        let mut lit = literal_suffix(first);
        while let Some(n) = lit {
            let r = self.conn.read_exact(n).await?;
            resp.literal_sizes.push(n);
            if self.keep_literals {
                resp.literals.push(self.conn.buf(r).to_vec());
            }
            let r = self.conn.read_line().await?;
            let l = self.conn.buf(r);

            resp.text.extend_from_slice(trim_crlf(l));
            lit = literal_suffix(l);
        }
        Ok(resp)
    }

    /// Send `tag cmd`, pass every untagged response to `f`, return the tagged OK text.
    pub async fn command(&mut self, cmd: &str, mut f: impl FnMut(&Response)) -> Result<Response> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        self.conn
            .write_all(format!("{tag} {cmd}\r\n").into_bytes())
            .await
            .0?;
        loop {
            let r = self.read_response().await?;
            match &r.kind {
                Kind::Tagged(t) if *t == tag => {
                    return match r.status() {
                        Some(b"OK") => Ok(r),
                        Some(s) => Err(ClientError::Reply {
                            code: String::from_utf8_lossy(s).into_owned(),
                            text: r.text_lossy(),
                        }),
                        None => Err(ClientError::Protocol(r.text_lossy())),
                    };
                }
                Kind::Tagged(t) => {
                    return Err(ClientError::Protocol(format!("unexpected tag {t}")));
                }
                Kind::Continuation => {
                    return Err(ClientError::Protocol("unexpected continuation".into()));
                }
                Kind::Untagged => f(&r),
            }
        }
    }

    pub async fn login(&mut self, user: &str, pass: &str) -> Result<()> {
        self.command(&format!("LOGIN {} {}", quote(user), quote(pass)), |_| {})
            .await
            .map(|_| ())
    }

    /// SELECT a mailbox; returns the EXISTS count.
    pub async fn select(&mut self, mailbox: &str) -> Result<u32> {
        let mut exists = 0;
        self.command(&format!("SELECT {}", quote(mailbox)), |r| {
            if let Some((n, b"EXISTS")) = parse_untagged_num(&r.text) {
                exists = n;
            }
        })
        .await?;
        Ok(exists)
    }

    /// Run a FETCH-type command; `f` gets every FETCH response.
    pub async fn fetch(&mut self, cmd: &str, mut f: impl FnMut(&Response)) -> Result<()> {
        self.command(cmd, |r| {
            if let Some((_, kw)) = parse_untagged_num(&r.text)
                && kw.eq_ignore_ascii_case(b"FETCH")
            {
                f(r)
            }
        })
        .await
        .map(|_| ())
    }

    /// Enter IDLE; returns when the continuation is received.
    pub async fn idle_start(&mut self) -> Result<String> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        self.conn
            .write_all(format!("{tag} IDLE\r\n").into_bytes())
            .await
            .0?;
        loop {
            let r = self.read_response().await?;
            match r.kind {
                Kind::Continuation => return Ok(tag),
                Kind::Untagged => continue,
                Kind::Tagged(_) => {
                    return Err(ClientError::Reply {
                        code: "NO".into(),
                        text: r.text_lossy(),
                    });
                }
            }
        }
    }

    /// Leave IDLE (`DONE`) and wait for the tagged completion.
    pub async fn idle_done(&mut self, tag: &str) -> Result<()> {
        self.idle_done_with(tag, |_| {}).await
    }

    /// Leave IDLE, passing the untagged responses that arrive meanwhile to `f`.
    pub async fn idle_done_with(&mut self, tag: &str, mut f: impl FnMut(&Response)) -> Result<()> {
        self.conn.send(b"DONE\r\n").await?;
        loop {
            let r = self.read_response().await?;
            match &r.kind {
                Kind::Tagged(t) if t == tag => return Ok(()),
                Kind::Untagged => f(&r),
                _ => {}
            }
        }
    }

    pub async fn logout(&mut self) -> Result<()> {
        self.command("LOGOUT", |_| {}).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(
            literal_suffix(b"* 1 FETCH (UID 7 BODY[] {1234}\r\n"),
            Some(1234)
        );
        assert_eq!(literal_suffix(b"a1 LOGIN {5+}\r\n"), Some(5));
        assert_eq!(literal_suffix(b"* OK {x}\r\n"), None);
        assert_eq!(literal_suffix(b"* OK {}\r\n"), None);
        assert_eq!(literal_suffix(b"* OK done\r\n"), None);
        assert_eq!(literal_suffix(b"{0}"), Some(0));
    }

    #[test]
    fn classify_and_untagged() {
        assert_eq!(classify(b"* 3 EXISTS"), Kind::Untagged);
        assert_eq!(classify(b"+ idling"), Kind::Continuation);
        assert_eq!(classify(b"a12 OK done"), Kind::Tagged("a12".into()));
        assert_eq!(parse_untagged_num(b"* 3 EXISTS"), Some((3, &b"EXISTS"[..])));
        assert_eq!(
            parse_untagged_num(b"* 14 FETCH (UID 9 FLAGS ())"),
            Some((14, &b"FETCH"[..]))
        );
        assert_eq!(parse_untagged_num(b"* OK [UIDVALIDITY 1] x"), None);
        assert_eq!(
            fetch_uid(b"* 14 FETCH (FLAGS (\\Seen) UID 9 BODY[] {3}"),
            Some(9)
        );
        assert_eq!(fetch_uid(b"* 14 FETCH (UID 42)"), Some(42));
        assert_eq!(fetch_uid(b"* 14 FETCH (XUID 4 FLAGS ())"), None);
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let r = Response {
            kind: Kind::Tagged("a1".into()),
            text: b"a1 NO [AUTH] bad".to_vec(),
            literal_sizes: vec![],
            literals: vec![],
        };
        assert_eq!(r.status(), Some(&b"NO"[..]));
    }

    /// Feed canned server bytes through a real socket and parse them with the client.
    #[test]
    fn fetch_with_literals_over_socket() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            s.write_all(b"* OK ready\r\n").unwrap();
            let _ = s.read(&mut buf).unwrap(); // a1 SELECT
            s.write_all(b"* FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\na1 OK [READ-WRITE] done\r\n").unwrap();
            let _ = s.read(&mut buf).unwrap(); // a2 UID FETCH
            // literal containing CRLF, a fake tag line and a '{3}' suffix; split writes
            s.write_all(b"* 1 FETCH (UID 4 BODY[] {21}\r\nab\r\na2 OK fake\r\nxy{3}")
                .unwrap();
            s.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            s.write_all(
                b")\r\n* 2 FETCH (UID 5 BODY[] {0}\r\n FLAGS (\\Seen))\r\na2 OK fetched\r\n",
            )
            .unwrap();
            let _ = s.read(&mut buf);
        });
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut c = ImapClient::connect(addr, Duration::from_secs(5), Security::None, None)
                .await
                .unwrap();
            c.keep_literals = true;
            assert_eq!(c.select("INBOX").await.unwrap(), 2);
            let mut got = vec![];
            c.fetch("UID FETCH 1:* (BODY.PEEK[])", |r| {
                got.push((
                    fetch_uid(&r.text),
                    r.literals.clone(),
                    r.literal_sizes.clone(),
                ))
            })
            .await
            .unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(
                got[0],
                (
                    Some(4),
                    vec![b"ab\r\na2 OK fake\r\nxy{3}".to_vec()],
                    vec![21]
                )
            );
            assert_eq!(got[1], (Some(5), vec![vec![]], vec![0]));
        });
        server.join().unwrap();
    }
}
