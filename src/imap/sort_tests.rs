//! SORT, THREAD, ESORT, SEARCHRES and WITHIN through the sans-IO session and a real store.
//! (A child module of `tests`, for its `Client`.)

use super::*;

/// 2024-01-01 00:00:00 UTC.
const JAN_1: i64 = 1_704_067_200;
const DAY: i64 = 86_400;

/// The mailbox the tests sort: a message that is expunged first (so UIDs are message numbers
/// plus one), then five messages with known fields.
///
/// | msn | uid | From (display / mailbox) | To  | Subject (base)        | Date     | refs      |
/// |-----|-----|--------------------------|-----|-----------------------|----------|-----------|
/// | 1   | 2   | Carol / carol            | dave| Re: Plans (plans)     | Jan 3    | p1        |
/// | 2   | 3   | Alice / zed              | b   | Plans (plans)         | Jan 1    |           |
/// | 3   | 4   | - / bob                  |     | [list] Other (other)  | Jan 2    |           |
/// | 4   | 5   | Émile / emile            |     | =?..?Fwd: plans (plans)| none: internal Jan 4 | irt p2 |
/// | 5   | 6   | - / adam                 |     | other (fwd) (other)   | Jan 5    |           |
const MESSAGES: &[(&str, i64)] = &[
    ("From: x@y\r\nSubject: gone\r\n\r\nx\r\n", 1),
    (
        "From: Carol <carol@example.org>\r\nTo: dave@example.org\r\nSubject: Re: Plans\r\n\
Date: Wed, 3 Jan 2024 10:00:00 +0000\r\nMessage-ID: <p2@x>\r\nReferences: <p1@x>\r\n\r\nbody\r\n",
        1000,
    ),
    (
        "From: Alice <zed@example.org>\r\nTo: b@example.org\r\nSubject: Plans\r\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <p1@x>\r\n\r\nbody\r\n",
        500,
    ),
    (
        "From: bob@example.org\r\nSubject: [list] Other\r\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\r\nMessage-ID: <o1@x>\r\n\r\nbody\r\n",
        3000,
    ),
    (
        "From: =?utf-8?q?=C3=89mile?= <emile@example.org>\r\nSubject: =?utf-8?q?Fwd:_plans?=\r\n\
Message-ID: <p3@x>\r\nIn-Reply-To: <p2@x>\r\n\r\nbody\r\n",
        JAN_1 + 3 * DAY,
    ),
    (
        "From: adam@example.org\r\nSubject: other (fwd)\r\n\
Date: Fri, 5 Jan 2024 10:00:00 +0000\r\nMessage-ID: <o2@x>\r\n\r\nbody\r\n",
        100,
    ),
];

async fn sorted_mailbox(store: &LogStore) -> Client {
    for (raw, date) in MESSAGES {
        store_raw(store, "INBOX", raw.as_bytes(), *date).await;
    }
    let mut c = Client::login(store).await;
    let out = c.send("s SELECT INBOX\r\n").await;
    assert!(out.contains("* 6 EXISTS\r\n"), "{out}");
    let out = c
        .send("d1 STORE 1 +FLAGS.SILENT (\\Deleted)\r\nd2 EXPUNGE\r\n")
        .await;
    assert_eq!(
        out,
        "d1 OK STORE completed\r\n* 1 EXPUNGE\r\nd2 OK EXPUNGE completed\r\n"
    );
    c
}

