//! Zero-copy SMTP command parser: [`parse_command`] borrows everything from the input line.
//!
//! Verbs are case-insensitive. Paths follow RFC 5321 §4.1.2: `<mailbox>`, `<>` (MAIL only),
//! `<postmaster>` (RCPT only), source routes `<@a,@b:mailbox>` (accepted, route stripped),
//! quoted local parts, address literals. Non-ASCII (UTF-8) addresses are syntactically accepted
//! here; the session requires the SMTPUTF8 parameter for them (RFC 6531).

use crate::delivery::{Notify, Ret};

/// Longest path accepted, including the angle brackets (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;
const MAX_LOCAL_PART: usize = 64;
const MAX_DOMAIN: usize = 255;

/// `BODY=` values (RFC 6152).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

/// Parsed `MAIL FROM` parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 4954 AUTH,
/// RFC 3461 RET and ENVID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailParams<'a> {
    /// Declared size; values that overflow `usize` saturate.
    pub size: Option<usize>,
    pub body: Option<Body>,
    pub smtputf8: bool,
    /// The `AUTH=` value (xtext mailbox or `<>`), accepted and otherwise ignored.
    pub auth: Option<&'a str>,
    pub ret: Option<Ret>,
    /// `ENVID=` as received (validated xtext, at most 100 characters).
    pub envid: Option<&'a str>,
}

/// Parsed `RCPT TO` parameters (RFC 3461 NOTIFY and ORCPT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RcptParams<'a> {
    pub notify: Notify,
    /// `ORCPT=` as received: `addr-type;xtext`.
    pub orcpt: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo(&'a str),
    Helo(&'a str),
    /// `path` is the mailbox without angle brackets and source route; `""` for `<>`.
    Mail {
        path: &'a str,
        params: MailParams<'a>,
    },
    /// `path` is the mailbox without angle brackets and source route, or `postmaster`.
    Rcpt {
        path: &'a str,
        params: RcptParams<'a>,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy(&'a str),
    Expn(&'a str),
    Help,
    StartTls,
    Auth {
        mechanism: &'a str,
        initial: Option<&'a str>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Unknown verb (500 5.5.1).
    Unrecognized,
    /// Control characters (NUL, bare CR, ...) or invalid UTF-8 in the line (501 5.5.2).
    InvalidCharacter,
    /// Malformed arguments (501 5.5.4).
    Syntax,
    /// Malformed sender address (501 5.1.7).
    BadSender,
    /// Malformed recipient address (501 5.1.3).
    BadRecipient,
    /// A MAIL/RCPT parameter we do not support (555 5.5.4).
    UnknownParameter,
}

/// Parse one command line. A trailing CRLF (or LF) is ignored; trailing spaces are tolerated.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::InvalidCharacter);
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::InvalidCharacter)?;
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, args) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_start_matches(' ')),
        None => (line, ""),
    };
    let is = |v: &str| verb.eq_ignore_ascii_case(v);
    let no_args = |c: Command<'static>| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(CommandError::Syntax)
        }
    };
    if is("EHLO") || is("HELO") {
        if args.is_empty()
            || !args.bytes().all(|b| b.is_ascii_graphic())
            || args.len() > MAX_DOMAIN + 2
        {
            return Err(CommandError::Syntax);
        }
        Ok(if is("EHLO") {
            Command::Ehlo(args)
        } else {
            Command::Helo(args)
        })
    } else if is("MAIL") {
        let rest = strip_prefix_ci(args, "FROM:").ok_or(CommandError::Syntax)?;
        let (path, params) = parse_path(rest.trim_start_matches(' '))?;
        let path = if path.is_empty() {
            path
        } else {
            mailbox_of(path).ok_or(CommandError::BadSender)?
        };
        Ok(Command::Mail {
            path,
            params: parse_mail_params(params)?,
        })
    } else if is("RCPT") {
        let rest = strip_prefix_ci(args, "TO:").ok_or(CommandError::Syntax)?;
        let (path, params) = parse_path(rest.trim_start_matches(' '))?;
        let path = if path.eq_ignore_ascii_case("postmaster") {
            path
        } else {
            mailbox_of(path).ok_or(CommandError::BadRecipient)?
        };
        Ok(Command::Rcpt {
            path,
            params: parse_rcpt_params(params)?,
        })
    } else if is("DATA") {
        no_args(Command::Data)
    } else if is("BDAT") {
        let mut it = args.split(' ');
        let size = it.next().ok_or(CommandError::Syntax)?;
        if size.is_empty() || size.len() > 19 || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CommandError::Syntax);
        }
        let size = size.parse::<u64>().map_err(|_| CommandError::Syntax)?;
        let last = match it.next() {
            None => false,
            Some(l) if l.eq_ignore_ascii_case("LAST") => true,
            Some(_) => return Err(CommandError::Syntax),
        };
        if it.next().is_some() {
            return Err(CommandError::Syntax);
        }
        Ok(Command::Bdat { size, last })
    } else if is("RSET") {
        no_args(Command::Rset)
    } else if is("NOOP") {
        Ok(Command::Noop)
    } else if is("QUIT") {
        no_args(Command::Quit)
    } else if is("VRFY") {
        if args.is_empty() {
            return Err(CommandError::Syntax);
        }
        Ok(Command::Vrfy(args))
    } else if is("EXPN") {
        if args.is_empty() {
            return Err(CommandError::Syntax);
        }
        Ok(Command::Expn(args))
    } else if is("HELP") {
        Ok(Command::Help)
    } else if is("STARTTLS") {
        no_args(Command::StartTls)
    } else if is("AUTH") {
        let mut it = args.split(' ');
        let mechanism = it
            .next()
            .filter(|m| !m.is_empty())
            .ok_or(CommandError::Syntax)?;
        let initial = it.next();
        if it.next().is_some() || initial == Some("") {
            return Err(CommandError::Syntax);
        }
        Ok(Command::Auth { mechanism, initial })
    } else {
        Err(CommandError::Unrecognized)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Split `<path> params` into the content between the brackets and the parameter string.
/// Quote-aware: `>` and spaces inside a quoted local part do not end the path.
fn parse_path(s: &str) -> Result<(&str, &str), CommandError> {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') {
        return Err(CommandError::Syntax);
    }
    let mut i = 1;
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    if i >= b.len() || i + 1 > MAX_PATH {
        return Err(CommandError::Syntax);
    }
    let inner = &s[1..i];
    let rest = &s[i + 1..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(CommandError::Syntax);
    }
    Ok((inner, rest.trim_start_matches(' ')))
}

