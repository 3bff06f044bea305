//! OBJECTID (RFC 8474) and SAVEDATE (RFC 8514) end to end over TLS against the real binary and
//! its store on disk: COPY and MOVE keep EMAILID, RENAME keeps MAILBOXID, a restart keeps every
//! id and save date, and a copy's SAVEDATE is the time of the COPY.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

const ALICE: &str = "alice@example.test";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Unix seconds of an IMAP date-time `"dd-Mon-yyyy hh:mm:ss +0000"`.
fn parse_date_time(s: &str) -> i64 {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let s = s.trim_matches('"').trim_start();
    let (date, rest) = s.split_once(' ').unwrap();
    let (time, zone) = rest.split_once(' ').unwrap();
    assert_eq!(zone, "+0000", "{s}");
    let mut d = date.split('-');
    let day: i64 = d.next().unwrap().parse().unwrap();
    let name = d.next().unwrap();
    let month = MONTHS.iter().position(|m| *m == name).unwrap() as i64 + 1;
    let year: i64 = d.next().unwrap().parse().unwrap();
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

/// `* n FETCH (EMAILID (id) SAVEDATE "…")` → (id, save time).
fn ids_and_save_dates(c: &mut Client, tag: &str, set: &str) -> Vec<(String, i64)> {
    ok(c, tag, &format!("FETCH {set} (EMAILID SAVEDATE)"))
        .iter()
        .map(|line| {
            let rest = line.split("(EMAILID (").nth(1).expect(line);
            let (id, rest) = rest.split_once(") SAVEDATE ").expect(line);
            (id.to_string(), parse_date_time(rest.trim_end_matches(')')))
        })
        .collect()
}

fn is_objectid(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[test]
fn ids_survive_copy_move_rename_and_restart_and_copies_have_their_save_date() {
    let mut server = TestServer::start(&[ALICE], "");
    let delivered_from = now();
    let mut smtp = smtp_session(&server);
    for subject in ["one", "two"] {
        let body = format!("Subject: {subject}\r\n\r\nhello\r\n");
        assert_eq!(smtp_send(&mut smtp, "s@r.test", &[ALICE], &body).0, 250);
    }
    smtp.expect("QUIT", 221);
    let delivered_to = now();

    let mut c = login_tls_as(&server, ALICE);
    let caps = ok(&mut c, "cap", "CAPABILITY");
    assert!(caps[0].split(' ').any(|w| w == "OBJECTID"), "{caps:?}");
    assert!(caps[0].split(' ').any(|w| w == "SAVEDATE"), "{caps:?}");
    let inbox = mailbox_id(&mut c, "s0", "INBOX");
    assert!(is_objectid(&inbox), "{inbox}");
    let select = ok(&mut c, "s1", "SELECT INBOX");
    assert_eq!(
        select
            .iter()
            .filter(|l| l.starts_with("* OK [MAILBOXID"))
            .collect::<Vec<_>>(),
        [&format!("* OK [MAILBOXID ({inbox})] Ok")]
    );
    let delivered = ids_and_save_dates(&mut c, "f1", "1:2");
    assert_eq!(delivered.len(), 2);
    let (e1, e2) = (delivered[0].0.clone(), delivered[1].0.clone());
    assert!(
        is_objectid(&e1) && is_objectid(&e2) && e1 != e2,
        "{delivered:?}"
    );
    for (_, saved) in &delivered {
        assert!(
            (delivered_from..=delivered_to).contains(saved),
            "{delivered:?}"
        );
    }
    assert_eq!(
        ok(&mut c, "f2", "FETCH 1 (THREADID)"),
        ["* 1 FETCH (THREADID NIL)"]
    );

    c.send("k CREATE Kept\r\n");
    let (untagged, status) = collect(&mut c, "k");
    assert!(untagged.is_empty(), "{untagged:?}");
    let kept = mailbox_id(&mut c, "k1", "Kept");
    assert_eq!(
        status,
        format!("k OK [MAILBOXID ({kept})] CREATE completed")
    );
    assert_ne!(kept, inbox);

    let copied_from = now();
    ok(&mut c, "c1", "COPY 1 Kept");
    ok(&mut c, "m1", "MOVE 2 Kept");
    let copied_to = now();
    assert_eq!(
        ok(&mut c, "r1", "RENAME Kept Archive/Kept"),
        Vec::<String>::new()
    );
    assert_eq!(mailbox_id(&mut c, "r2", "Archive/Kept"), kept);
    ok(&mut c, "e1", "EXAMINE Archive/Kept");
    let copies = ids_and_save_dates(&mut c, "f3", "1:2");
    assert_eq!(
        copies.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        [e1.as_str(), e2.as_str()]
    );
    for (_, saved) in &copies {
        assert!((copied_from..=copied_to).contains(saved), "{copies:?}");
    }
    assert_eq!(
        ok(&mut c, "s2", &format!("SEARCH EMAILID {e2}")),
        ["* SEARCH 2"]
    );
    drop(c);

    server.restart();
    let mut c = login_tls_as(&server, ALICE);
    assert_eq!(mailbox_id(&mut c, "s0", "INBOX"), inbox);
    assert_eq!(mailbox_id(&mut c, "s1", "Archive/Kept"), kept);
    ok(&mut c, "e1", "EXAMINE INBOX");
    assert_eq!(ids_and_save_dates(&mut c, "f1", "1"), delivered[..1]);
    ok(&mut c, "e2", "EXAMINE Archive/Kept");
    assert_eq!(ids_and_save_dates(&mut c, "f2", "1:2"), copies);
    assert_eq!(
        ok(
            &mut c,
            "s2",
            &format!("SEARCH OR EMAILID {e1} SAVEDBEFORE 1-Jan-2000")
        ),
        ["* SEARCH 1"]
    );
}
