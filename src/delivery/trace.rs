//! Trace headers (RFC 5321 §4.4): `Received:` when a message is accepted, `Return-Path:` and
//! `Delivered-To:` when it is delivered into a mailbox; RFC 5322 dates from unix seconds (no
//! chrono), and per-process unique queue ids.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch, now (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Civil date (year, month 1-12, day 1-31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 5322 date-time in UTC: `Tue, 14 Nov 2023 22:13:20 +0000`.
pub fn rfc5322_date(unix_seconds: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[m as usize - 1],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

const BASE32: &[u8; 32] = b"0123456789BCDFGHJKLMNPQRSTVWXYZa";

fn push_base32(out: &mut String, mut v: u64, min_digits: usize) {
    let mut buf = [0u8; 13];
    let mut n = 0;
    while v > 0 || n < min_digits {
        buf[n] = BASE32[(v & 31) as usize];
        v >>= 5;
        n += 1;
    }
    out.extend(buf[..n].iter().rev().map(|&b| b as char));
}

/// A queue id unique within this process (and, thanks to the time and a per-process salt,
/// practically unique across restarts): base32 of the time, a salt and a counter.
pub fn queue_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SALT: OnceLock<u64> = OnceLock::new();
    let salt = *SALT.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        u64::from(nanos ^ std::process::id().rotate_left(16)) & 0x3ff
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(16);
    push_base32(&mut id, unix_now(), 7);
    push_base32(&mut id, salt, 2);
    push_base32(&mut id, n, 4);
    id
}

/// `Return-Path` and `Delivered-To`, the final delivery step's trace headers (RFC 5321 §4.4),
/// to go on top of the copy stored for `account`.
pub fn delivery_headers(mail_from: &str, account: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(mail_from.len() + account.len() + 34);
    bytes.extend_from_slice(b"Return-Path: <");
    bytes.extend_from_slice(mail_from.as_bytes());
    bytes.extend_from_slice(b">\r\nDelivered-To: ");
    bytes.extend_from_slice(account.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes
}

/// Everything the trace header records.
pub struct TraceInfo<'a> {
    /// The HELO/EHLO argument.
    pub helo: &'a str,
    /// Reverse DNS name of the client, if known.
    pub ptr: Option<&'a str>,
    pub ip: IpAddr,
    pub hostname: &'a str,
    /// `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPA` or `ESMTPSA` (RFC 3848).
    pub protocol: &'a str,
    pub id: &'a str,
    /// The recipient, only when the transaction has exactly one.
    pub single_recipient: Option<&'a str>,
    /// The account the client authenticated as.
    pub authenticated: Option<&'a str>,
    pub unix_seconds: u64,
}

/// Append the `Received:` header (with its CRLF) to `out`.
pub fn write_received(out: &mut Vec<u8>, t: &TraceInfo<'_>) {
    let mut s = String::with_capacity(200);
    let ip = match t.ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => t.ip,
        },
        v4 => v4,
    };
    let _ = write!(
        s,
        "Received: from {} ({} [{}])\r\n\tby {} (surel) with {} id {}",
        t.helo,
        t.ptr.unwrap_or("unknown"),
        ip,
        t.hostname,
        t.protocol,
        t.id
    );
    if let Some(account) = t.authenticated {
        let _ = write!(s, "\r\n\t(Authenticated sender: {account})");
    }
    match t.single_recipient {
        Some(rcpt) => {
            let _ = write!(s, "\r\n\tfor <{rcpt}>; ");
        }
        None => s.push_str(";\r\n\t"),
    }
    s.push_str(&rfc5322_date(t.unix_seconds));
    s.push_str("\r\n");
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_868_799), "Tue, 29 Feb 2000 23:59:59 +0000");
        assert_eq!(
            rfc5322_date(4_102_444_800),
            "Fri, 01 Jan 2100 00:00:00 +0000"
        );
    }

    #[test]
    fn delivery_headers_come_first() {
        assert_eq!(
            delivery_headers("", "bob@x.test"),
            b"Return-Path: <>\r\nDelivered-To: bob@x.test\r\n"
        );
    }

    #[test]
    fn queue_ids_are_unique_and_safe() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| queue_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|id| id.bytes().all(|b| b.is_ascii_alphanumeric()))
        );
    }

    #[test]
    fn header_format() {
        let mut out = Vec::new();
        let mut t = TraceInfo {
            helo: "client.example",
            ptr: None,
            ip: "192.0.2.1".parse().unwrap(),
            hostname: "mx.example.org",
            protocol: "ESMTPS",
            id: "ABC",
            single_recipient: Some("bob@example.org"),
            authenticated: None,
            unix_seconds: 1_700_000_000,
        };
        write_received(&mut out, &t);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from client.example (unknown [192.0.2.1])\r\n\tby mx.example.org (surel) \
             with ESMTPS id ABC\r\n\tfor <bob@example.org>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        );
        t.single_recipient = None;
        t.ip = "::ffff:192.0.2.1".parse().unwrap();
        let mut out = Vec::new();
        write_received(&mut out, &t);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from client.example (unknown [192.0.2.1])\r\n\tby mx.example.org (surel) \
             with ESMTPS id ABC;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
        );
    }
}
