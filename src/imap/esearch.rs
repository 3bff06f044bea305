//! Result options of SEARCH and SORT: ESEARCH (RFC 4731), ESORT and PARTIAL (RFC 5267) and
//! SAVE (SEARCHRES, RFC 5182).
//!
//! A SEARCH or SORT result is a list of view indices in result order (ascending for SEARCH,
//! the requested order for SORT). This module turns it into the response the client asked
//! for and, with `RETURN (SAVE)`, into the saved result that `$` refers to later
//! ([`super::searchres`]).
//!
//! PARTIAL is accepted as RFC 5267 §4.4 defines it, plus the negative ranges of RFC 9394. The
//! CONTEXT hint is accepted; UPDATE (RFC 5267 §4.3) keeps the result live, see
//! [`super::context`]. Neither is a result item: alone they mean ALL, like an empty list.

use super::codec::SearchReturn;
use super::sequence::format_sorted;
use crate::imap_w;
use crate::store::MessageMeta;

/// `PARTIAL low:high`: 1-based positions in the result, or (RFC 9394) negative ones counted
/// from its end (`-1:-10` are the last ten). Both ends have the same sign, low <= high in
/// magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialRange {
    pub first: i64,
    pub last: i64,
}

impl PartialRange {
    /// Parse `N:M` or `-N:-M` (either order; written back normalized).
    pub fn parse(s: &str) -> Option<PartialRange> {
        let (a, b) = s.split_once(':')?;
        let num = |t: &str| -> Option<i64> {
            let (neg, digits) = match t.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, t),
            };
            if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let n: i64 = digits.parse().ok()?;
            if n == 0 || n > i64::from(u32::MAX) {
                return None;
            }
            Some(if neg { -n } else { n })
        };
        let (a, b) = (num(a)?, num(b)?);
        if (a < 0) != (b < 0) {
            return None;
        }
        let (first, last) = if a.abs() <= b.abs() { (a, b) } else { (b, a) };
        Some(PartialRange { first, last })
    }

    /// The slice of a result of `len` entries this range selects.
    pub fn slice(&self, len: usize) -> std::ops::Range<usize> {
        let len = len as i64;
        let (lo, hi) = if self.first > 0 {
            (self.first - 1, self.last)
        } else {
            (len + self.last, len + self.first + 1)
        };
        let clamp = |v: i64| v.clamp(0, len) as usize;
        clamp(lo)..clamp(hi).max(clamp(lo))
    }
}

impl std::fmt::Display for PartialRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.first, self.last)
    }
}

/// Parse the words of `RETURN (...)`. An empty list means `ALL` (RFC 4731 §3.1).
pub fn parse_return_options(words: &[String]) -> Result<SearchReturn, String> {
    let mut r = SearchReturn::default();
    let mut words = words.iter();
    while let Some(w) = words.next() {
        match w.to_ascii_uppercase().as_str() {
            "MIN" => r.min = true,
            "MAX" => r.max = true,
            "ALL" => r.all = true,
            "COUNT" => r.count = true,
            "SAVE" => r.save = true,
            "UPDATE" => r.update = true,
            "CONTEXT" => r.context = true,
            "PARTIAL" => {
                let range = words
                    .next()
                    .and_then(|w| PartialRange::parse(w))
                    .ok_or_else(|| "PARTIAL needs a range such as 1:100".to_string())?;
                if r.partial.replace(range).is_some() {
                    return Err("PARTIAL given twice".into());
                }
            }
            other => return Err(format!("Unknown RETURN option {other}")),
        }
    }
    // RFC 5267 §4.4: PARTIAL and ALL are mutually exclusive.
    if r.partial.is_some() && r.all {
        return Err("PARTIAL and ALL cannot be combined".into());
    }
    // SAVE alone answers nothing (RFC 5182 §2.1), but a live result needs the client to have
    // its starting point: with UPDATE, no result item still means ALL.
    if r.is_empty() && (!r.save || r.update) {
        r.all = true;
    }
    Ok(r)
}

/// The indices (into `result`) of the entries `RETURN (SAVE)` keeps: only MIN and/or MAX when
/// those are the only other options, else all (RFC 5182 §2.1).
pub fn saved_positions(r: &SearchReturn, len: usize) -> Vec<usize> {
    if len == 0 {
        return vec![];
    }
    if (r.min || r.max) && !r.all && !r.count && r.partial.is_none() {
        let mut v = Vec::new();
        if r.min {
            v.push(0);
        }
        if r.max && (len > 1 || !r.min) {
            v.push(len - 1);
        }
        return v;
    }
    (0..len).collect()
}