/// Strip an optional source route (`@a,@b:`) and validate the mailbox.
fn mailbox_of(path: &str) -> Option<&str> {
    let mailbox = if path.starts_with('@') {
        let colon = path.find(':')?;
        let route = &path[..colon];
        for hop in route.split(',') {
            if !valid_domain(hop.strip_prefix('@')?) {
                return None;
            }
        }
        &path[colon + 1..]
    } else {
        path
    };
    valid_mailbox(mailbox).then_some(mailbox)
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// `Local-part "@" ( Domain / address-literal )` (RFC 5321 §4.1.2, RFC 6531 §3.3).
pub fn valid_mailbox(s: &str) -> bool {
    let b = s.as_bytes();
    let at = if b.first() == Some(&b'"') {
        // Quoted-string: qtextSMTP / quoted-pair.
        let mut i = 1;
        loop {
            match b.get(i) {
                None => return false,
                Some(b'"') => break,
                Some(b'\\') => {
                    if !matches!(b.get(i + 1), Some(32..=126)) {
                        return false;
                    }
                    i += 2;
                }
                Some(&c) if c >= 32 && c != 127 => i += 1,
                Some(_) => return false,
            }
        }
        i + 1
    } else {
        let Some(at) = s.find('@') else {
            return false;
        };
        let local = &s[..at];
        if local.is_empty()
            || !local
                .split('.')
                .all(|a| !a.is_empty() && a.chars().all(is_atext))
        {
            return false;
        }
        at
    };
    if at > MAX_LOCAL_PART || b.get(at) != Some(&b'@') {
        return false;
    }
    let domain = &s[at + 1..];
    if let Some(lit) = domain.strip_prefix('[') {
        let Some(lit) = lit.strip_suffix(']') else {
            return false;
        };
        return valid_address_literal(lit);
    }
    valid_domain(domain)
}

fn valid_address_literal(lit: &str) -> bool {
    if let Some(v6) = lit.strip_prefix("IPv6:") {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if lit.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    // General-address-literal: Standardized-tag ":" 1*dcontent
    match lit.split_once(':') {
        Some((tag, content)) => {
            valid_label(tag)
                && !content.is_empty()
                && content
                    .bytes()
                    .all(|c| (33..=126).contains(&c) && c != b'[' && c != b']' && c != b'\\')
        }
        None => false,
    }
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// `sub-domain *("." sub-domain)`, U-labels allowed.
pub fn valid_domain(d: &str) -> bool {
    !d.is_empty() && d.len() <= MAX_DOMAIN && d.split('.').all(valid_label)
}

fn parse_mail_params(s: &str) -> Result<MailParams<'_>, CommandError> {
    let mut p = MailParams::default();
    let mut seen_auth = false;
    for param in s.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        if key.eq_ignore_ascii_case("SIZE") {
            let v = value.ok_or(CommandError::Syntax)?;
            if p.size.is_some() || v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CommandError::Syntax);
            }
            p.size = Some(v.parse::<usize>().unwrap_or(usize::MAX));
        } else if key.eq_ignore_ascii_case("BODY") {
            let v = value.ok_or(CommandError::Syntax)?;
            if p.body.is_some() {
                return Err(CommandError::Syntax);
            }
            p.body = Some(if v.eq_ignore_ascii_case("7BIT") {
                Body::SevenBit
            } else if v.eq_ignore_ascii_case("8BITMIME") {
                Body::EightBitMime
            } else {
                // Includes BINARYMIME, which we do not advertise.
                return Err(CommandError::UnknownParameter);
            });
        } else if key.eq_ignore_ascii_case("SMTPUTF8") {
            if value.is_some() || p.smtputf8 {
                return Err(CommandError::Syntax);
            }
            p.smtputf8 = true;
        } else if key.eq_ignore_ascii_case("AUTH") {
            let v = value.ok_or(CommandError::Syntax)?;
            if seen_auth || v.is_empty() {
                return Err(CommandError::Syntax);
            }
            seen_auth = true;
            p.auth = Some(v);
        } else if key.eq_ignore_ascii_case("RET") {
            let v = value.ok_or(CommandError::Syntax)?;
            if p.ret.is_some() {
                return Err(CommandError::Syntax);
            }
            p.ret = Some(if v.eq_ignore_ascii_case("FULL") {
                Ret::Full
            } else if v.eq_ignore_ascii_case("HDRS") {
                Ret::Headers
            } else {
                return Err(CommandError::Syntax);
            });
        } else if key.eq_ignore_ascii_case("ENVID") {
            let v = value.ok_or(CommandError::Syntax)?;
            // RFC 3461 §4.4: at most 100 characters of xtext.
            if p.envid.is_some() || v.len() > 100 || !valid_xtext(v) {
                return Err(CommandError::Syntax);
            }
            p.envid = Some(v);
        } else {
            return Err(CommandError::UnknownParameter);
        }
    }
    Ok(p)
}