#[test]
fn sort_by_every_key() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let mut c = sorted_mailbox(&store).await;
        for (criteria, expected) in [
            ("DATE", "2 3 1 4 5"),
            ("REVERSE DATE", "5 4 1 3 2"),
            ("ARRIVAL", "5 2 1 3 4"),
            ("SUBJECT", "3 5 1 2 4"),
            ("SUBJECT REVERSE DATE", "5 3 4 1 2"),
            ("FROM", "5 3 1 4 2"),
            ("DISPLAYFROM", "5 2 3 1 4"),
            // Ties (no To) keep mailbox order.
            ("TO", "3 4 5 2 1"),
            ("DISPLAYTO", "3 4 5 2 1"),
            ("CC", "1 2 3 4 5"),
            ("REVERSE CC", "1 2 3 4 5"),
        ] {
            let out = c.send(format!("a SORT ({criteria}) UTF-8 ALL\r\n")).await;
            assert_eq!(
                out,
                format!("* SORT {expected}\r\na OK SORT completed\r\n"),
                "{criteria}"
            );
        }
        // SIZE: the stored sizes, ascending.
        let sizes: Vec<usize> = MESSAGES[1..].iter().map(|(m, _)| m.len()).collect();
        let mut by_size: Vec<usize> = (1..=5).collect();
        by_size.sort_by_key(|&i| (sizes[i - 1], i));
        let out = c.send("z SORT (SIZE) US-ASCII ALL\r\n").await;
        let expected: Vec<String> = by_size.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            out,
            format!("* SORT {}\r\nz OK SORT completed\r\n", expected.join(" "))
        );
        // With search criteria (SUBJECT is decoded: message 4's subject is encoded) and UIDs.
        let out = c.send("b UID SORT (DATE) UTF-8 SUBJECT plans\r\n").await;
        assert_eq!(out, "* SORT 3 2 5\r\nb OK SORT completed\r\n");
        let out = c.send("c SORT (DATE) utf-8 SUBJECT nothing\r\n").await;
        assert_eq!(out, "* SORT\r\nc OK SORT completed\r\n");
        let out = c.send("d SORT (DATE) KOI8-R ALL\r\n").await;
        assert_eq!(
            out,
            "d NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset KOI8-R\r\n"
        );
        let out = c.send("e SORT (DATE BOGUS) UTF-8 ALL\r\n").await;
        assert_eq!(out, "e BAD Syntax error\r\n");
        let out = c.send("f SORT (DATE) UTF-8 NOT\r\n").await;
        assert_eq!(out, "f BAD Missing search key\r\n");
        // The same answers from the cache, after a new message arrives and one is expunged.
        let out = c
            .send("g STORE 2 +FLAGS.SILENT (\\Deleted)\r\nh EXPUNGE\r\ni SORT (DATE) UTF-8 ALL\r\n")
            .await;
        assert_eq!(
            out,
            "g OK STORE completed\r\n* 2 EXPUNGE\r\nh OK EXPUNGE completed\r\n\
* SORT 2 1 3 4\r\ni OK SORT completed\r\n"
        );
    });
}

#[test]
fn sort_is_refused_outside_selected_state() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let mut c = Client::login(&store).await;
        let out = c
            .send("a SORT (DATE) UTF-8 ALL\r\nb THREAD REFS UTF-8 ALL\r\n")
            .await;
        assert_eq!(
            out,
            "a BAD No mailbox selected\r\nb BAD No mailbox selected\r\n"
        );
    });
}

#[test]
fn esort_return_options() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let mut c = sorted_mailbox(&store).await;
        let out = c
            .send("a SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL\r\n")
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"a\") MIN 2 MAX 5 COUNT 5\r\na OK SORT completed\r\n"
        );
        let out = c.send("b UID SORT RETURN () (DATE) UTF-8 ALL\r\n").await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"b\") UID ALL 3:4,2,5:6\r\nb OK SORT completed\r\n"
        );
        let out = c
            .send("c SORT RETURN (PARTIAL 2:3) (DATE) UTF-8 ALL\r\n")
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"c\") PARTIAL (2:3 3,1)\r\nc OK SORT completed\r\n"
        );
        let out = c
            .send("d SORT RETURN (PARTIAL -1:-2 COUNT) (DATE) UTF-8 ALL\r\n")
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"d\") COUNT 5 PARTIAL (-1:-2 4:5)\r\nd OK SORT completed\r\n"
        );
        let out = c
            .send("e SEARCH RETURN (PARTIAL 4:10) ALL\r\nf SEARCH RETURN (PARTIAL 9:10) ALL\r\n")
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"e\") PARTIAL (4:10 4:5)\r\ne OK SEARCH completed\r\n\
* ESEARCH (TAG \"f\") PARTIAL (9:10 NIL)\r\nf OK SEARCH completed\r\n"
        );
        let out = c
            .send("g SORT RETURN (ALL PARTIAL 1:2) (DATE) UTF-8 ALL\r\n")
            .await;
        assert_eq!(out, "g BAD Invalid RETURN options\r\n");
        let out = c.send("h SEARCH RETURN (PARTIAL 0:1) ALL\r\n").await;
        assert_eq!(out, "h BAD PARTIAL needs a range such as 1:100\r\n");
    });
}

#[test]
fn thread_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let mut c = sorted_mailbox(&store).await;
        for (command, expected) in [
            // 2 <- 1 <- 4 by References / In-Reply-To; 5 ("other (fwd)") merged under 3.
            ("THREAD REFERENCES UTF-8 ALL", "(2 1 4)(3 5)"),
            ("UID THREAD REFERENCES UTF-8 ALL", "(3 2 5)(4 6)"),
            ("THREAD ORDEREDSUBJECT UTF-8 ALL", "(2 (1)(4))(3 5)"),
            // No subject merging; threads ordered by their latest message.
            ("THREAD REFS UTF-8 ALL", "(3)(2 1 4)(5)"),
            // Message 1 is left out: 4's parent is missing, 2 and 4 still merge by subject.
            ("THREAD REFERENCES UTF-8 NOT 1", "(2 4)(3 5)"),
            ("THREAD REFS US-ASCII FROM nobody", ""),
        ] {
            let out = c.send(format!("t {command}\r\n")).await;
            let data = if expected.is_empty() {
                "* THREAD\r\n".to_string()
            } else {
                format!("* THREAD {expected}\r\n")
            };
            assert_eq!(out, format!("{data}t OK THREAD completed\r\n"), "{command}");
        }
        let out = c.send("u THREAD SUBJECTLINES UTF-8 ALL\r\n").await;
        assert_eq!(out, "u BAD Unknown threading algorithm\r\n");
        let out = c.send("v THREAD REFS BIG5 ALL\r\n").await;
        assert_eq!(
            out,
            "v NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset BIG5\r\n"
        );
    });
}