/// Write `* ESEARCH (TAG "t") [UID] ...` for a result in result order. `numbers` are message
/// numbers or UIDs as the command asked. For SEARCH the result is ascending, so MIN/MAX are its
/// ends either way; for SORT they are the first and last in sort order (RFC 5267 §3.2).
pub fn write_esearch(
    out: &mut Vec<u8>,
    tag: &str,
    uid: bool,
    r: &SearchReturn,
    numbers: &[u32],
    modseq: Option<u64>,
) {
    // RFC 5182 §2.1: SAVE alone answers no ESEARCH.
    if r.save && r.is_empty() {
        return;
    }
    imap_w!(out, "* ESEARCH (TAG \"{tag}\")");
    if uid {
        out.extend_from_slice(b" UID");
    }
    if let (Some(first), Some(last)) = (numbers.first(), numbers.last()) {
        if r.min {
            imap_w!(out, " MIN {first}");
        }
        if r.max {
            imap_w!(out, " MAX {last}");
        }
        if r.all {
            imap_w!(out, " ALL {}", format_sorted(numbers));
        }
    }
    if r.count {
        imap_w!(out, " COUNT {}", numbers.len());
    }
    if let Some(p) = r.partial {
        let part = &numbers[p.slice(numbers.len())];
        if part.is_empty() {
            imap_w!(out, " PARTIAL ({p} NIL)");
        } else {
            imap_w!(out, " PARTIAL ({p} {})", format_sorted(part));
        }
    }
    if let Some(m) = modseq.filter(|_| !numbers.is_empty()) {
        imap_w!(out, " MODSEQ {m}");
    }
    out.extend_from_slice(b"\r\n");
}

/// Message numbers (1-based view positions) or UIDs of a result given as view indices.
pub fn numbers(view: &[MessageMeta], indices: &[usize], uid: bool) -> Vec<u32> {
    indices
        .iter()
        .map(|&i| if uid { view[i].uid } else { i as u32 + 1 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    }

    #[test]
    fn return_options() {
        let r = parse_return_options(&words("min Max COUNT")).unwrap();
        assert!(r.min && r.max && r.count && !r.all && !r.save);
        assert!(parse_return_options(&[]).unwrap().all);
        let r = parse_return_options(&words("SAVE")).unwrap();
        assert!(r.save && !r.all);
        let r = parse_return_options(&words("SAVE UPDATE")).unwrap();
        assert!(r.save && r.update && r.all);
        let r = parse_return_options(&words("context update")).unwrap();
        assert!(r.context && r.update && r.all && !r.count);
        let r = parse_return_options(&words("CONTEXT SAVE")).unwrap();
        assert!(r.context && r.save && !r.all);
        let r = parse_return_options(&words("PARTIAL 1:10 COUNT")).unwrap();
        assert_eq!(r.partial, Some(PartialRange { first: 1, last: 10 }));
        let r = parse_return_options(&words("PARTIAL -1:-5")).unwrap();
        assert_eq!(
            r.partial,
            Some(PartialRange {
                first: -1,
                last: -5
            })
        );
        assert_eq!(
            parse_return_options(&words("PARTIAL 10:1"))
                .unwrap()
                .partial,
            Some(PartialRange { first: 1, last: 10 })
        );
    }

    #[test]
    fn hostile_return_options() {
        for bad in [
            "PARTIAL",
            "PARTIAL 0:5",
            "PARTIAL 1:0",
            "PARTIAL -1:5",
            "PARTIAL 1:",
            "PARTIAL :5",
            "PARTIAL 1:99999999999",
            "PARTIAL 1:4294967296",
            "PARTIAL a:b",
            "PARTIAL 1:2 PARTIAL 3:4",
            "PARTIAL 1:2 ALL",
            "PARTIAL +1:2",
            "PARTIAL --1:-2",
            "BOGUS",
            "MIN MAX x",
        ] {
            assert!(parse_return_options(&words(bad)).is_err(), "{bad}");
        }
        assert!(parse_return_options(&words("PARTIAL 1:4294967295")).is_ok());
    }

    #[test]
    fn partial_slices() {
        let p = |s| PartialRange::parse(s).unwrap();
        assert_eq!(p("1:3").slice(10), 0..3);
        assert_eq!(p("9:20").slice(10), 8..10);
        assert_eq!(p("11:20").slice(10), 10..10);
        assert_eq!(p("-1:-3").slice(10), 7..10);
        assert_eq!(p("-9:-20").slice(10), 0..2);
        assert_eq!(p("-11:-20").slice(10), 0..0);
        assert_eq!(p("1:4294967295").slice(3), 0..3);
    }

    #[test]
    fn esearch_lines() {
        let mut out = Vec::new();
        let r = parse_return_options(&words("MIN MAX COUNT PARTIAL 2:3")).unwrap();
        write_esearch(&mut out, "a", true, &r, &[9, 4, 5, 7], None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* ESEARCH (TAG \"a\") UID MIN 9 MAX 7 COUNT 4 PARTIAL (2:3 4:5)\r\n"
        );
        let mut out = Vec::new();
        write_esearch(&mut out, "b", false, &r, &[], Some(5));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* ESEARCH (TAG \"b\") COUNT 0 PARTIAL (2:3 NIL)\r\n"
        );
        let mut out = Vec::new();
        let save = parse_return_options(&words("SAVE")).unwrap();
        write_esearch(&mut out, "c", false, &save, &[1, 2], None);
        assert!(out.is_empty());
        assert_eq!(saved_positions(&save, 3), vec![0, 1, 2]);
        let min_max = parse_return_options(&words("SAVE MIN MAX")).unwrap();
        assert_eq!(saved_positions(&min_max, 3), vec![0, 2]);
        assert_eq!(saved_positions(&min_max, 1), vec![0]);
        let min_count = parse_return_options(&words("SAVE MIN COUNT")).unwrap();
        assert_eq!(saved_positions(&min_count, 3), vec![0, 1, 2]);
    }
}
