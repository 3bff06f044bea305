//! Delivery status notifications (RFC 3464): the report a sender gets when a recipient failed,
//! is delayed, or (on request, RFC 3461 `NOTIFY=SUCCESS`) was delivered or relayed.
//!
//! A report is a `multipart/report; report-type=delivery-status` message with three parts: a
//! human-readable explanation, the machine-readable `message/delivery-status`, and the original
//! (whole as `message/rfc822`, or only its header as `text/rfc822-headers` when the sender asked
//! `RET=HDRS`, when it is only a delay or success report, or when the original is larger than
//! the return limit). Reports are sent from the null sender `<>`, so they are never bounced
//! themselves (RFC 5321 §4.5.5), and never generated for a message whose sender is `<>`.

use std::fmt::Write as _;

use super::envelope::Ret;
use super::trace::rfc5322_date;

/// RFC 3464 §2.3.3 `Action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    /// Passed to a next hop that does not report delivery itself (no DSN support).
    Relayed,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// One recipient's line in a report.
#[derive(Clone, Debug)]
pub struct ReportedRecipient<'a> {
    pub address: &'a str,
    /// `ORCPT` as received (`type;xtext`).
    pub orcpt: Option<&'a str>,
    pub action: Action,
    /// Enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// `host[ip]` of the server that answered, if any.
    pub remote_mta: Option<&'a str>,
    /// The server's reply or our reason, e.g. `550 5.1.1 user unknown`.
    pub diagnostic: &'a str,
}

/// Everything a report says.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// This host's name (`Reporting-MTA`, the `From:` domain).
    pub reporting_mta: &'a str,
    /// The queue id of the original message.
    pub queue_id: &'a str,
    /// Where the report goes (the original envelope sender; never empty).
    pub to: &'a str,
    /// `ENVID` as received.
    pub envid: Option<&'a str>,
    pub ret: Option<Ret>,
    /// Unix seconds the original arrived.
    pub arrival: i64,
    /// For delay reports: how long the queue keeps trying (seconds after arrival).
    pub lifetime: Option<i64>,
    pub recipients: Vec<ReportedRecipient<'a>>,
    /// The original message as stored.
    pub original: &'a [u8],
    /// Originals above this size are returned as headers only.
    pub return_limit: usize,
}

/// The enhanced status code of a reply (`550 5.1.1 ...` → `5.1.1`), else one derived from the
/// basic code's class.
pub fn status_of(reply: &str, permanent: bool) -> String {
    let mut words = reply.split_whitespace();
    let code = words.next().unwrap_or("");
    if let Some(enhanced) = words.next() {
        let parts: Vec<&str> = enhanced.split('.').collect();
        if parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            && code.starts_with(parts[0])
        {
            return enhanced.to_string();
        }
    }
    match code.as_bytes().first() {
        Some(b'2') => "2.0.0".into(),
        Some(b'4') if !permanent => "4.0.0".into(),
        _ => "5.0.0".into(),
    }
}

/// Decodes xtext (`+XX` hex escapes), for the `Original-Recipient` field.
pub fn xtext_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    while i < b.len() {
        if b[i] == b'+'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The header section of a message (up to and including the blank line), or all of it.
pub fn header_section(message: &[u8]) -> &[u8] {
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => &message[..i + 4],
        None => match memchr::memmem::find(message, b"\n\n") {
            Some(i) => &message[..i + 2],
            None => message,
        },
    }
}

