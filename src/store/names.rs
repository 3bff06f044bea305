//! Mailbox names: the one rule set every way into the store shares.
//!
//! Names are UTF-8 (`&str`, so invalid UTF-8 cannot even be expressed here), levels are
//! separated by [`HIERARCHY_DELIMITER`], and a name must be one that every protocol can show
//! and open again: no control characters (they cannot be sent in a quoted string and some
//! clients break on them in literals), no empty level (a leading or trailing `/`, or `//`,
//! would make `LIST` show a name that differs from the one stored), and bounded sizes.
//!
//! The store's writer enforces the rules and the operator's [`MailboxLimits`]
//! (`StoreConfig::mailbox_limits`) on every name a request would create, and counts an
//! account's mailboxes there, where concurrent sessions' creates are serialized. A protocol may
//! check a name before it reaches the store to choose its answer (IMAP: `NO [TRYCREATE]` only
//! for a name that CREATE would accept).

/// The hierarchy delimiter of every account (IMAP NAMESPACE `(("" "/"))`).
pub const HIERARCHY_DELIMITER: char = '/';

/// Size limits of an account's mailboxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Longest name, in octets of UTF-8, delimiters included.
    pub max_name_bytes: usize,
    /// Longest hierarchy level (the text between two delimiters), in octets of UTF-8.
    pub max_level_bytes: usize,
    /// Most hierarchy levels in one name (`a/b/c` has 3).
    pub max_depth: usize,
    /// Most mailboxes in one account (every level counts: `a/b` is two mailboxes).
    pub max_mailboxes: usize,
}

impl MailboxLimits {
    /// Safe defaults (the embedded configuration repeats them). 255 octets per level is the
    /// file-name limit of common file systems, so a level can always become a file name in an
    /// export; 1024 octets in all keeps a name within one LIST pattern.
    pub const DEFAULT: MailboxLimits = MailboxLimits {
        max_name_bytes: 1024,
        max_level_bytes: 255,
        max_depth: 32,
        max_mailboxes: 1000,
    };

    /// The largest limits the configuration may set (names are copied into replies, list
    /// patterns are matched against them, and an account's list is sorted on every LIST).
    pub const CEILING: MailboxLimits = MailboxLimits {
        max_name_bytes: 4096,
        max_level_bytes: 4096,
        max_depth: 256,
        max_mailboxes: 100_000,
    };

    /// Checks every limit against [`Self::CEILING`] (for the configuration).
    pub fn within_ceiling(&self) -> Result<(), String> {
        let c = Self::CEILING;
        for (what, value, max) in [
            ("max_mailbox_name", self.max_name_bytes, c.max_name_bytes),
            ("max_mailbox_level", self.max_level_bytes, c.max_level_bytes),
            ("max_mailbox_depth", self.max_depth, c.max_depth),
            ("max_mailboxes", self.max_mailboxes, c.max_mailboxes),
        ] {
            if value == 0 || value > max {
                return Err(format!("{what} must be between 1 and {max}, not {value}"));
            }
        }
        Ok(())
    }
}

impl Default for MailboxLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a mailbox name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    /// A leading or trailing delimiter, or two in a row.
    EmptyLevel,
    ControlCharacter,
    TooLong,
    LevelTooLong,
    TooDeep,
}

impl NameError {
    /// A short reason, fit for a protocol reply (it names no limit values, which are the
    /// operator's business).
    pub fn reason(self) -> &'static str {
        match self {
            NameError::Empty => "empty mailbox name",
            NameError::EmptyLevel => "empty hierarchy level in mailbox name",
            NameError::ControlCharacter => "control character in mailbox name",
            NameError::TooLong => "mailbox name too long",
            NameError::LevelTooLong => "mailbox name level too long",
            NameError::TooDeep => "mailbox hierarchy too deep",
        }
    }
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Checks a name against the shared rules and the given limits.
pub fn check_name(name: &str, limits: &MailboxLimits) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > limits.max_name_bytes {
        return Err(NameError::TooLong);
    }
    // Unicode's Cc category: C0, DEL and C1. The C1 range matters too: U+0085 is a line break
    // to some clients.
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    let mut depth = 0;
    for level in name.split(HIERARCHY_DELIMITER) {
        depth += 1;
        if level.is_empty() {
            return Err(NameError::EmptyLevel);
        }
        if level.len() > limits.max_level_bytes {
            return Err(NameError::LevelTooLong);
        }
    }
    if depth > limits.max_depth {
        return Err(NameError::TooDeep);
    }
    Ok(())
}

/// The proper ancestors of a name, outermost first (`a/b/c` → `a`, `a/b`).
pub fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(HIERARCHY_DELIMITER)
        .map(move |(i, _)| &name[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: MailboxLimits = MailboxLimits {
        max_name_bytes: 20,
        max_level_bytes: 8,
        max_depth: 3,
        max_mailboxes: 10,
    };

    #[test]
    fn accepts_ordinary_names() {
        for name in ["INBOX", "a", "a/b/c", "Entw\u{fc}rf", "x y%*&", "\u{1f600}"] {
            assert_eq!(check_name(name, &L), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn refuses_hostile_names() {
        for (name, why) in [
            ("", NameError::Empty),
            ("/a", NameError::EmptyLevel),
            ("a/", NameError::EmptyLevel),
            ("a//b", NameError::EmptyLevel),
            ("/", NameError::EmptyLevel),
            ("a\0b", NameError::ControlCharacter),
            ("a\r\nb", NameError::ControlCharacter),
            ("a\u{7f}", NameError::ControlCharacter),
            ("a\u{85}", NameError::ControlCharacter),
            ("a\tb", NameError::ControlCharacter),
            ("123456789", NameError::LevelTooLong),
            ("a/b/c/d", NameError::TooDeep),
            ("12345678/12345678/123", NameError::TooLong),
        ] {
            assert_eq!(check_name(name, &L), Err(why), "{name:?}");
        }
    }

    #[test]
    fn limits_count_octets_not_characters() {
        // Eight characters, sixteen octets.
        assert_eq!(
            check_name(&"\u{e9}".repeat(8), &L),
            Err(NameError::LevelTooLong)
        );
        assert_eq!(check_name(&"\u{e9}".repeat(4), &L), Ok(()));
    }

    #[test]
    fn huge_names_are_refused_quickly() {
        let name = "a/".repeat(100_000) + "a";
        assert_eq!(
            check_name(&name, &MailboxLimits::CEILING),
            Err(NameError::TooLong)
        );
        let deep = "a/".repeat(300) + "a";
        assert_eq!(
            check_name(&deep, &MailboxLimits::CEILING),
            Err(NameError::TooDeep)
        );
    }

    #[test]
    fn ceiling_and_defaults() {
        assert!(MailboxLimits::DEFAULT.within_ceiling().is_ok());
        assert!(MailboxLimits::CEILING.within_ceiling().is_ok());
        let too_big = MailboxLimits {
            max_depth: 257,
            ..MailboxLimits::DEFAULT
        };
        assert!(too_big.within_ceiling().is_err());
        let zero = MailboxLimits {
            max_mailboxes: 0,
            ..MailboxLimits::DEFAULT
        };
        assert!(zero.within_ceiling().is_err());
    }

    #[test]
    fn ancestors_outermost_first() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }
}
