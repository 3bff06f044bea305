//! POP3 client: +OK/-ERR status lines, multi-line responses with dot-unstuffing, STLS.

use std::net::SocketAddr;
use std::time::Duration;

use monoio_rustls::TlsConnector;
use rustls::pki_types::ServerName;

use super::conn::Conn;
use super::smtp::trim_crlf;
use super::{ClientError, Result};

/// Parse a status line: `Ok(text)` for `+OK`, `Err(text)` for `-ERR`, `None` if neither.
pub fn parse_status(line: &[u8]) -> Option<std::result::Result<&[u8], &[u8]>> {
    let l = trim_crlf(line);
    if let Some(rest) = l.strip_prefix(b"+OK") {
        Some(Ok(rest.strip_prefix(b" ").unwrap_or(rest)))
    } else if let Some(rest) = l.strip_prefix(b"-ERR") {
        Some(Err(rest.strip_prefix(b" ").unwrap_or(rest)))
    } else {
        None
    }
}

/// One line of a multi-line response: `None` for the terminating `.`, otherwise the line with
/// its leading stuffed dot removed (the line terminator is kept).
pub fn unstuff_line(line: &[u8]) -> Option<&[u8]> {
    if trim_crlf(line) == b"." {
        None
    } else if line.first() == Some(&b'.') {
        Some(&line[1..])
    } else {
        Some(line)
    }
}

/// Parse `+OK nn mm` of STAT into (messages, octets).
pub fn parse_stat(text: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(text).ok()?;
    let mut w = s.split_ascii_whitespace();
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    None,
    Stls,
    Implicit,
}

pub struct Pop3Client {
    pub conn: Conn,
}

impl Pop3Client {
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        security: Security,
        tls: Option<(&TlsConnector, ServerName<'static>)>,
    ) -> Result<Pop3Client> {
        let conn = match (security, tls.as_ref()) {
            (Security::Implicit, Some((c, n))) => {
                Conn::connect_tls(addr, timeout, c, n.clone()).await?
            }
            (Security::Implicit, None) => {
                return Err(ClientError::Protocol("TLS requested without config".into()));
            }
            _ => Conn::connect(addr, timeout).await?,
        };
        let mut c = Pop3Client { conn };
        c.status().await?;
        if security == Security::Stls {
            let Some((connector, name)) = tls else {
                return Err(ClientError::Protocol(
                    "STLS requested without TLS config".into(),
                ));
            };
            c.cmd("STLS").await?;
            c.conn.start_tls(connector, name).await?;
        }
        Ok(c)
    }

    /// Read a status line; `-ERR` becomes an error.
    pub async fn status(&mut self) -> Result<String> {
        let r = self.conn.read_line().await?;
        let line = self.conn.buf(r);
        match parse_status(line) {
            Some(Ok(t)) => Ok(String::from_utf8_lossy(t).into_owned()),
            Some(Err(t)) => Err(ClientError::Reply {
                code: "-ERR".into(),
                text: String::from_utf8_lossy(t).into_owned(),
            }),
            None => Err(ClientError::Protocol(format!(
                "bad POP3 status {:?}",
                String::from_utf8_lossy(line)
            ))),
        }
    }

    pub async fn cmd(&mut self, cmd: &str) -> Result<String> {
        let mut b = Vec::with_capacity(cmd.len() + 2);
        b.extend_from_slice(cmd.as_bytes());
        b.extend_from_slice(b"\r\n");
        self.conn.write_all(b).await.0?;
        self.status().await
    }

    /// Read a multi-line body (after a `+OK`), dot-unstuffed, appended to `out`.
    pub async fn read_multiline(&mut self, out: &mut Vec<u8>) -> Result<()> {
        loop {
            let r = self.conn.read_line().await?;
            match unstuff_line(self.conn.buf(r)) {
                None => return Ok(()),
                Some(l) => out.extend_from_slice(l),
            }
        }
    }

    pub async fn login(&mut self, user: &str, pass: &str) -> Result<()> {
        self.cmd(&format!("USER {user}")).await?;
        self.cmd(&format!("PASS {pass}")).await?;
        Ok(())
    }

    pub async fn stat(&mut self) -> Result<(u64, u64)> {
        let t = self.cmd("STAT").await?;
        parse_stat(t.as_bytes())
            .ok_or_else(|| ClientError::Protocol(format!("bad STAT reply {t:?}")))
    }

    /// RETR message `n` into `out` (cleared first).
    pub async fn retr(&mut self, n: u64, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        self.cmd(&format!("RETR {n}")).await?;
        self.read_multiline(out).await
    }

    pub async fn dele(&mut self, n: u64) -> Result<()> {
        self.cmd(&format!("DELE {n}")).await.map(|_| ())
    }

    pub async fn quit(&mut self) -> Result<()> {
        self.cmd("QUIT").await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status(b"+OK Dovecot ready.\r\n"),
            Some(Ok(&b"Dovecot ready."[..]))
        );
        assert_eq!(parse_status(b"+OK\r\n"), Some(Ok(&b""[..])));
        assert_eq!(
            parse_status(b"-ERR [AUTH] Authentication failed.\r\n"),
            Some(Err(&b"[AUTH] Authentication failed."[..]))
        );
        assert_eq!(parse_status(b"* OK imap\r\n"), None);
        assert_eq!(parse_stat(b"3 12345"), Some((3, 12345)));
        assert_eq!(parse_stat(b"x"), None);
    }

    #[test]
    fn multiline_unstuffing() {
        let wire: &[&[u8]] = &[
            b"Subject: a\r\n",
            b"\r\n",
            b"..hidden\r\n",
            b"...two\r\n",
            b"..\r\n",
            b"plain\r\n",
            b".\r\n",
        ];
        let mut out = vec![];
        for l in wire {
            match unstuff_line(l) {
                Some(x) => out.extend_from_slice(x),
                None => break,
            }
        }
        assert_eq!(out, b"Subject: a\r\n\r\n.hidden\r\n..two\r\n.\r\nplain\r\n");
        assert_eq!(unstuff_line(b".\n"), None);
        // round trip with the SMTP stuffer
        let mut stuffed = vec![];
        super::super::smtp::dot_stuff_into(b"a\r\n.b\r\n.\r\n", &mut stuffed);
        let mut back = vec![];
        for l in stuffed.split_inclusive(|&b| b == b'\n') {
            match unstuff_line(l) {
                Some(x) => back.extend_from_slice(x),
                None => break,
            }
        }
        assert_eq!(back, b"a\r\n.b\r\n.\r\n");
    }
}
