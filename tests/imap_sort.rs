//! SORT, THREAD, ESORT, SEARCHRES and WITHIN end to end: the real binary, over TLS, with the
//! mailbox filled through APPEND and SMTP.

mod common;

use common::*;

const ALICE: &str = "alice@example.test";

fn append(c: &mut Client, tag: &str, date: &str, message: &str) {
    append_ok(c, tag, &format!("INBOX \"{date}\""), message);
}

/// Four messages: a thread of three (the last one found only by In-Reply-To) and one alone.
fn fill(c: &mut Client) {
    append(
        c,
        "m1",
        "02-Jan-2024 09:00:00 +0000",
        "From: Zoe <zoe@example.test>\r\nTo: team@example.test\r\nSubject: Launch\r\n\
Date: Tue, 2 Jan 2024 09:00:00 +0000\r\nMessage-ID: <launch@example.test>\r\n\r\nGo?\r\n",
    );
    append(
        c,
        "m2",
        "01-Jan-2024 09:00:00 +0000",
        "From: Adam <adam@example.test>\r\nSubject: [team] Lunch\r\n\
Date: Mon, 1 Jan 2024 09:00:00 +0000\r\nMessage-ID: <lunch@example.test>\r\n\r\nPizza\r\n",
    );
    append(
        c,
        "m3",
        "03-Jan-2024 09:00:00 +0000",
        "From: Mia <mia@example.test>\r\nSubject: Re: Launch\r\n\
Date: Wed, 3 Jan 2024 09:00:00 +0000\r\nMessage-ID: <re1@example.test>\r\n\
References: <launch@example.test>\r\n\r\nYes\r\n",
    );
    append(
        c,
        "m4",
        "04-Jan-2024 09:00:00 +0000",
        "From: =?utf-8?q?Bj=C3=B6rn?= <bjorn@example.test>\r\nSubject: =?utf-8?q?RE:_Re:_launch?=\r\n\
Date: Thu, 4 Jan 2024 09:00:00 +0000\r\nMessage-ID: <re2@example.test>\r\n\
In-Reply-To: <re1@example.test>\r\n\r\nShip it\r\n",
    );
}

#[test]
fn sort_thread_and_saved_results_over_tls() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = login_tls_as(&server, ALICE);
    let caps = ok(&mut c, "c", "CAPABILITY");
    assert_eq!(caps.len(), 1, "{caps:?}");
    let extensions: Vec<&str> = caps[0]
        .split(' ')
        .filter(|w| {
            ["SORT", "THREAD", "ESORT", "SEARCHRES", "WITHIN", "CONTEXT"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .collect();
    assert_eq!(
        extensions,
        [
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "THREAD=REFS",
            "SEARCHRES",
            "WITHIN",
            "CONTEXT=SEARCH",
            "CONTEXT=SORT"
        ]
    );
    fill(&mut c);
    ok(&mut c, "s", "SELECT INBOX");

    let sorts = [
        ("SORT (DATE) UTF-8 ALL", "* SORT 2 1 3 4"),
        ("SORT (REVERSE ARRIVAL) UTF-8 ALL", "* SORT 4 3 1 2"),
        ("SORT (SUBJECT DATE) UTF-8 ALL", "* SORT 1 3 4 2"),
        ("SORT (FROM) UTF-8 ALL", "* SORT 2 4 3 1"),
        ("SORT (DISPLAYFROM) UTF-8 ALL", "* SORT 2 4 3 1"),
        (
            "UID SORT (REVERSE DATE) UTF-8 SUBJECT launch",
            "* SORT 4 3 1",
        ),
    ];
    for (command, expected) in sorts {
        assert_eq!(
            imap(&mut c, "a", command),
            (
                vec![expected.to_string()],
                "a OK SORT completed".to_string()
            ),
            "{command}"
        );
    }
    let threads = [
        ("THREAD REFERENCES UTF-8 ALL", "* THREAD (2)(1 3 4)"),
        ("THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (2)(1 (3)(4))"),
        ("THREAD REFS UTF-8 ALL", "* THREAD (2)(1 3 4)"),
        ("UID THREAD REFS UTF-8 NOT FROM adam", "* THREAD (1 3 4)"),
    ];
    for (command, expected) in threads {
        assert_eq!(
            imap(&mut c, "t", command),
            (
                vec![expected.to_string()],
                "t OK THREAD completed".to_string()
            ),
            "{command}"
        );
    }
    assert_eq!(
        imap(&mut c, "e", "SORT RETURN (COUNT ALL) (DATE) UTF-8 ALL"),
        (
            vec!["* ESEARCH (TAG \"e\") ALL 2,1,3:4 COUNT 4".to_string()],
            "e OK SORT completed".to_string()
        )
    );

    // SEARCHRES, pipelined in one write: the FETCH must see the result the SEARCH saved.
    c.send("r1 SEARCH RETURN (SAVE) SUBJECT launch\r\nr2 FETCH $ (UID)\r\n");
    assert_eq!(
        collect(&mut c, "r1"),
        (vec![], "r1 OK SEARCH completed".into())
    );
    assert_eq!(
        collect(&mut c, "r2"),
        (
            vec![
                "* 1 FETCH (UID 1)".to_string(),
                "* 3 FETCH (UID 3)".to_string(),
                "* 4 FETCH (UID 4)".to_string()
            ],
            "r2 OK FETCH completed".into()
        )
    );
    let status = ok(&mut c, "v", "STATUS Archive (UIDVALIDITY)");
    let uidvalidity = status[0]
        .strip_prefix("* STATUS Archive (UIDVALIDITY ")
        .and_then(|s| s.strip_suffix(')'))
        .expect("STATUS response");
    assert_eq!(
        imap(&mut c, "r3", "UID COPY $ Archive"),
        (
            vec![],
            format!("r3 OK [COPYUID {uidvalidity} 1,3:4 1,2:3] COPY completed")
        )
    );
    assert_eq!(
        imap(&mut c, "r4", "SEARCH NOT $ OLDER 60"),
        (vec!["* SEARCH 2".into()], "r4 OK SEARCH completed".into())
    );

    // A message delivered by SMTP just now is YOUNGER than an hour; the appended ones are not.
    let mut smtp = smtp_session(&server);
    let body = "From: x@example.net\r\nSubject: now\r\n\r\nhi\r\n";
    assert_eq!(smtp_send(&mut smtp, "x@example.net", &[ALICE], body).0, 250);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (untagged, status) = imap(&mut c, "w", "SEARCH YOUNGER 3600");
        assert_eq!(status, "w OK SEARCH completed");
        if untagged.last().map(String::as_str) == Some("* SEARCH 5") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivery not seen: {untagged:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ok(&mut c, "z", "LOGOUT");
}
