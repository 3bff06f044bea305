//! SMTP client: multi-line reply parsing, EHLO capabilities, pipelined transactions, DATA
//! dot-stuffing, STARTTLS and AUTH PLAIN.

use std::net::SocketAddr;
use std::time::Duration;

use monoio_rustls::TlsConnector;
use rustls::pki_types::ServerName;

use super::conn::Conn;
use super::{ClientError, Result};

/// One SMTP reply (possibly multi-line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Text of each line, without the code, separator and CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn text(&self) -> String {
        self.lines.join(" / ")
    }
    fn err(&self) -> ClientError {
        ClientError::Reply {
            code: self.code.to_string(),
            text: self.text(),
        }
    }
}

/// Parse one reply line: `(code, is_last_line, text)`. `250-foo` is a continuation,
/// `250 foo` or a bare `250` the last line.
pub fn parse_reply_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    let line = trim_crlf(line);
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code =
        (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    match line.get(3) {
        None => Some((code, true, &[])),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

pub fn trim_crlf(line: &[u8]) -> &[u8] {
    let mut l = line;
    if let [rest @ .., b'\n'] = l {
        l = rest;
    }
    if let [rest @ .., b'\r'] = l {
        l = rest;
    }
    l
}

/// Incrementally assembles a multi-line reply from lines.
#[derive(Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Feed one line; returns the reply once its last line has been seen.
    pub fn push(&mut self, line: &[u8]) -> Result<Option<Reply>> {
        let (code, last, text) = parse_reply_line(line).ok_or_else(|| {
            ClientError::Protocol(format!(
                "bad SMTP reply line {:?}",
                String::from_utf8_lossy(line)
            ))
        })?;
        if let Some(c) = self.code
            && c != code
        {
            return Err(ClientError::Protocol(format!(
                "reply code changed from {c} to {code} in a multi-line reply"
            )));
        }
        self.code = Some(code);
        self.lines.push(String::from_utf8_lossy(text).into_owned());
        if last {
            let r = Reply {
                code,
                lines: std::mem::take(&mut self.lines),
            };
            self.code = None;
            Ok(Some(r))
        } else {
            Ok(None)
        }
    }
}

/// Capabilities from an EHLO reply.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Caps {
    pub pipelining: bool,
    pub starttls: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
    pub size: Option<u64>,
    pub eightbitmime: bool,
    pub chunking: bool,
    pub smtputf8: bool,
    pub enhancedstatuscodes: bool,
}

