//! SAVEDATE (RFC 8514): the time a message was saved into its current mailbox.
//!
//! The store records it with every delivery, APPEND, COPY and MOVE (`MessageMeta::saved`), so a
//! copy's save date is the time of the COPY, not its source's. Messages stored before the store
//! recorded it have no save date: `FETCH SAVEDATE` answers NIL for them rather than guess (their
//! INTERNALDATE may be a date a client chose at APPEND). The SEARCH keys `SAVEDBEFORE`,
//! `SAVEDON` and `SAVEDSINCE` compare those messages' INTERNALDATE instead, as RFC 8514 §4
//! asks of a message without a save date, and `SAVEDATESUPPORTED` matches every message: every
//! mailbox supports save dates.
//!
//! The FETCH item and the SEARCH keys are cut out before imap-codec parses the command, together
//! with OBJECTID's (see [`super::objectid`]).

use crate::store::MessageMeta;

/// `SAVEDATE "dd-Mon-yyyy hh:mm:ss +0000"` or `SAVEDATE NIL`.
pub fn write_save_date(out: &mut Vec<u8>, meta: &MessageMeta) {
    out.extend_from_slice(b"SAVEDATE ");
    match meta.saved {
        Some(t) => super::codec::write_internal_date(out, t),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Day (since the epoch, UTC) SAVEDBEFORE/SAVEDON/SAVEDSINCE compare with.
pub fn save_day(meta: &MessageMeta) -> i64 {
    meta.saved.unwrap_or(meta.internal_date).div_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_save_dates_are_nil_and_searched_by_internal_date() {
        let mut meta = MessageMeta {
            internal_date: 86_400 * 3 + 5,
            ..Default::default()
        };
        let mut out = Vec::new();
        write_save_date(&mut out, &meta);
        assert_eq!(out, b"SAVEDATE NIL");
        assert_eq!(save_day(&meta), 3);
        meta.saved = Some(1_700_000_000);
        out.clear();
        write_save_date(&mut out, &meta);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SAVEDATE \"14-Nov-2023 22:13:20 +0000\""
        );
        assert_eq!(save_day(&meta), 1_700_000_000 / 86_400);
    }
}