fn parse_rcpt_params(s: &str) -> Result<RcptParams<'_>, CommandError> {
    let mut p = RcptParams::default();
    for param in s.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        if key.eq_ignore_ascii_case("NOTIFY") {
            let v = value.ok_or(CommandError::Syntax)?;
            if p.notify.is_given() {
                return Err(CommandError::Syntax);
            }
            let mut bits = 0u8;
            for word in v.split(',') {
                let bit = if word.eq_ignore_ascii_case("NEVER") {
                    Notify::NEVER
                } else if word.eq_ignore_ascii_case("SUCCESS") {
                    Notify::SUCCESS
                } else if word.eq_ignore_ascii_case("FAILURE") {
                    Notify::FAILURE
                } else if word.eq_ignore_ascii_case("DELAY") {
                    Notify::DELAY
                } else {
                    return Err(CommandError::Syntax);
                };
                if bits & bit != 0 {
                    return Err(CommandError::Syntax);
                }
                bits |= bit;
            }
            // RFC 3461 §4.1: NEVER stands alone.
            if bits & Notify::NEVER != 0 && bits != Notify::NEVER {
                return Err(CommandError::Syntax);
            }
            p.notify = Notify(bits);
        } else if key.eq_ignore_ascii_case("ORCPT") {
            let v = value.ok_or(CommandError::Syntax)?;
            let (addr_type, addr) = v.split_once(';').ok_or(CommandError::Syntax)?;
            // RFC 3461 §4.2: addr-type is an atom, the address xtext; 500 characters at most.
            if p.orcpt.is_some()
                || v.len() > 500
                || addr_type.is_empty()
                || !addr_type.chars().all(is_atext)
                || addr.is_empty()
                || !valid_xtext(addr)
            {
                return Err(CommandError::Syntax);
            }
            p.orcpt = Some(v);
        } else {
            return Err(CommandError::UnknownParameter);
        }
    }
    Ok(p)
}