/// Removes control characters so a value cannot break the report's header framing.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Builds the report message (CRLF line endings).
pub fn build(report: &Report<'_>, now: i64) -> Vec<u8> {
    let worst = report
        .recipients
        .iter()
        .map(|r| r.action)
        .find(|a| *a == Action::Failed)
        .or_else(|| report.recipients.first().map(|r| r.action))
        .unwrap_or(Action::Failed);
    let subject = match worst {
        Action::Failed => "Undelivered Mail Returned to Sender",
        Action::Delayed => "Delayed Mail (still being retried)",
        Action::Delivered | Action::Relayed => "Successful Mail Delivery Report",
    };
    let host = clean(report.reporting_mta);
    let boundary = format!("{}.{}/{}", report.queue_id, now, host);
    let mut m = String::with_capacity(2048 + report.original.len().min(report.return_limit));
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.{now}.{action}@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is the mail system at host {host}.\r\n\
         \r\n",
        to = clean(report.to),
        date = rfc5322_date(now.max(0) as u64),
        id = clean(report.queue_id),
        action = worst.name(),
    );
    m.push_str(match worst {
        Action::Failed => {
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. It's attached below.\r\n"
        }
        Action::Delayed => {
            "####################################################################\r\n\
             # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n\
             ####################################################################\r\n\
             \r\n\
             Your message could not be delivered yet. The mail system will keep\r\n\
             trying; the reasons are given below.\r\n"
        }
        Action::Delivered | Action::Relayed => {
            "Your message was successfully delivered to the destination(s)\r\n\
             listed below. If the message was delivered to a mailbox you will\r\n\
             receive no further notifications. Otherwise you may still receive\r\n\
             notifications of mail delivery errors from other systems.\r\n"
        }
    });
    if let (Action::Delayed, Some(lifetime)) = (worst, report.lifetime) {
        let _ = write!(
            m,
            "\r\nIt will be retried until {}.\r\n",
            rfc5322_date((report.arrival + lifetime).max(0) as u64)
        );
    }
    m.push_str("\r\n");
    for r in &report.recipients {
        let _ = write!(m, "<{}>: ", clean(r.address));
        match r.remote_mta {
            Some(mta) => {
                let _ = write!(m, "host {} said: {}", clean(mta), clean(r.diagnostic));
            }
            None => m.push_str(&clean(r.diagnostic)),
        }
        m.push_str("\r\n");
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         X-Surel-Queue-ID: {id}\r\n",
        id = clean(report.queue_id),
    );
    if let Some(envid) = report.envid {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", clean(envid));
    }
    let _ = write!(
        m,
        "Arrival-Date: {}\r\n",
        rfc5322_date(report.arrival.max(0) as u64)
    );
    for r in &report.recipients {
        let _ = write!(m, "\r\nFinal-Recipient: rfc822; {}\r\n", clean(r.address));
        if let Some(orcpt) = r.orcpt
            && let Some((kind, addr)) = orcpt.split_once(';')
        {
            let _ = write!(
                m,
                "Original-Recipient: {}; {}\r\n",
                clean(kind),
                clean(&xtext_decode(addr))
            );
        }
        let _ = write!(
            m,
            "Action: {}\r\nStatus: {}\r\n",
            r.action.name(),
            clean(&r.status)
        );
        if let Some(mta) = r.remote_mta {
            let host_only = mta.split('[').next().unwrap_or(mta);
            let _ = write!(m, "Remote-MTA: dns; {}\r\n", clean(host_only));
        }
        if !r.diagnostic.is_empty() {
            let kind = if r.remote_mta.is_some() {
                "smtp"
            } else {
                "x-surel"
            };
            let _ = write!(m, "Diagnostic-Code: {kind}; {}\r\n", clean(r.diagnostic));
        }
        if let (Action::Delayed, Some(lifetime)) = (r.action, report.lifetime) {
            let _ = write!(
                m,
                "Will-Retry-Until: {}\r\n",
                rfc5322_date((report.arrival + lifetime).max(0) as u64)
            );
        }
    }
    let headers_only = worst != Action::Failed
        || report.ret == Some(Ret::Headers)
        || report.original.len() > report.return_limit;
    let mut out = m.into_bytes();
    if headers_only {
        let _ = write_str(
            &mut out,
            &format!(
                "\r\n--{boundary}\r\n\
                 Content-Description: Undelivered Message Headers\r\n\
                 Content-Type: text/rfc822-headers\r\n\
                 \r\n"
            ),
        );
        out.extend_from_slice(header_section(report.original));
    } else {
        let _ = write_str(
            &mut out,
            &format!(
                "\r\n--{boundary}\r\n\
                 Content-Description: Undelivered Message\r\n\
                 Content-Type: message/rfc822\r\n\
                 \r\n"
            ),
        );
        out.extend_from_slice(report.original);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    let _ = write_str(&mut out, &format!("\r\n--{boundary}--\r\n"));
    out
}

