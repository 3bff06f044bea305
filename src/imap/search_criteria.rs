//! The SEARCH command's criteria, parsed without recursion and with a nesting limit of our own.
//!
//! imap-codec parses `search-key` recursively and stops at a fixed depth of 9
//! (`search_key(9)` in its `search.rs`), so ten nested `OR`s — which clients produce when they
//! search for a dozen words in several fields — were refused as a syntax error. Here the
//! structure (`OR`, `NOT`, parentheses, the implicit AND of a list) is parsed with an explicit
//! stack, so a hostile command with 100 000 nested `OR`s costs one pass and no stack, and the
//! nesting limit is the operator's (`[limits] imap_max_search_depth`). Each leaf key
//! (`FROM x`, `SINCE 1-Feb-2024`, a sequence set, ...) is still parsed and validated by
//! imap-codec, from its own bytes, so the leaf grammar stays in one place.
//!
//! The tree handed on is at most `max_depth` levels deep, which bounds the recursion of
//! everything that walks it afterwards (evaluation, dropping, cloning).

use imap_codec::{
    CommandCodec,
    decode::Decoder,
    imap_types::{
        IntoStatic,
        command::{Command, CommandBody},
        core::{AString, Vec1},
        search::SearchKey,
    },
};

/// Why a SEARCH command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriteriaError {
    /// Malformed: tagged BAD.
    Syntax(&'static str),
    /// Well-formed so far, but nested deeper than the limit: tagged BAD naming the limit.
    TooDeep,
}

/// A criterion whose operands are still being read.
enum Open {
    /// `OR`, with its first operand once that is complete.
    Or(Option<SearchKey<'static>>),
    Not,
    /// `(`, with the keys read so far.
    Group(Vec<SearchKey<'static>>),
}

/// If `cmd` is a `SEARCH` or `UID SEARCH` command (with its ESEARCH `RETURN` options already
/// cut out), parse it; `None` for any other command.
pub fn parse_search_command(
    cmd: &[u8],
    max_depth: usize,
) -> Option<Result<Command<'static>, CriteriaError>> {
    let verb_at = memchr::memchr(b' ', cmd)? + 1;
    let mut at = verb_at;
    if starts_with_word(&cmd[at..], b"UID ") {
        at += 4;
    }
    if !starts_with_word(&cmd[at..], b"SEARCH ") {
        return None;
    }
    at += b"SEARCH ".len();
    Some(parse_from(cmd, at, max_depth))
}

fn parse_from(
    cmd: &[u8],
    mut at: usize,
    max_depth: usize,
) -> Result<Command<'static>, CriteriaError> {
    if starts_with_word(&cmd[at..], b"CHARSET ") {
        at = token_end(cmd, at + b"CHARSET ".len())?;
        if cmd.get(at) != Some(&b' ') {
            return Err(CriteriaError::Syntax("Missing search criteria"));
        }
        at += 1;
    }
    let (criteria, end) = parse_criteria(cmd, at, max_depth)?;
    if !matches!(&cmd[end..], b"\r\n" | b"\n") {
        return Err(CriteriaError::Syntax("Syntax error in search criteria"));
    }
    // Tag, UID and CHARSET are imap-codec's to check: give it the command with the criteria
    // replaced by ALL, then put the real criteria in.
    let mut head = cmd[..at].to_vec();
    head.extend_from_slice(b"ALL\r\n");
    let mut command = match CommandCodec::default().decode(&head) {
        Ok((b"", c)) => c.into_static(),
        _ => return Err(CriteriaError::Syntax("Syntax error")),
    };
    match &mut command.body {
        CommandBody::Search { criteria: c, .. } => *c = criteria,
        _ => return Err(CriteriaError::Syntax("Syntax error")),
    }
    Ok(command)
}