/// RFC 3461 §4 xtext: printable ASCII except `+` and `=`, or `+` and two upper-case hex digits.
pub fn valid_xtext(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |c: Option<&u8>| matches!(c, Some(b'0'..=b'9' | b'A'..=b'F'));
                if !hex(b.get(i + 1)) || !hex(b.get(i + 2)) {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            33..=126 => i += 1,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command as C;
    use CommandError as E;

    fn p(s: &str) -> Result<Command<'_>, CommandError> {
        parse_command(s.as_bytes())
    }

    #[test]
    fn simple_verbs_case_insensitive() {
        assert_eq!(p("EHLO client.example\r\n"), Ok(C::Ehlo("client.example")));
        assert_eq!(p("ehlo [192.0.2.1]"), Ok(C::Ehlo("[192.0.2.1]")));
        assert_eq!(p("HeLo x"), Ok(C::Helo("x")));
        assert_eq!(p("data"), Ok(C::Data));
        assert_eq!(p("RSET\r\n"), Ok(C::Rset));
        assert_eq!(p("noop anything goes"), Ok(C::Noop));
        assert_eq!(p("QUIT"), Ok(C::Quit));
        assert_eq!(p("QUIT "), Ok(C::Quit));
        assert_eq!(p("vrfy bob"), Ok(C::Vrfy("bob")));
        assert_eq!(p("EXPN list"), Ok(C::Expn("list")));
        assert_eq!(p("HELP"), Ok(C::Help));
        assert_eq!(p("HELP MAIL"), Ok(C::Help));
        assert_eq!(p("starttls"), Ok(C::StartTls));
    }

    #[test]
    fn simple_verb_errors() {
        assert_eq!(p("EHLO"), Err(E::Syntax));
        assert_eq!(p("EHLO "), Err(E::Syntax));
        assert_eq!(p("HELO"), Err(E::Syntax));
        assert_eq!(p("EHLO a b"), Err(E::Syntax));
        assert_eq!(p("EHLO é"), Err(E::Syntax));
        assert_eq!(p("DATA x"), Err(E::Syntax));
        assert_eq!(p("RSET x"), Err(E::Syntax));
        assert_eq!(p("QUIT now"), Err(E::Syntax));
        assert_eq!(p("VRFY"), Err(E::Syntax));
        assert_eq!(p("STARTTLS x"), Err(E::Syntax));
        assert_eq!(p("FOO"), Err(E::Unrecognized));
        assert_eq!(p(""), Err(E::Unrecognized));
        assert_eq!(p("MAILFROM:<a@b>"), Err(E::Unrecognized));
        assert_eq!(p("EHL\0O x"), Err(E::InvalidCharacter));
        assert_eq!(p("NOOP \0"), Err(E::InvalidCharacter));
        assert_eq!(p("NOOP a\rb"), Err(E::InvalidCharacter));
        assert_eq!(parse_command(b"NOOP \xff\xfe"), Err(E::InvalidCharacter));
    }

    #[test]
    fn mail_from() {
        assert_eq!(
            p("MAIL FROM:<a@example.org>"),
            Ok(C::Mail {
                path: "a@example.org",
                params: MailParams::default()
            })
        );
        assert_eq!(
            p("mail from:<>"),
            Ok(C::Mail {
                path: "",
                params: MailParams::default()
            })
        );
        assert_eq!(
            p("MAIL FROM: <a@b.c>"),
            Ok(C::Mail {
                path: "a@b.c",
                params: MailParams::default()
            })
        );
        assert_eq!(
            p(
                "MAIL FROM:<@relay.example,@r2.example:a@b.c> SIZE=100 BODY=8BITMIME SMTPUTF8 AUTH=<>"
            ),
            Ok(C::Mail {
                path: "a@b.c",
                params: MailParams {
                    size: Some(100),
                    body: Some(Body::EightBitMime),
                    smtputf8: true,
                    auth: Some("<>"),
                    ..Default::default()
                }
            })
        );
        assert_eq!(
            p("MAIL FROM:<\"john > doe\"@b.c> body=7bit"),
            Ok(C::Mail {
                path: "\"john > doe\"@b.c",
                params: MailParams {
                    body: Some(Body::SevenBit),
                    ..Default::default()
                }
            })
        );
        assert_eq!(
            p("MAIL FROM:<a@[192.0.2.1]> SIZE=99999999999999999999999"),
            Ok(C::Mail {
                path: "a@[192.0.2.1]",
                params: MailParams {
                    size: Some(usize::MAX),
                    ..Default::default()
                }
            })
        );
        assert!(p("MAIL FROM:<a@[IPv6:2001:db8::1]>").is_ok());
        assert!(p("MAIL FROM:<jörg@bücher.example> SMTPUTF8").is_ok());
    }

    #[test]
    fn mail_from_errors() {
        assert_eq!(p("MAIL"), Err(E::Syntax));
        assert_eq!(p("MAIL TO:<a@b>"), Err(E::Syntax));
        assert_eq!(p("MAIL FROM:a@b"), Err(E::Syntax));
        assert_eq!(p("MAIL FROM:<a@b"), Err(E::Syntax));
        assert_eq!(p("MAIL FROM:<a@b>SIZE=1"), Err(E::Syntax));
        assert_eq!(p("MAIL FROM:<a@b> SIZE="), Err(E::Syntax));
        assert_eq!(p("MAIL FROM:<a@b> SIZE=-1"), Err(E::Syntax));
        assert_eq!(p("MAIL FROM:<a@b> SIZE=1 SIZE=2"), Err(E::Syntax));
        assert_eq!(p("MAIL FROM:<a@b> SMTPUTF8=yes"), Err(E::Syntax));
        assert_eq!(
            p("MAIL FROM:<a@b> BODY=BINARYMIME"),
            Err(E::UnknownParameter)
        );
        assert_eq!(p("MAIL FROM:<a@b> FOO=BAR"), Err(E::UnknownParameter));
        assert_eq!(p("MAIL FROM:<ab>"), Err(E::BadSender));
        assert_eq!(p("MAIL FROM:<a@>"), Err(E::BadSender));
        assert_eq!(p("MAIL FROM:<@b>"), Err(E::BadSender));
        assert_eq!(p("MAIL FROM:<a..b@c>"), Err(E::BadSender));
        assert_eq!(p("MAIL FROM:<.a@c>"), Err(E::BadSender));
        assert_eq!(p("MAIL FROM:<a b@c>"), Err(E::BadSender));
        assert_eq!(p("MAIL FROM:<a@-c.d>"), Err(E::BadSender));
        assert_eq!(p("MAIL FROM:<a@c..d>"), Err(E::BadSender));
        assert_eq!(p("MAIL FROM:<a@[300.1.1.1]>"), Err(E::BadSender));
        assert_eq!(p("MAIL FROM:<\"unterminated@c>"), Err(E::Syntax));
        assert_eq!(p("MAIL FROM:<postmaster>"), Err(E::BadSender));
        let long_local = format!("MAIL FROM:<{}@b.c>", "a".repeat(65));
        assert_eq!(p(&long_local), Err(E::BadSender));
        let long_path = format!("MAIL FROM:<a@{}.c>", "b.".repeat(130));
        assert_eq!(p(&long_path), Err(E::Syntax));
    }

    #[test]
    fn rcpt_to() {
        assert_eq!(
            p("RCPT TO:<bob@example.org>"),
            Ok(C::Rcpt {
                path: "bob@example.org",
                params: RcptParams::default()
            })
        );
        assert_eq!(
            p("rcpt to:<Postmaster>"),
            Ok(C::Rcpt {
                path: "Postmaster",
                params: RcptParams::default()
            })
        );
        assert_eq!(
            p("RCPT TO:<@x.y:bob@example.org>"),
            Ok(C::Rcpt {
                path: "bob@example.org",
                params: RcptParams::default()
            })
        );
        assert_eq!(
            p("RCPT TO:<\"a b\"@example.org>"),
            Ok(C::Rcpt {
                path: "\"a b\"@example.org",
                params: RcptParams::default()
            })
        );
        assert_eq!(p("RCPT TO:<>"), Err(E::BadRecipient));
        assert_eq!(p("RCPT TO:<bob>"), Err(E::BadRecipient));
        assert_eq!(p("RCPT TO:<@x.y,bob@example.org>"), Err(E::BadRecipient));
        assert_eq!(p("RCPT TO:bob@example.org"), Err(E::Syntax));
        assert_eq!(p("RCPT FROM:<bob@example.org>"), Err(E::Syntax));
        assert_eq!(
            p("RCPT TO:<bob@example.org> FOO=1"),
            Err(E::UnknownParameter)
        );
    }

    #[test]
    fn dsn_parameters() {
        assert_eq!(
            p("MAIL FROM:<a@b.c> RET=hdrs ENVID=QQ314159+2B"),
            Ok(C::Mail {
                path: "a@b.c",
                params: MailParams {
                    ret: Some(Ret::Headers),
                    envid: Some("QQ314159+2B"),
                    ..Default::default()
                }
            })
        );
        assert_eq!(
            p("RCPT TO:<bob@example.org> NOTIFY=SUCCESS,failure ORCPT=rfc822;Bob+40x.test"),
            Ok(C::Rcpt {
                path: "bob@example.org",
                params: RcptParams {
                    notify: Notify(Notify::SUCCESS | Notify::FAILURE),
                    orcpt: Some("rfc822;Bob+40x.test"),
                }
            })
        );
        assert_eq!(
            p("RCPT TO:<b@x.y> NOTIFY=NEVER"),
            Ok(C::Rcpt {
                path: "b@x.y",
                params: RcptParams {
                    notify: Notify(Notify::NEVER),
                    orcpt: None
                }
            })
        );
        for bad in [
            "MAIL FROM:<a@b.c> RET=ALL",
            "MAIL FROM:<a@b.c> RET=FULL RET=HDRS",
            "MAIL FROM:<a@b.c> ENVID=a=b",
            "MAIL FROM:<a@b.c> ENVID=a+2g",
            "MAIL FROM:<a@b.c> ENVID=a+2",
            "RCPT TO:<b@x.y> NOTIFY=NEVER,SUCCESS",
            "RCPT TO:<b@x.y> NOTIFY=SUCCESS,SUCCESS",
            "RCPT TO:<b@x.y> NOTIFY=",
            "RCPT TO:<b@x.y> NOTIFY=SOMETIMES",
            "RCPT TO:<b@x.y> NOTIFY=FAILURE NOTIFY=DELAY",
            "RCPT TO:<b@x.y> ORCPT=rfc822",
            "RCPT TO:<b@x.y> ORCPT=;b@x.y",
            "RCPT TO:<b@x.y> ORCPT=rfc822;",
            "RCPT TO:<b@x.y> ORCPT=rfc822;a=b",
        ] {
            assert_eq!(p(bad), Err(E::Syntax), "{bad}");
        }
        let long = format!("MAIL FROM:<a@b.c> ENVID={}", "x".repeat(101));
        assert_eq!(p(&long), Err(E::Syntax));
        assert!(valid_xtext("a+2B+3Dz"));
        assert!(!valid_xtext("a b"));
        assert!(!valid_xtext("é"));
    }

    #[test]
    fn bdat() {
        assert_eq!(
            p("BDAT 100"),
            Ok(C::Bdat {
                size: 100,
                last: false
            })
        );
        assert_eq!(
            p("bdat 0 last"),
            Ok(C::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(p("BDAT"), Err(E::Syntax));
        assert_eq!(p("BDAT x"), Err(E::Syntax));
        assert_eq!(p("BDAT -1"), Err(E::Syntax));
        assert_eq!(p("BDAT 1 FIRST"), Err(E::Syntax));
        assert_eq!(p("BDAT 1 LAST x"), Err(E::Syntax));
        assert_eq!(p("BDAT 99999999999999999999"), Err(E::Syntax));
    }

    #[test]
    fn auth() {
        assert_eq!(
            p("AUTH PLAIN"),
            Ok(C::Auth {
                mechanism: "PLAIN",
                initial: None
            })
        );
        assert_eq!(
            p("auth plain AGEAYg=="),
            Ok(C::Auth {
                mechanism: "plain",
                initial: Some("AGEAYg==")
            })
        );
        assert_eq!(
            p("AUTH LOGIN ="),
            Ok(C::Auth {
                mechanism: "LOGIN",
                initial: Some("=")
            })
        );
        assert_eq!(p("AUTH"), Err(E::Syntax));
        assert_eq!(p("AUTH PLAIN a b"), Err(E::Syntax));
    }
}