fn write_str(out: &mut Vec<u8>, s: &str) -> std::fmt::Result {
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>(action: Action, ret: Option<Ret>, original: &'a [u8]) -> Report<'a> {
        Report {
            reporting_mta: "mx.example.test",
            queue_id: "ABC123",
            to: "alice@example.test",
            envid: Some("E+2B1"),
            ret,
            arrival: 1_700_000_000,
            lifetime: Some(5 * 86400),
            recipients: vec![ReportedRecipient {
                address: "bob@example.net",
                orcpt: Some("rfc822;Bob+2Bx@example.net"),
                action,
                status: "5.1.1".into(),
                remote_mta: Some("mx.example.net[192.0.2.1]"),
                diagnostic: "550 5.1.1 <bob@example.net>: user unknown",
            }],
            original,
            return_limit: 1 << 20,
        }
    }

    const ORIGINAL: &[u8] = b"From: alice@example.test\r\nSubject: hi\r\n\r\nsecret body\r\n";

    #[test]
    fn failure_report_parses_as_multipart_report_with_the_original() {
        use mail_parser::MimeHeaders;
        let out = build(&report(Action::Failed, None, ORIGINAL), 1_700_000_100);
        let msg = mail_parser::MessageParser::default().parse(&out).unwrap();
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        let ct = msg.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Final-Recipient: rfc822; bob@example.net\r\n"));
        assert!(text.contains("Original-Recipient: rfc822; Bob+x@example.net\r\n"));
        assert!(text.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Remote-MTA: dns; mx.example.net\r\n"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: user unknown"));
        assert!(text.contains("Original-Envelope-Id: E+2B1\r\n"));
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nFrom: alice@example.test"));
        assert!(text.contains("secret body"));
        assert!(text.ends_with("--\r\n"));
        // Every line ends with CRLF.
        assert!(!out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }

    #[test]
    fn headers_only_when_asked_delayed_or_too_large() {
        let hdrs = build(&report(Action::Failed, Some(Ret::Headers), ORIGINAL), 1);
        let delay = build(&report(Action::Delayed, None, ORIGINAL), 1);
        let mut big = report(Action::Failed, Some(Ret::Full), ORIGINAL);
        big.return_limit = 10;
        let big = build(&big, 1);
        for out in [&hdrs, &delay, &big] {
            let text = String::from_utf8_lossy(out);
            assert!(text.contains("Content-Type: text/rfc822-headers"));
            assert!(text.contains("Subject: hi"));
            assert!(!text.contains("secret body"), "{text}");
        }
        let text = String::from_utf8_lossy(&delay);
        assert!(text.contains("Subject: Delayed Mail (still being retried)"));
        assert!(text.contains("Action: delayed"));
        assert!(text.contains("Will-Retry-Until: "));
    }

    #[test]
    fn hostile_values_cannot_add_header_lines() {
        let mut r = report(Action::Failed, None, ORIGINAL);
        r.recipients[0].diagnostic = "550 nope\r\nBcc: victim@example.org";
        r.to = "a@b\r\nX-Injected: 1";
        let text = String::from_utf8(build(&r, 1)).unwrap();
        assert!(!text.contains("\r\nBcc:"));
        assert!(!text.contains("\r\nX-Injected"));
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_of("550 5.1.1 unknown", true), "5.1.1");
        assert_eq!(status_of("451 4.7.1 greylisted", false), "4.7.1");
        assert_eq!(status_of("550 user unknown", true), "5.0.0");
        assert_eq!(status_of("421 busy", false), "4.0.0");
        assert_eq!(status_of("421 busy", true), "5.0.0");
        assert_eq!(status_of("550 4.1.1 mismatch", true), "5.0.0");
        assert_eq!(status_of("", true), "5.0.0");
        assert_eq!(xtext_decode("a+2Bb+3D"), "a+b=");
        assert_eq!(xtext_decode("trailing+4"), "trailing+4");
    }
}