#[test]
fn searchres_saves_and_dollar_reuses() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let mut c = sorted_mailbox(&store).await;
        // SAVE alone answers nothing but the tagged OK; pipelined, `$` sees the new result.
        let out = c
            .send("a SEARCH RETURN (SAVE) SUBJECT plans\r\nb FETCH $ (UID)\r\n")
            .await;
        assert_eq!(
            out,
            "a OK SEARCH completed\r\n* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 3)\r\n\
* 4 FETCH (UID 5)\r\nb OK FETCH completed\r\n"
        );
        let out = c.send("c UID SEARCH UID $ FROM carol\r\n").await;
        assert_eq!(out, "* SEARCH 2\r\nc OK SEARCH completed\r\n");
        let out = c.send("d SEARCH NOT $\r\n").await;
        assert_eq!(out, "* SEARCH 3 5\r\nd OK SEARCH completed\r\n");
        let out = c.send("e UID STORE $ +FLAGS.SILENT (\\Flagged)\r\n").await;
        assert_eq!(out, "e OK STORE completed\r\n");
        let out = c.send("f SEARCH FLAGGED\r\n").await;
        assert_eq!(out, "* SEARCH 1 2 4\r\nf OK SEARCH completed\r\n");
        // SAVE with MIN and MAX keeps only those two; the ESEARCH answer is still sent.
        let out = c
            .send("g SORT RETURN (SAVE MIN MAX) (SUBJECT) UTF-8 ALL\r\nh UID FETCH $ (FLAGS)\r\n")
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"g\") MIN 3 MAX 4\r\ng OK SORT completed\r\n\
* 3 FETCH (UID 4 FLAGS (\\Recent))\r\n* 4 FETCH (UID 5 FLAGS (\\Flagged \\Recent))\r\n\
h OK FETCH completed\r\n"
        );
        // An empty result: `$` matches nothing, and the commands still succeed.
        let out = c
            .send("i SEARCH RETURN (SAVE) SUBJECT nothing\r\nj FETCH $ FLAGS\r\nk SEARCH $\r\n")
            .await;
        assert_eq!(
            out,
            "i OK SEARCH completed\r\nj OK FETCH completed\r\n* SEARCH\r\nk OK SEARCH completed\r\n"
        );
        // A failed SAVE empties `$` too.
        c.send("l SEARCH RETURN (SAVE) ALL\r\n").await;
        let out = c
            .send("m SEARCH RETURN (SAVE) CHARSET KOI8-R ALL\r\nn SEARCH $\r\n")
            .await;
        assert_eq!(
            out,
            "m NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset KOI8-R\r\n\
* SEARCH\r\nn OK SEARCH completed\r\n"
        );
        // A new SELECT starts with an empty `$`.
        c.send("o SEARCH RETURN (SAVE) ALL\r\n").await;
        let out = c.send("p SELECT INBOX\r\nq SEARCH $\r\n").await;
        assert!(
            out.ends_with(
                "p OK [READ-WRITE] SELECT completed\r\n* SEARCH\r\nq OK SEARCH completed\r\n"
            ),
            "{out}"
        );
    });
}

#[test]
fn within_younger_and_older() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let mut c = sorted_mailbox(&store).await;
        let out = c
            .send("a SEARCH YOUNGER 3600\r\nb SEARCH OLDER 3600\r\n")
            .await;
        assert_eq!(
            out,
            "* SEARCH\r\na OK SEARCH completed\r\n* SEARCH 1 2 3 4 5\r\nb OK SEARCH completed\r\n"
        );
        // APPEND without a date: the internal date is now.
        let out = c
            .send("c APPEND INBOX {8+}\r\nSubject:\r\nd NOOP\r\n")
            .await;
        assert!(out.contains("c OK [APPENDUID "), "{out}");
        let out = c
            .send("e SEARCH YOUNGER 3600\r\nf UID SEARCH OLDER 3600 SUBJECT plans\r\ng SEARCH YOUNGER 0\r\n")
            .await;
        assert_eq!(
            out,
            "* SEARCH 6\r\ne OK SEARCH completed\r\n* SEARCH 2 3 5\r\nf OK SEARCH completed\r\n\
g BAD Invalid search key\r\n"
        );
    });
}
