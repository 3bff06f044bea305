//! The name that is queried for a caller's domain or host name.
//!
//! Names come from hostile places: the SMTP envelope, MX answers from any DNS server, DKIM
//! `d=`/`s=` tags. Only host-name syntax goes through: letters, digits, `-` and `_` (for
//! `_dmarc`, `_domainkey`, `_mta-sts`), labels of 1 to 63 octets, at most 253 octets without
//! the final dot. That keeps out what hickory's text parser would otherwise interpret
//! (`\.` and `\DDD` escapes, a bare `.` meaning the root, `@`), spaces and control octets.
//! A Unicode name is converted to A-labels (IDNA/punycode) first. A dotted quad is an address,
//! not a name (no top-level domain is all digits), so it is refused too.

use hickory_resolver::proto::rr::Name;

/// Longest name in text form, without the final dot (255 octets in wire form, RFC 1035).
const MAX_NAME: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

/// The fully qualified name to query for `input` (one final dot allowed), or `None` if no
/// name in the DNS can match it.
pub fn query_name(input: &str) -> Option<Name> {
    let text = input.strip_suffix('.').unwrap_or(input);
    if text.is_ascii() {
        ascii_name(text)
    } else {
        // IDNA maps (lowercases, normalises) and punycodes each label; the result must then
        // pass the same checks as an ASCII name.
        let idna = Name::from_utf8(format!("{text}.")).ok()?.to_ascii();
        ascii_name(idna.strip_suffix('.').unwrap_or(&idna))
    }
}

fn ascii_name(text: &str) -> Option<Name> {
    if text.is_empty() || text.len() > MAX_NAME {
        return None;
    }
    let host_label = |label: &str| {
        (1..=MAX_LABEL).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !text.split('.').all(host_label) {
        return None;
    }
    let top_level = text.rsplit('.').next().unwrap_or(text);
    if top_level.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Name::from_ascii(format!("{text}.")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(input: &str) -> Option<String> {
        query_name(input).map(|name| {
            assert!(name.is_fqdn(), "{input:?} must be queried as a FQDN");
            name.to_ascii()
        })
    }

    #[test]
    fn ordinary_names_are_fully_qualified() {
        assert_eq!(text("example.com").as_deref(), Some("example.com."));
        assert_eq!(text("example.com.").as_deref(), Some("example.com."));
        assert_eq!(text("localhost").as_deref(), Some("localhost."));
        assert_eq!(
            text("Mail-1.Example.COM").as_deref(),
            Some("Mail-1.Example.COM.")
        );
        assert_eq!(
            text("s1._domainkey.example.com").as_deref(),
            Some("s1._domainkey.example.com.")
        );
        assert_eq!(
            text("_dmarc.example.com").as_deref(),
            Some("_dmarc.example.com.")
        );
    }

    #[test]
    fn unicode_names_become_a_labels() {
        assert_eq!(
            text("bücher.example").as_deref(),
            Some("xn--bcher-kva.example.")
        );
        assert_eq!(
            text("BÜCHER.example.").as_deref(),
            Some("xn--bcher-kva.example.")
        );
        assert_eq!(text("☃.example").as_deref(), Some("xn--n3h.example."));
    }

    #[test]
    fn length_limits() {
        let label63 = "a".repeat(63);
        assert!(text(&format!("{label63}.example")).is_some());
        assert_eq!(text(&format!("{label63}a.example")), None);
        // 4 × 63 + 3 dots = 255 > 253; 3 × 63 + 61 + 3 dots = 253.
        let long = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61));
        assert_eq!(long.len(), 253);
        assert!(text(&long).is_some());
        assert!(text(&format!("{long}.")).is_some());
        assert_eq!(text(&format!("{long}b")), None);
        assert_eq!(text(&"a.".repeat(200)), None);
    }

    #[test]
    fn hostile_and_malformed_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "example.com..",
            ".example.com",
            "a..example.com",
            "exa mple.com",
            "example.com ",
            " example.com",
            "example.com\r\n",
            "exa\0mple.com",
            "exa\tmple.com",
            "a\\.b.example.com",
            "a\\046b.example.com",
            "user@example.com",
            "example.com/path",
            "*.example.com",
            "@",
            "example.com:25",
            "[192.0.2.1]",
            "192.0.2.1",
            "192.0.2.1.",
            "10",
            "::1",
            "2001:db8::1",
            "xn--.example\u{0}",
            "bücher\u{0}.example",
            "bü cher.example",
        ] {
            assert_eq!(text(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn digits_are_fine_below_the_top_level() {
        assert_eq!(text("1.2.3.example").as_deref(), Some("1.2.3.example."));
        assert_eq!(text("123.com").as_deref(), Some("123.com."));
        assert_eq!(text("example.x1").as_deref(), Some("example.x1."));
    }
}