/// Parse EHLO capabilities (the first line is the greeting domain and is skipped).
pub fn parse_ehlo(reply: &Reply) -> Caps {
    let mut caps = Caps::default();
    for line in reply.lines.iter().skip(1) {
        let mut words = line.split_ascii_whitespace();
        let Some(kw) = words.next() else { continue };
        let kw = kw.to_ascii_uppercase();
        match kw.as_str() {
            "PIPELINING" => caps.pipelining = true,
            "STARTTLS" => caps.starttls = true,
            "8BITMIME" => caps.eightbitmime = true,
            "CHUNKING" => caps.chunking = true,
            "SMTPUTF8" => caps.smtputf8 = true,
            "ENHANCEDSTATUSCODES" => caps.enhancedstatuscodes = true,
            "SIZE" => caps.size = words.next().and_then(|w| w.parse().ok()),
            "AUTH" | "AUTH=" => {
                for m in words {
                    match m.to_ascii_uppercase().as_str() {
                        "PLAIN" => caps.auth_plain = true,
                        "LOGIN" => caps.auth_login = true,
                        _ => {}
                    }
                }
            }
            _ if kw.starts_with("AUTH=") => {
                let first = kw[5..].to_string();
                for m in std::iter::once(first.as_str()).chain(words) {
                    match m.to_ascii_uppercase().as_str() {
                        "PLAIN" => caps.auth_plain = true,
                        "LOGIN" => caps.auth_login = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    caps
}

/// Append `msg` to `out` as DATA content: dot-stuffed, bare LF normalised to CRLF, a final
/// CRLF added if missing, followed by the terminating `.\r\n`.
pub fn dot_stuff_into(msg: &[u8], out: &mut Vec<u8>) {
    out.reserve(msg.len() + msg.len() / 64 + 8);
    let mut at_line_start = true;
    let mut rest = msg;
    while !rest.is_empty() {
        if at_line_start && rest[0] == b'.' {
            out.push(b'.');
        }
        match memchr::memchr(b'\n', rest) {
            Some(i) => {
                let line = &rest[..i];
                if let [body @ .., b'\r'] = line {
                    out.extend_from_slice(body);
                } else {
                    out.extend_from_slice(line);
                }
                out.extend_from_slice(b"\r\n");
                rest = &rest[i + 1..];
                at_line_start = true;
            }
            None => {
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
                rest = &[];
            }
        }
    }
    out.extend_from_slice(b".\r\n");
}

/// Base64 (standard alphabet, padded).
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// How to secure the SMTP session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    None,
    StartTls,
    Implicit,
}

/// Outcome of one message transaction.
#[derive(Debug)]
pub struct Sent {
    /// Indexes (into the rcpt list) of the accepted recipients.
    pub accepted: Vec<usize>,
    /// Rejected recipients' reply codes.
    pub rejected: Vec<u16>,
}

pub struct SmtpClient {
    pub conn: Conn,
    pub caps: Caps,
    pub greeting: Reply,
    wbuf: Vec<u8>,
}

impl SmtpClient {
    /// Connect, read the greeting, EHLO, optional STARTTLS (+EHLO again), optional AUTH PLAIN.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        security: Security,
        tls: Option<(&TlsConnector, ServerName<'static>)>,
        ehlo: &str,
        auth: Option<(&str, &str)>,
    ) -> Result<SmtpClient> {
        let conn = match (security, tls.as_ref()) {
            (Security::Implicit, Some((c, n))) => {
                Conn::connect_tls(addr, timeout, c, n.clone()).await?
            }
            (Security::None, _) | (Security::StartTls, _) => Conn::connect(addr, timeout).await?,
            (Security::Implicit, None) => {
                return Err(ClientError::Protocol("TLS requested without config".into()));
            }
        };
        let mut c = SmtpClient {
            conn,
            caps: Caps::default(),
            greeting: Reply {
                code: 0,
                lines: vec![],
            },
            wbuf: Vec::new(),
        };
        let g = c.read_reply().await?;
        if g.code != 220 {
            return Err(g.err());
        }
        c.greeting = g;
        c.ehlo(ehlo).await?;
        if security == Security::StartTls {
            let Some((connector, name)) = tls else {
                return Err(ClientError::Protocol(
                    "STARTTLS requested without TLS config".into(),
                ));
            };
            c.conn.send(b"STARTTLS\r\n").await?;
            let r = c.read_reply().await?;
            if r.code != 220 {
                return Err(r.err());
            }
            c.conn.start_tls(connector, name).await?;
            c.ehlo(ehlo).await?;
        }
        if let Some((user, pass)) = auth {
            c.auth_plain(user, pass).await?;
        }
        Ok(c)
    }

    pub async fn read_reply(&mut self) -> Result<Reply> {
        let mut p = ReplyParser::default();
        loop {
            let r = self.conn.read_line().await?;
            if let Some(reply) = p.push(self.conn.buf(r))? {
                return Ok(reply);
            }
        }
    }

    pub async fn ehlo(&mut self, name: &str) -> Result<()> {
        self.conn
            .send(format!("EHLO {name}\r\n").as_bytes())
            .await?;
        let r = self.read_reply().await?;
        if r.code != 250 {
            return Err(r.err());
        }
        self.caps = parse_ehlo(&r);
        Ok(())
    }

    pub async fn auth_plain(&mut self, user: &str, pass: &str) -> Result<()> {
        let mut raw = Vec::with_capacity(user.len() + pass.len() + 2);
        raw.push(0);
        raw.extend_from_slice(user.as_bytes());
        raw.push(0);
        raw.extend_from_slice(pass.as_bytes());
        self.conn
            .send(format!("AUTH PLAIN {}\r\n", base64(&raw)).as_bytes())
            .await?;
        let r = self.read_reply().await?;
        if r.code != 235 {
            return Err(r.err());
        }
        Ok(())
    }

    /// Send one message. With `pipelining` (and the PIPELINING capability) MAIL, all RCPTs and
    /// DATA go out in one write. With `quit_after`, QUIT is pipelined after the final dot
    /// (the 221 is read but not required).
    pub async fn send_message(
        &mut self,
        from: &str,
        rcpts: &[String],
        msg: &[u8],
        pipelining: bool,
        quit_after: bool,
    ) -> Result<Sent> {
        let pipe = pipelining && self.caps.pipelining;
        let mut w = std::mem::take(&mut self.wbuf);
        w.clear();
        let mut sent = Sent {
            accepted: Vec::with_capacity(rcpts.len()),
            rejected: Vec::new(),
        };
        if pipe {
            w.extend_from_slice(b"MAIL FROM:<");
            w.extend_from_slice(from.as_bytes());
            w.extend_from_slice(b">\r\n");
            for r in rcpts {
                w.extend_from_slice(b"RCPT TO:<");
                w.extend_from_slice(r.as_bytes());
                w.extend_from_slice(b">\r\n");
            }
            w.extend_from_slice(b"DATA\r\n");
            let (res, buf) = self.conn.write_all(w).await;
            w = buf;
            res?;
            let mail = self.read_reply().await?;
            for i in 0..rcpts.len() {
                let r = self.read_reply().await?;
                if r.is_positive() {
                    sent.accepted.push(i);
                } else {
                    sent.rejected.push(r.code);
                }
            }
            let data = self.read_reply().await?;
            if mail.code != 250 {
                self.wbuf = w;
                if data.code == 354 {
                    // server accepted DATA anyway: end it empty
                    self.conn.send(b".\r\n").await?;
                    let _ = self.read_reply().await?;
                }
                return Err(mail.err());
            }
            if data.code == 354 && sent.accepted.is_empty() {
                // RFC 2920: DATA was accepted although no recipient was; end it empty.
                self.wbuf = w;
                self.conn.send(b".\r\n").await?;
                let _ = self.read_reply().await?;
                let c = sent.rejected.first().copied().unwrap_or(554);
                return Err(ClientError::Reply {
                    code: c.to_string(),
                    text: "all recipients rejected".into(),
                });
            }
            if data.code != 354 {
                self.wbuf = w;
                if sent.accepted.is_empty()
                    && let Some(&c) = sent.rejected.first()
                {
                    return Err(ClientError::Reply {
                        code: c.to_string(),
                        text: "all recipients rejected".into(),
                    });
                }
                return Err(data.err());
            }
        } else {
            self.conn
                .send(format!("MAIL FROM:<{from}>\r\n").as_bytes())
                .await?;
            let mail = self.read_reply().await?;
            if mail.code != 250 {
                self.wbuf = w;
                return Err(mail.err());
            }
            for (i, r) in rcpts.iter().enumerate() {
                self.conn
                    .send(format!("RCPT TO:<{r}>\r\n").as_bytes())
                    .await?;
                let r = self.read_reply().await?;
                if r.is_positive() {
                    sent.accepted.push(i);
                } else {
                    sent.rejected.push(r.code);
                }
            }
            if sent.accepted.is_empty() {
                self.wbuf = w;
                self.conn.send(b"RSET\r\n").await?;
                let _ = self.read_reply().await?;
                let c = sent.rejected.first().copied().unwrap_or(554);
                return Err(ClientError::Reply {
                    code: c.to_string(),
                    text: "all recipients rejected".into(),
                });
            }
            self.conn.send(b"DATA\r\n").await?;
            let data = self.read_reply().await?;
            if data.code != 354 {
                self.wbuf = w;
                return Err(data.err());
            }
        }
        w.clear();
        dot_stuff_into(msg, &mut w);
        let quit = quit_after && self.caps.pipelining;
        if quit {
            w.extend_from_slice(b"QUIT\r\n");
        }
        let (res, buf) = self.conn.write_all(w).await;
        self.wbuf = buf;
        res?;
        let end = self.read_reply().await?;
        if quit {
            // best effort: the 221 is not part of the measured transaction
            let _ = self.read_reply().await;
        }
        if end.code != 250 {
            return Err(end.err());
        }
        Ok(sent)
    }

    /// QUIT and read the 221 (errors ignored).
    pub async fn quit(&mut self) {
        if self.conn.send(b"QUIT\r\n").await.is_ok() {
            let _ = self.read_reply().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(lines: &[&str]) -> Vec<Reply> {
        let mut p = ReplyParser::default();
        let mut out = vec![];
        for l in lines {
            if let Some(r) = p.push(l.as_bytes()).unwrap() {
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line(b"250-PIPELINING\r\n"),
            Some((250, false, &b"PIPELINING"[..]))
        );
        assert_eq!(
            parse_reply_line(b"250 OK\r\n"),
            Some((250, true, &b"OK"[..]))
        );
        assert_eq!(parse_reply_line(b"354\r\n"), Some((354, true, &b""[..])));
        assert_eq!(parse_reply_line(b"25"), None);
        assert_eq!(parse_reply_line(b"abc def"), None);
        assert_eq!(parse_reply_line(b"250xok"), None);
    }

    #[test]
    fn multiline_reply() {
        let r = parse_all(&[
            "250-mx.example.test\r\n",
            "250-PIPELINING\r\n",
            "250-SIZE 10240000\r\n",
            "250 8BITMIME\r\n",
        ]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, 250);
        assert_eq!(
            r[0].lines,
            vec!["mx.example.test", "PIPELINING", "SIZE 10240000", "8BITMIME"]
        );
        // pipelined replies back to back
        let r = parse_all(&[
            "250 2.1.0 Ok\r\n",
            "550 5.1.1 no such user\r\n",
            "354 go ahead\r\n",
        ]);
        assert_eq!(
            r.iter().map(|r| r.code).collect::<Vec<_>>(),
            vec![250, 550, 354]
        );
        assert!(!r[1].is_positive());
        // code changing mid-reply is an error
        let mut p = ReplyParser::default();
        assert!(p.push(b"250-a\r\n").unwrap().is_none());
        assert!(p.push(b"251 b\r\n").is_err());
    }

    #[test]
    fn ehlo_caps() {
        let r = parse_all(&[
            "250-mx.example.test\r\n",
            "250-PIPELINING\r\n",
            "250-SIZE 10240000\r\n",
            "250-STARTTLS\r\n",
            "250-AUTH PLAIN LOGIN\r\n",
            "250-AUTH=PLAIN LOGIN\r\n",
            "250-ENHANCEDSTATUSCODES\r\n",
            "250-8BITMIME\r\n",
            "250-CHUNKING\r\n",
            "250 SMTPUTF8\r\n",
        ]);
        let c = parse_ehlo(&r[0]);
        assert!(c.pipelining && c.starttls && c.auth_plain && c.auth_login);
        assert!(c.eightbitmime && c.chunking && c.smtputf8 && c.enhancedstatuscodes);
        assert_eq!(c.size, Some(10240000));
        let r = parse_all(&["250-host\r\n", "250 auth plain\r\n"]);
        let c = parse_ehlo(&r[0]);
        assert!(c.auth_plain && !c.pipelining && !c.starttls);
        // the greeting line is not a capability
        let r = parse_all(&["250 PIPELINING\r\n"]);
        assert!(!parse_ehlo(&r[0]).pipelining);
    }

    #[test]
    fn dot_stuffing() {
        let mut out = vec![];
        dot_stuff_into(
            b"Subject: x\r\n\r\n.hidden\r\n..two\r\nok.\r\n.\r\nend",
            &mut out,
        );
        assert_eq!(
            out,
            b"Subject: x\r\n\r\n..hidden\r\n...two\r\nok.\r\n..\r\nend\r\n.\r\n"
        );
        let mut out = vec![];
        dot_stuff_into(b"a\nb\n", &mut out);
        assert_eq!(out, b"a\r\nb\r\n.\r\n");
        let mut out = vec![];
        dot_stuff_into(b"", &mut out);
        assert_eq!(out, b".\r\n");
    }

    #[test]
    fn base64_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"\0user\0pass"), "AHVzZXIAcGFzcw==");
    }
}