/// Parses `search-key *(SP search-key)` starting at `at`; returns the keys and where they end.
pub fn parse_criteria(
    s: &[u8],
    mut at: usize,
    max_depth: usize,
) -> Result<(Vec1<SearchKey<'static>>, usize), CriteriaError> {
    let mut top: Vec<SearchKey<'static>> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    loop {
        // A key starts at `at`: an operator opens a level, anything else is a leaf.
        let mut done = if s.get(at) == Some(&b'(') {
            push(&mut open, Open::Group(Vec::new()), max_depth)?;
            at += 1;
            continue;
        } else {
            let end = token_end(s, at)?;
            let word = &s[at..end];
            if word.eq_ignore_ascii_case(b"OR") || word.eq_ignore_ascii_case(b"NOT") {
                let op = if word.len() == 2 {
                    Open::Or(None)
                } else {
                    Open::Not
                };
                push(&mut open, op, max_depth)?;
                if s.get(end) != Some(&b' ') {
                    return Err(CriteriaError::Syntax("Missing search key"));
                }
                at = end + 1;
                continue;
            }
            if let Some(n) = super::objectid::search_key_arguments(word) {
                let mut arg = None;
                let mut leaf_end = end;
                if n == 1 {
                    if s.get(end) != Some(&b' ') {
                        return Err(CriteriaError::Syntax("Missing search key argument"));
                    }
                    leaf_end = token_end(s, end + 1)?;
                    arg = Some(&s[end + 1..leaf_end]);
                }
                let key = super::objectid::parse_search_key(word, arg, extension_day)
                    .map_err(CriteriaError::Syntax)?;
                at = leaf_end;
                Some(carrier_key(&key)?)
            } else {
                let mut leaf_end = end;
                for _ in 0..leaf_arguments(word, &s[end..]) {
                    if s.get(leaf_end) != Some(&b' ') {
                        return Err(CriteriaError::Syntax("Missing search key argument"));
                    }
                    leaf_end = token_end(s, leaf_end + 1)?;
                }
                let leaf = decode_leaf(&s[at..leaf_end])?;
                at = leaf_end;
                Some(leaf)
            }
        };
        // A key is complete: attach it, close the groups that end here, and find what follows.
        loop {
            if let Some(key) = done.take() {
                attach(&mut open, &mut top, key);
            }
            match s.get(at) {
                Some(b')') => match open.pop() {
                    Some(Open::Group(keys)) => {
                        at += 1;
                        let keys = Vec1::try_from(keys)
                            .map_err(|_| CriteriaError::Syntax("Empty parentheses"))?;
                        done = Some(SearchKey::And(keys));
                    }
                    _ => return Err(CriteriaError::Syntax("Unbalanced parenthesis")),
                },
                Some(b' ') => {
                    at += 1;
                    break;
                }
                _ if open.is_empty() => {
                    let keys = Vec1::try_from(top)
                        .map_err(|_| CriteriaError::Syntax("Missing search criteria"))?;
                    return Ok((keys, at));
                }
                _ => return Err(CriteriaError::Syntax("Incomplete search criteria")),
            }
        }
    }
}

fn push(open: &mut Vec<Open>, op: Open, max_depth: usize) -> Result<(), CriteriaError> {
    if open.len() >= max_depth {
        return Err(CriteriaError::TooDeep);
    }
    open.push(op);
    Ok(())
}

/// Gives a complete key to the criterion waiting for it, folding every criterion it completes.
fn attach(open: &mut Vec<Open>, top: &mut Vec<SearchKey<'static>>, mut key: SearchKey<'static>) {
    loop {
        match open.last_mut() {
            None => return top.push(key),
            Some(Open::Group(keys)) => return keys.push(key),
            Some(Open::Or(first @ None)) => {
                *first = Some(key);
                return;
            }
            Some(Open::Or(Some(_))) => {
                if let Some(Open::Or(Some(first))) = open.pop() {
                    key = SearchKey::Or(Box::new(first), Box::new(key));
                }
            }
            Some(Open::Not) => {
                open.pop();
                key = SearchKey::Not(Box::new(key));
            }
        }
    }
}

