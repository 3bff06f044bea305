//! Sequence sets: resolving `1:*`, `5:2`, `3,7:9` against a mailbox view, by message sequence
//! number (MSN) or by UID, and formatting UID sets compactly (COPYUID, VANISHED, ESEARCH ALL).

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::{ImapError, ImapResult};

/// Inclusive ranges of a set with `*` replaced by `star`, each range ordered low..=high.
pub fn ranges(set: &SequenceSet, star: u32) -> Vec<(u32, u32)> {
    let val = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => star,
    };
    set.0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(v) => (val(v), val(v)),
            Sequence::Range(a, b) => {
                let (a, b) = (val(a), val(b));
                (a.min(b), a.max(b))
            }
        })
        .collect()
}

/// [`ranges`] sorted and merged (overlapping or adjacent ranges joined), so expanding them
/// never yields more values than the mailbox has, however the client repeats itself.
pub fn merged_ranges(set: &SequenceSet, star: u32) -> Vec<(u32, u32)> {
    let mut r = ranges(set, star);
    r.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Resolve a message-sequence-number set against a mailbox of `exists` messages: the 0-based
/// indices, ascending and without duplicates. A number beyond `exists` is a BAD (RFC 9051
/// §6.4.x: "invalid message sequence number"); `*` in an empty mailbox selects nothing... and
/// is also an error, as there is no message to refer to.
pub fn resolve_msn(set: &SequenceSet, exists: u32) -> ImapResult<Vec<usize>> {
    if exists == 0 {
        return Err(ImapError::bad(
            "No messages in mailbox (invalid sequence set)",
        ));
    }
    let mut out = Vec::new();
    for (lo, hi) in merged_ranges(set, exists) {
        if hi > exists || lo == 0 {
            return Err(ImapError::bad("Invalid message sequence number"));
        }
        out.extend((lo - 1) as usize..hi as usize);
    }
    Ok(out)
}

/// Resolve a UID set against the ascending UIDs of the view: indices of the messages whose
/// UID is in the set (absent UIDs are ignored). `*` is the highest UID present, so `N:*`
/// always includes the last message even when N is larger (RFC 9051 §6.4.9).
pub fn resolve_uid(set: &SequenceSet, uids: &[u32]) -> Vec<usize> {
    resolve_uid_by(set, uids, |&u| u)
}

/// [`resolve_uid`] over any UID-ordered slice (e.g. the view's messages, without copying).
pub fn resolve_uid_by<T>(set: &SequenceSet, items: &[T], uid: impl Fn(&T) -> u32) -> Vec<usize> {
    let Some(max) = items.last().map(&uid) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (lo, hi) in merged_ranges(set, max) {
        let start = items.partition_point(|x| uid(x) < lo);
        let end = items.partition_point(|x| uid(x) <= hi);
        out.extend(start..end);
    }
    out
}

/// True if `uid` is in the set (with `*` meaning `star`).
pub fn contains(set: &SequenceSet, value: u32, star: u32) -> bool {
    ranges(set, star)
        .iter()
        .any(|&(lo, hi)| lo <= value && value <= hi)
}

/// Every value of a set (with `*` = `star`), ascending, for small sets such as QRESYNC known
/// UIDs. Ranges are capped at `cap` values in total.
pub fn expand(set: &SequenceSet, star: u32, cap: usize) -> Vec<u32> {
    let mut out = Vec::new();
    for (lo, hi) in ranges(set, star) {
        for v in lo..=hi {
            if out.len() >= cap {
                break;
            }
            out.push(v);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Format values as a compact set: `[1,2,3,5]` → `1:3,5`. The input need not be sorted.
pub fn format_set(values: &[u32]) -> String {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    format_sorted(&v)
}

/// Format ascending, distinct values compactly.
pub fn format_sorted(v: &[u32]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !s.is_empty() {
            s.push(',');
        }
        if start == end {
            s.push_str(&start.to_string());
        } else {
            s.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap()
    }

    #[test]
    fn msn_ranges_and_star() {
        assert_eq!(resolve_msn(&set("1:*"), 3).unwrap(), vec![0, 1, 2]);
        assert_eq!(resolve_msn(&set("*"), 3).unwrap(), vec![2]);
        assert_eq!(resolve_msn(&set("3:1"), 5).unwrap(), vec![0, 1, 2]);
        assert_eq!(resolve_msn(&set("2,1,2:3"), 5).unwrap(), vec![0, 1, 2]);
        assert_eq!(resolve_msn(&set("*:4"), 5).unwrap(), vec![3, 4]);
        assert!(resolve_msn(&set("6"), 5).is_err());
        assert!(resolve_msn(&set("1"), 0).is_err());
    }

    #[test]
    fn uid_ranges() {
        let uids = [3, 5, 9, 10, 20];
        assert_eq!(resolve_uid(&set("1:*"), &uids), vec![0, 1, 2, 3, 4]);
        assert_eq!(resolve_uid(&set("4:9"), &uids), vec![1, 2]);
        assert_eq!(resolve_uid(&set("9:4"), &uids), vec![1, 2]);
        // N:* with N above the highest UID still selects the last message.
        assert_eq!(resolve_uid(&set("100:*"), &uids), vec![4]);
        assert_eq!(resolve_uid(&set("6,7,8"), &uids), Vec::<usize>::new());
        assert_eq!(resolve_uid(&set("*"), &[]), Vec::<usize>::new());
        assert!(contains(&set("1:3,7"), 7, 10));
        assert!(!contains(&set("1:3,7"), 5, 10));
    }

    #[test]
    fn repeated_ranges_do_not_multiply() {
        let many = vec!["1:*"; 5000].join(",");
        assert_eq!(resolve_msn(&set(&many), 3).unwrap(), vec![0, 1, 2]);
        assert_eq!(resolve_uid(&set(&many), &[4, 9]), vec![0, 1]);
        assert_eq!(
            merged_ranges(&set("5:7,1:2,3,9,8"), 10),
            vec![(1, 3), (5, 9)]
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_set(&[5, 1, 2, 3, 9, 10]), "1:3,5,9:10");
        assert_eq!(format_set(&[]), "");
        assert_eq!(format_set(&[7]), "7");
        assert_eq!(expand(&set("1:3,5"), 10, 100), vec![1, 2, 3, 5]);
    }
}
