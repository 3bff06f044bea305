//! POP3 command lines: framing ([`split_line`]) and parsing ([`parse_command`]).
//!
//! Parsing borrows from the input buffer; nothing is allocated. Keywords are case-insensitive,
//! arguments are separated by runs of spaces/tabs (RFC 1939 says one space; we are liberal),
//! and lines may end in CRLF or a bare LF.

use memchr::memchr;
use std::fmt;

/// One parsed POP3 command (RFC 1939, RFC 2449, RFC 2595, RFC 5034, RFC 6856).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    User(&'a str),
    /// The password is the rest of the line after the keyword and one separator, verbatim
    /// (passwords may contain spaces).
    Pass(&'a str),
    /// `AUTH` alone lists the mechanisms; `AUTH mech [initial-response]` starts an exchange.
    Auth {
        mechanism: Option<&'a str>,
        initial_response: Option<&'a str>,
    },
    Stls,
    Capa,
    Utf8,
    Quit,
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Top {
        msg: u32,
        lines: u32,
    },
    Uidl(Option<u32>),
}

impl fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::User(u) => write!(f, "USER {u:?}"),
            Command::Pass(_) => f.write_str("PASS <redacted>"),
            Command::Auth {
                mechanism,
                initial_response,
            } => write!(
                f,
                "AUTH {mechanism:?}{}",
                if initial_response.is_some() {
                    " <initial response>"
                } else {
                    ""
                }
            ),
            Command::Stls => f.write_str("STLS"),
            Command::Capa => f.write_str("CAPA"),
            Command::Utf8 => f.write_str("UTF8"),
            Command::Quit => f.write_str("QUIT"),
            Command::Stat => f.write_str("STAT"),
            Command::List(n) => write!(f, "LIST {n:?}"),
            Command::Retr(n) => write!(f, "RETR {n}"),
            Command::Dele(n) => write!(f, "DELE {n}"),
            Command::Noop => f.write_str("NOOP"),
            Command::Rset => f.write_str("RSET"),
            Command::Top { msg, lines } => write!(f, "TOP {msg} {lines}"),
            Command::Uidl(n) => write!(f, "UIDL {n:?}"),
        }
    }
}

/// Why a command line was rejected. [`ParseError::message`] is the text after `-ERR `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Empty (or all-whitespace) line.
    Empty,
    /// The line contains a NUL byte.
    Nul,
    /// The line is not valid UTF-8.
    NotUtf8,
    /// Unknown command keyword (APOP included: not supported).
    Unknown,
    MissingArgument,
    TooManyArguments,
    /// A message number is not a decimal number that fits in 32 bits, or a line count is not
    /// decimal digits.
    InvalidNumber,
}

impl ParseError {
    pub fn message(self) -> &'static str {
        match self {
            ParseError::Empty => "Empty command",
            ParseError::Nul => "NUL byte in command line",
            ParseError::NotUtf8 => "Command line is not valid UTF-8",
            ParseError::Unknown => "Unknown command",
            ParseError::MissingArgument => "Missing argument",
            ParseError::TooManyArguments => "Too many arguments",
            ParseError::InvalidNumber => "Invalid number",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}
impl std::error::Error for ParseError {}

/// Result of looking for the next line in a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line, without its CRLF/LF; `consumed` includes the terminator.
    Complete { line: &'a [u8], consumed: usize },
    /// No line terminator yet and the data is not (yet) too long: read more.
    Incomplete,
    /// The line is longer than allowed. `consumed` bytes should be dropped; if `complete` is
    /// false the terminator has not been seen yet and the caller must keep discarding until it is.
    TooLong { consumed: usize, complete: bool },
}

/// Find the next line in `input`. A line longer than `max_line` octets (excluding its CRLF) is
/// [`Line::TooLong`].
pub fn split_line(input: &[u8], max_line: usize) -> Line<'_> {
    match memchr(b'\n', input) {
        Some(i) => {
            let line = &input[..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max_line {
                Line::TooLong {
                    consumed: i + 1,
                    complete: true,
                }
            } else {
                Line::Complete {
                    line,
                    consumed: i + 1,
                }
            }
        }
        // +1: a line of exactly max_line octets may be waiting for the LF after its CR.
        None if input.len() > max_line.saturating_add(1) => Line::TooLong {
            consumed: input.len(),
            complete: false,
        },
        None => Line::Incomplete,
    }
}

fn is_sep(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// A message number: decimal digits only, fitting in u32. (0 parses; the session answers
/// "no such message".)
fn msg_number(s: &str) -> Result<u32, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::InvalidNumber);
    }
    s.parse().map_err(|_| ParseError::InvalidNumber)
}

/// A TOP line count: decimal digits only; values beyond u32 saturate (they mean "all lines").
fn line_count(s: &str) -> Result<u32, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::InvalidNumber);
    }
    Ok(s.parse().unwrap_or(u32::MAX))
}