/// How many arguments follow a leaf key's name (RFC 9051 `search-key`, RFC 7162 MODSEQ).
/// Unknown names take none: imap-codec then reads them as a sequence set or refuses them.
fn leaf_arguments(name: &[u8], after: &[u8]) -> usize {
    const ONE: &[&[u8]] = &[
        b"BCC",
        b"BEFORE",
        b"BODY",
        b"CC",
        b"FROM",
        b"KEYWORD",
        b"LARGER",
        b"ON",
        b"SENTBEFORE",
        b"SENTON",
        b"SENTSINCE",
        b"SINCE",
        b"SMALLER",
        b"SUBJECT",
        b"TEXT",
        b"TO",
        b"UID",
        b"UNKEYWORD",
        b"OLDER",
        b"YOUNGER",
    ];
    if name.eq_ignore_ascii_case(b"HEADER") {
        2
    } else if name.eq_ignore_ascii_case(b"MODSEQ") {
        // `MODSEQ "/flags/\Seen" all 42` or `MODSEQ 42`.
        if after.starts_with(b" \"") { 3 } else { 1 }
    } else if ONE.iter().any(|k| name.eq_ignore_ascii_case(k)) {
        1
    } else {
        0
    }
}

/// The day of an IMAP date (`1-Feb-2024`, quoted or not), checked by imap-codec's grammar.
fn extension_day(date: &[u8]) -> Option<i64> {
    let mut leaf = b"ON ".to_vec();
    leaf.extend_from_slice(date);
    match decode_leaf(&leaf) {
        Ok(SearchKey::On(d)) => Some(super::search::day_of(&d)),
        _ => None,
    }
}

/// The HEADER key that carries an OBJECTID/SAVEDATE key (see [`super::objectid`]).
fn carrier_key(key: &super::objectid::ExtensionKey) -> Result<SearchKey<'static>, CriteriaError> {
    let (name, value) = key.to_carrier();
    let bad = |_| CriteriaError::Syntax("Invalid search key");
    Ok(SearchKey::Header(
        AString::try_from(name).map_err(bad)?,
        AString::try_from(value).map_err(bad)?,
    ))
}

/// Parses one leaf key through imap-codec.
fn decode_leaf(leaf: &[u8]) -> Result<SearchKey<'static>, CriteriaError> {
    let mut line = Vec::with_capacity(leaf.len() + 12);
    line.extend_from_slice(b"a SEARCH ");
    line.extend_from_slice(leaf);
    line.extend_from_slice(b"\r\n");
    match CommandCodec::default().decode(&line) {
        Ok((
            b"",
            Command {
                body: CommandBody::Search { criteria, .. },
                ..
            },
        )) if criteria.as_ref().len() == 1 => {
            let key = criteria.into_inner().pop();
            key.map(IntoStatic::into_static)
                .ok_or(CriteriaError::Syntax("Invalid search key"))
        }
        _ => Err(CriteriaError::Syntax("Invalid search key")),
    }
}

/// End of the token starting at `at`: a quoted string, a literal (`{N}` or `{N+}`, CRLF and
/// N octets, as the command reader assembled it), or a run of anything but SP, parentheses
/// and line ends (atoms, numbers, dates, sequence sets).
fn token_end(s: &[u8], at: usize) -> Result<usize, CriteriaError> {
    match s.get(at) {
        Some(b'"') => {
            let mut i = at + 1;
            loop {
                match s.get(i) {
                    Some(b'"') => return Ok(i + 1),
                    Some(b'\\') => i += 2,
                    Some(b'\r' | b'\n') | None => {
                        return Err(CriteriaError::Syntax("Unterminated quoted string"));
                    }
                    Some(_) => i += 1,
                }
            }
        }
        Some(b'{') => {
            let close = memchr::memchr(b'}', &s[at..])
                .map(|i| at + i)
                .ok_or(CriteriaError::Syntax("Bad literal"))?;
            let digits = s[at + 1..close]
                .strip_suffix(b"+")
                .unwrap_or(&s[at + 1..close]);
            let len: usize = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.len() <= 19 && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse().ok())
                .ok_or(CriteriaError::Syntax("Bad literal"))?;
            let data = if s[close + 1..].starts_with(b"\r\n") {
                close + 3
            } else if s[close + 1..].starts_with(b"\n") {
                close + 2
            } else {
                return Err(CriteriaError::Syntax("Bad literal"));
            };
            data.checked_add(len)
                .filter(|&end| end <= s.len())
                .ok_or(CriteriaError::Syntax("Truncated literal"))
        }
        _ => {
            let len = s[at..]
                .iter()
                .position(|b| matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n'))
                .unwrap_or(s.len() - at);
            if len == 0 {
                return Err(CriteriaError::Syntax("Missing search key"));
            }
            Ok(at + len)
        }
    }
}

