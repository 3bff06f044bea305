//! I18NLEVEL=1 (RFC 5255 §4): SEARCH and SORT compare strings with the `i;unicode-casemap`
//! comparator (RFC 5051) instead of `i;ascii-casemap`, so `SUBJECT café` finds `CAFÉ` and
//! `Cafe\u{301}`, and SORT orders non-ASCII names the same whatever their case.
//!
//! [`casemap`] is the comparator's key: each character is mapped to its simple titlecase, the
//! result is decomposed (NFKD), and the decomposed characters are titlecased once more.
//! RFC 5051 stops after the decomposition; the second pass makes the key idempotent
//! (`casemap(casemap(s)) == casemap(s)`), which substring matching needs: without it `ﬁ`
//! decomposes to a lower-case `fi` that no titlecased needle can contain. Keys are compared
//! octet by octet (equality, substring, and SORT's order), as RFC 5051 §2 specifies.
//!
//! Level 2 (the COMPARATOR command) is not offered.

use unicode_normalization::UnicodeNormalization;

/// The `i;unicode-casemap` key of `s`.
pub fn casemap(s: &str) -> String {
    if s.is_ascii() {
        // Titlecase of ASCII is upper case, and ASCII has no decompositions.
        return s.to_ascii_uppercase();
    }
    s.chars()
        .map(simple_titlecase)
        .nfkd()
        .map(simple_titlecase)
        .collect()
}

/// Unicode's simple titlecase mapping. It equals the simple uppercase mapping except for the
/// four digraph triples (DŽ/Dž/dž, LJ/Lj/lj, NJ/Nj/nj, DZ/Dz/dz), which title-case to their
/// middle form. Rust only offers the *full* uppercase mapping, which differs from the simple
/// one where it expands (ß → SS, ᾀ → ἈΙ); those characters have no simple uppercase of their
/// own except the Greek letters with iota subscript, whose capital and small forms are both
/// mapped to the small one here so they still compare equal.
fn simple_titlecase(c: char) -> char {
    match c {
        '\u{01C4}'..='\u{01C6}' => '\u{01C5}',
        '\u{01C7}'..='\u{01C9}' => '\u{01C8}',
        '\u{01CA}'..='\u{01CC}' => '\u{01CB}',
        '\u{01F1}'..='\u{01F3}' => '\u{01F2}',
        _ => {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => {
                    let mut low = c.to_lowercase();
                    match (low.next(), low.next()) {
                        (Some(l), None) => l,
                        _ => c,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_decomposition_are_folded() {
        assert_eq!(casemap("Hello, World"), "HELLO, WORLD");
        // Precomposed and decomposed forms, any case.
        let e = casemap("café");
        assert_eq!(e, "CAFE\u{301}");
        assert_eq!(casemap("CAFÉ"), e);
        assert_eq!(casemap("cafe\u{301}"), e);
        // Compatibility decompositions: ligatures, full-width letters.
        assert_eq!(casemap("\u{fb01}le"), "FILE");
        assert_eq!(casemap("\u{ff21}\u{ff42}"), "AB");
        // Titlecase, not uppercase, for the digraphs; all three forms are one key.
        assert_eq!(casemap("\u{01C6}"), casemap("\u{01C4}"));
        assert_eq!(casemap("\u{01C6}"), casemap("\u{01C5}"));
        // Greek final and medial sigma, Cyrillic, German sharp s (no simple uppercase).
        assert_eq!(casemap("ς"), casemap("Σ"));
        assert_eq!(casemap("σ"), "Σ");
        assert_eq!(casemap("привет"), casemap("ПРИВЕТ"));
        assert_eq!(casemap("straße"), "STRAßE");
        assert_eq!(casemap("\u{1F80}"), casemap("\u{1F88}"));
        // Dotless i titlecases to I (as RFC 5051's tables have it); accents still count.
        assert_eq!(casemap("ı"), "I");
        assert_ne!(casemap("resume"), casemap("résumé"));
    }

    #[test]
    fn the_key_is_idempotent() {
        for s in [
            "café",
            "\u{fb01}",
            "\u{01C5}",
            "\u{1F80}",
            "ǅungla",
            "Straße",
            "\u{2126}",
            "㎏",
            "\u{0130}stanbul",
        ] {
            let once = casemap(s);
            assert_eq!(casemap(&once), once, "{s}");
        }
    }
}