/// Parse one command line (a trailing CRLF or LF, if present, is ignored).
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if memchr(0, line).is_some() {
        return Err(ParseError::Nul);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let line = line.trim_start_matches(is_sep);
    let (keyword, rest) = match line.find(is_sep) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    if keyword.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut args = rest.split(is_sep).filter(|a| !a.is_empty());
    let mut next = || args.next();

    let kw = |name: &str| keyword.eq_ignore_ascii_case(name);
    let cmd = if kw("PASS") {
        // Verbatim, may contain spaces; only a CR/LF was stripped above.
        if rest.is_empty() {
            return Err(ParseError::MissingArgument);
        }
        return Ok(Command::Pass(rest));
    } else if kw("USER") {
        Command::User(next().ok_or(ParseError::MissingArgument)?)
    } else if kw("AUTH") {
        let mechanism = next();
        Command::Auth {
            mechanism,
            initial_response: next(),
        }
    } else if kw("STAT") {
        Command::Stat
    } else if kw("LIST") {
        Command::List(next().map(msg_number).transpose()?)
    } else if kw("UIDL") {
        Command::Uidl(next().map(msg_number).transpose()?)
    } else if kw("RETR") {
        Command::Retr(msg_number(next().ok_or(ParseError::MissingArgument)?)?)
    } else if kw("DELE") {
        Command::Dele(msg_number(next().ok_or(ParseError::MissingArgument)?)?)
    } else if kw("TOP") {
        let msg = msg_number(next().ok_or(ParseError::MissingArgument)?)?;
        let lines = line_count(next().ok_or(ParseError::MissingArgument)?)?;
        Command::Top { msg, lines }
    } else if kw("NOOP") {
        Command::Noop
    } else if kw("RSET") {
        Command::Rset
    } else if kw("QUIT") {
        Command::Quit
    } else if kw("CAPA") {
        Command::Capa
    } else if kw("STLS") {
        Command::Stls
    } else if kw("UTF8") {
        Command::Utf8
    } else {
        return Err(ParseError::Unknown);
    };
    if next().is_some() {
        return Err(ParseError::TooManyArguments);
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command<'_>, ParseError> {
        parse_command(s.as_bytes())
    }

    #[test]
    fn simple_commands_any_case() {
        for (text, cmd) in [
            ("STAT", Command::Stat),
            ("NOOP", Command::Noop),
            ("RSET", Command::Rset),
            ("QUIT", Command::Quit),
            ("CAPA", Command::Capa),
            ("STLS", Command::Stls),
            ("UTF8", Command::Utf8),
        ] {
            assert_eq!(p(text), Ok(cmd));
            assert_eq!(p(&text.to_lowercase()), Ok(cmd));
            assert_eq!(p(&format!("{text}\r\n")), Ok(cmd));
            assert_eq!(p(&format!("{text}\n")), Ok(cmd));
            assert_eq!(p(&format!("{text} ")), Ok(cmd), "trailing space");
            assert_eq!(p(&format!("{text} x")), Err(ParseError::TooManyArguments));
        }
        assert_eq!(p("sTaT"), Ok(Command::Stat));
    }

    #[test]
    fn user_pass() {
        assert_eq!(p("USER alice"), Ok(Command::User("alice")));
        assert_eq!(
            p("user  alice@example.org "),
            Ok(Command::User("alice@example.org"))
        );
        assert_eq!(p("USER"), Err(ParseError::MissingArgument));
        assert_eq!(p("USER "), Err(ParseError::MissingArgument));
        assert_eq!(p("USER a b"), Err(ParseError::TooManyArguments));
        assert_eq!(p("PASS secret"), Ok(Command::Pass("secret")));
        assert_eq!(p("pass with spaces "), Ok(Command::Pass("with spaces ")));
        assert_eq!(p("PASS \r\n"), Err(ParseError::MissingArgument));
        assert_eq!(p("PASS"), Err(ParseError::MissingArgument));
        assert_eq!(p("PASS p\u{e4}ss"), Ok(Command::Pass("p\u{e4}ss")));
        assert!(!format!("{:?}", p("PASS hunter2").unwrap()).contains("hunter2"));
    }

    #[test]
    fn auth() {
        assert_eq!(
            p("AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial_response: None
            })
        );
        assert_eq!(
            p("auth plain"),
            Ok(Command::Auth {
                mechanism: Some("plain"),
                initial_response: None
            })
        );
        assert_eq!(
            p("AUTH PLAIN AGFsaWNlAHB3"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN"),
                initial_response: Some("AGFsaWNlAHB3")
            })
        );
        assert_eq!(
            p("AUTH PLAIN ="),
            Ok(Command::Auth {
                mechanism: Some("PLAIN"),
                initial_response: Some("=")
            })
        );
        assert_eq!(p("AUTH PLAIN a b"), Err(ParseError::TooManyArguments));
    }

    #[test]
    fn message_numbers() {
        assert_eq!(p("RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(p("retr 4294967295"), Ok(Command::Retr(u32::MAX)));
        assert_eq!(p("RETR 4294967296"), Err(ParseError::InvalidNumber));
        assert_eq!(
            p("RETR 99999999999999999999999"),
            Err(ParseError::InvalidNumber)
        );
        assert_eq!(p("RETR 0"), Ok(Command::Retr(0)));
        assert_eq!(p("RETR 007"), Ok(Command::Retr(7)));
        assert_eq!(p("RETR"), Err(ParseError::MissingArgument));
        assert_eq!(p("RETR x"), Err(ParseError::InvalidNumber));
        assert_eq!(p("RETR -1"), Err(ParseError::InvalidNumber));
        assert_eq!(p("RETR +1"), Err(ParseError::InvalidNumber));
        assert_eq!(p("RETR 1x"), Err(ParseError::InvalidNumber));
        assert_eq!(p("RETR 1 2"), Err(ParseError::TooManyArguments));
        assert_eq!(p("DELE 3"), Ok(Command::Dele(3)));
        assert_eq!(p("DELE"), Err(ParseError::MissingArgument));
        assert_eq!(p("DELE a"), Err(ParseError::InvalidNumber));
        assert_eq!(p("DELE 1 1"), Err(ParseError::TooManyArguments));
        assert_eq!(p("LIST"), Ok(Command::List(None)));
        assert_eq!(p("LIST 2"), Ok(Command::List(Some(2))));
        assert_eq!(p("LIST 2 3"), Err(ParseError::TooManyArguments));
        assert_eq!(p("LIST two"), Err(ParseError::InvalidNumber));
        assert_eq!(p("UIDL"), Ok(Command::Uidl(None)));
        assert_eq!(p("uidl 5"), Ok(Command::Uidl(Some(5))));
        assert_eq!(p("UIDL 5 5"), Err(ParseError::TooManyArguments));
        assert_eq!(p("UIDL 1e3"), Err(ParseError::InvalidNumber));
        assert_eq!(p("RETR\t1"), Ok(Command::Retr(1)));
    }

    #[test]
    fn top() {
        assert_eq!(p("TOP 1 10"), Ok(Command::Top { msg: 1, lines: 10 }));
        assert_eq!(p("top 1 0"), Ok(Command::Top { msg: 1, lines: 0 }));
        assert_eq!(
            p("TOP 1 99999999999999999999"),
            Ok(Command::Top {
                msg: 1,
                lines: u32::MAX
            })
        );
        assert_eq!(p("TOP"), Err(ParseError::MissingArgument));
        assert_eq!(p("TOP 1"), Err(ParseError::MissingArgument));
        assert_eq!(p("TOP 1 x"), Err(ParseError::InvalidNumber));
        assert_eq!(p("TOP 1 -1"), Err(ParseError::InvalidNumber));
        assert_eq!(p("TOP x 1"), Err(ParseError::InvalidNumber));
        assert_eq!(p("TOP 1 2 3"), Err(ParseError::TooManyArguments));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(p(""), Err(ParseError::Empty));
        assert_eq!(p("\r\n"), Err(ParseError::Empty));
        assert_eq!(p("   "), Err(ParseError::Empty));
        assert_eq!(p("STAT\0"), Err(ParseError::Nul));
        assert_eq!(p("USER a\0b"), Err(ParseError::Nul));
        assert_eq!(parse_command(b"USER \xff\xfe"), Err(ParseError::NotUtf8));
        assert_eq!(
            p("APOP mrose c4c9334bac560ecc979e58001b3e22fb"),
            Err(ParseError::Unknown)
        );
        assert_eq!(p("LAST"), Err(ParseError::Unknown));
        assert_eq!(p("STATS"), Err(ParseError::Unknown));
        assert_eq!(p("XYZZY"), Err(ParseError::Unknown));
        assert_eq!(
            p(" STAT"),
            Ok(Command::Stat),
            "leading whitespace tolerated"
        );
    }

    #[test]
    fn framing() {
        assert_eq!(split_line(b"", 10), Line::Incomplete);
        assert_eq!(split_line(b"STAT", 10), Line::Incomplete);
        assert_eq!(
            split_line(b"STAT\r\nNOOP\r\n", 10),
            Line::Complete {
                line: b"STAT",
                consumed: 6
            }
        );
        assert_eq!(
            split_line(b"STAT\nNOOP", 10),
            Line::Complete {
                line: b"STAT",
                consumed: 5
            }
        );
        // Exactly max_line octets plus CRLF is fine, also while the LF is still missing.
        assert_eq!(split_line(b"0123456789\r", 10), Line::Incomplete);
        assert_eq!(
            split_line(b"0123456789\r\n", 10),
            Line::Complete {
                line: b"0123456789",
                consumed: 12
            }
        );
        // Overlong.
        assert_eq!(
            split_line(b"0123456789A\r\nSTAT\r\n", 10),
            Line::TooLong {
                consumed: 13,
                complete: true
            }
        );
        assert_eq!(
            split_line(b"0123456789AB", 10),
            Line::TooLong {
                consumed: 12,
                complete: false
            }
        );
    }
}