fn starts_with_word(s: &[u8], word: &[u8]) -> bool {
    s.len() >= word.len() && s[..word.len()].eq_ignore_ascii_case(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The criteria of `SEARCH <criteria>` as imap-codec itself parses them (shallow input).
    fn by_imap_codec(criteria: &str) -> Vec<SearchKey<'static>> {
        let line = format!("a SEARCH {criteria}\r\n");
        match CommandCodec::default().decode(line.as_bytes()) {
            Ok((
                _,
                Command {
                    body: CommandBody::Search { criteria, .. },
                    ..
                },
            )) => criteria
                .into_inner()
                .into_iter()
                .map(IntoStatic::into_static)
                .collect(),
            other => panic!("imap-codec refused {criteria:?}: {other:?}"),
        }
    }

    fn ours(criteria: &str, max_depth: usize) -> Result<Vec<SearchKey<'static>>, CriteriaError> {
        let line = format!("a SEARCH {criteria}\r\n");
        parse_search_command(line.as_bytes(), max_depth)
            .expect("a SEARCH command")
            .map(|c| match c.body {
                CommandBody::Search { criteria, .. } => criteria.into_inner(),
                _ => unreachable!(),
            })
    }

    /// `OR OR ... OR k1 k2 ... kn`: n terms, n - 1 levels (left-nested).
    fn left_or_chain(n: usize) -> String {
        let mut s = "OR ".repeat(n - 1);
        s.push_str("SEEN");
        for i in 1..n {
            s.push_str(&format!(" SUBJECT w{i}"));
        }
        s
    }

    #[test]
    fn same_trees_as_imap_codec_where_it_can_parse() {
        for criteria in [
            "ALL",
            "SEEN FLAGGED",
            "OR SEEN DELETED",
            "NOT OR SEEN DELETED",
            "(SEEN (FLAGGED KEYWORD $Work))",
            "OR (SEEN FLAGGED) NOT DRAFT",
            "1:3,7 UID 5:* LARGER 10 SMALLER 99",
            "FROM \"Ren\\\"ee\" TO bob SUBJECT {6+}\r\ncaf\u{e9}!",
            "HEADER X-Priority 1 HEADER \"List-Id\" \"\"",
            "SINCE 1-Feb-2024 BEFORE \"2-Mar-2024\" SENTON 14-Nov-2023",
            "MODSEQ 42 MODSEQ \"/flags/\\\\Seen\" all 7",
            "OR OR OR OR SEEN ANSWERED DRAFT DELETED FLAGGED",
            "CC {3}\r\nx y BODY z",
        ] {
            assert_eq!(
                ours(criteria, 100),
                Ok(by_imap_codec(criteria)),
                "{criteria:?}"
            );
        }
    }

    #[test]
    fn fifty_or_terms_and_deep_parentheses() {
        let keys = ours(&left_or_chain(50), 100).unwrap();
        assert_eq!(keys.len(), 1);
        // Right-nested, as some clients write it.
        let mut right = String::new();
        for i in 1..50 {
            right.push_str(&format!("OR SUBJECT w{i} "));
        }
        right.push_str("SEEN");
        assert!(ours(&right, 100).is_ok());
        let parens = format!("{}SEEN{}", "(".repeat(60), ")".repeat(60));
        assert!(ours(&parens, 100).is_ok());
        // imap-codec alone gives up at ten levels: the reason for this module.
        let ten = left_or_chain(11);
        assert!(
            CommandCodec::default()
                .decode(format!("a SEARCH {ten}\r\n").as_bytes())
                .is_err()
        );
        assert!(ours(&ten, 100).is_ok());
    }

    #[test]
    fn depth_limit_is_exact() {
        assert!(ours(&left_or_chain(101), 100).is_ok());
        assert_eq!(ours(&left_or_chain(102), 100), Err(CriteriaError::TooDeep));
        let nots = format!("{}SEEN", "NOT ".repeat(100));
        assert!(ours(&nots, 100).is_ok());
        assert_eq!(
            ours(&format!("NOT {nots}"), 100),
            Err(CriteriaError::TooDeep)
        );
        // Sequential groups do not add up; only nesting counts.
        let flat = "(SEEN) ".repeat(500) + "ALL";
        assert!(ours(&flat, 1).is_ok());
    }

    #[test]
    fn hundred_thousand_levels_neither_overflow_nor_take_long() {
        let start = std::time::Instant::now();
        let ors = format!("{}SEEN", "OR ".repeat(100_000));
        assert_eq!(ours(&ors, 100), Err(CriteriaError::TooDeep));
        let parens = format!("{}SEEN{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(ours(&parens, 100), Err(CriteriaError::TooDeep));
        let nots = format!("{}SEEN", "NOT ".repeat(100_000));
        assert_eq!(ours(&nots, 100), Err(CriteriaError::TooDeep));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn the_deepest_tree_allowed_is_safe_to_use() {
        // At the configuration's ceiling, evaluating and dropping the tree (both recursive)
        // fit in a thread's default stack, in a debug build too.
        let depth = crate::imap::MAX_SEARCH_DEPTH_CEILING;
        let keys = ours(&left_or_chain(depth + 1), depth).unwrap();
        let key = keys.into_iter().next().unwrap();
        let meta = crate::store::MessageMeta {
            uid: 1,
            size: 10,
            internal_date: 0,
            flags: Default::default(),
            modseq: 1,
            needs_dot_stuffing: false,
            email_id: Default::default(),
            saved: None,
        };
        let mut loader = |_uid: u32| Some(b"Subject: w7\r\n\r\nx\r\n".to_vec());
        let mut m = crate::imap::search::SearchMessage::new(1, &meta, 1, 1, &mut loader);
        assert!(crate::imap::search::matches(&key, &mut m));
        assert!(crate::imap::search::needs_content(&key));
        drop(key);
    }

    #[test]
    fn malformed_criteria() {
        for bad in [
            "",
            "OR SEEN",
            "NOT",
            "(SEEN",
            "SEEN)",
            "()",
            "( SEEN)",
            "SEEN  FLAGGED",
            "FROM",
            "FROM \"unterminated",
            "SUBJECT {99+}\r\nshort",
            "SUBJECT {x}\r\nshort",
            "BEFORE 31-Foo-2024",
            "BOGUS",
            "OR SEEN DELETED extra)",
            "HEADER X-Only",
        ] {
            assert!(
                matches!(ours(bad, 100), Err(CriteriaError::Syntax(_))),
                "{bad:?} -> {:?}",
                ours(bad, 100)
            );
        }
    }

    #[test]
    fn charset_and_uid_and_other_commands() {
        let cmd = parse_search_command(b"t UID SEARCH CHARSET UTF-8 OR SEEN DRAFT\r\n", 100)
            .unwrap()
            .unwrap();
        assert_eq!(cmd.tag.inner(), "t");
        match cmd.body {
            CommandBody::Search {
                charset,
                uid,
                criteria,
            } => {
                assert!(uid);
                assert_eq!(charset.unwrap().as_ref(), "UTF-8");
                assert_eq!(criteria.as_ref().len(), 1);
            }
            _ => panic!(),
        }
        assert!(
            parse_search_command(b"t SEARCH CHARSET \"UTF-8\" ALL\r\n", 100)
                .unwrap()
                .is_ok()
        );
        assert!(
            parse_search_command(b"t SEARCH CHARSET\r\n", 100)
                .unwrap()
                .is_err()
        );
        assert!(parse_search_command(b"t FETCH 1 FLAGS\r\n", 100).is_none());
        assert!(parse_search_command(b"t SEARCHX ALL\r\n", 100).is_none());
        assert!(parse_search_command(b"t UID FETCH 1 FLAGS\r\n", 100).is_none());
        assert!(matches!(
            parse_search_command(b"bad\"tag SEARCH ALL\r\n", 100),
            Some(Err(CriteriaError::Syntax(_)))
        ));
    }
}
