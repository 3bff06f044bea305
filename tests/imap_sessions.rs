//! Two sessions on one mailbox, as Thunderbird, Apple Mail and webmails use: once one client
//! has been told a change is done (a tagged OK, or an SMTP 250), the other session's very next
//! command must report it, exactly. Hundreds of rounds, because a race shows up only
//! sometimes.

mod common;

use common::*;

const ALICE: &str = "alice@example.test";
const ROUNDS: usize = 150;

fn noop(c: &mut Client, tag: &str) -> Vec<String> {
    ok(c, tag, "NOOP")
}

fn append(c: &mut Client, tag: &str, message: &str) {
    append_ok(c, tag, "INBOX", message);
}

#[test]
fn every_acknowledged_change_is_seen_by_the_other_session_at_its_next_command() {
    let server = TestServer::start(&[ALICE], "");
    let mut smtp = smtp_session(&server);
    assert_eq!(
        smtp_send(
            &mut smtp,
            "s@r.test",
            &[ALICE],
            "Subject: first\r\n\r\n1\r\n"
        )
        .0,
        250
    );
    let mut a = login_tls_as(&server, ALICE);
    let mut b = login_tls_as(&server, ALICE);
    ok(&mut a, "c", "CREATE Moved");
    ok(&mut a, "s", "SELECT INBOX");
    ok(&mut b, "s", "SELECT INBOX");
    let mut exists = 1;
    for round in 0..ROUNDS {
        let t = |step: &str| format!("r{round}{step}");
        let at = |step: &str, seen: Vec<String>, want: Vec<String>| {
            assert_eq!(seen, want, "round {round}, after {step}");
        };

        ok(&mut a, &t("a1"), "STORE 1 +FLAGS.SILENT (\\Flagged)");
        at(
            "STORE +FLAGS",
            noop(&mut b, &t("b1")),
            vec!["* 1 FETCH (FLAGS (\\Flagged))".into()],
        );
        ok(&mut a, &t("a2"), "STORE 1 -FLAGS.SILENT (\\Flagged)");
        at(
            "STORE -FLAGS",
            noop(&mut b, &t("b2")),
            vec!["* 1 FETCH (FLAGS ())".into()],
        );

        // \Recent (RFC 3501 §2.3.2): A learns of its own APPEND and COPY before their OK and
        // claims them; B keeps the SMTP deliveries it heard of first (one per earlier round).
        append(&mut a, &t("a3"), "Subject: appended\r\n\r\nbody\r\n");
        exists += 1;
        at(
            "APPEND",
            noop(&mut b, &t("b3")),
            vec![format!("* {exists} EXISTS"), format!("* {round} RECENT")],
        );

        ok(&mut a, &t("a4"), "COPY 1 INBOX");
        exists += 1;
        at(
            "COPY",
            noop(&mut b, &t("b4")),
            vec![format!("* {exists} EXISTS"), format!("* {round} RECENT")],
        );

        ok(&mut a, &t("a5"), &format!("MOVE {exists} Moved"));
        at(
            "MOVE",
            noop(&mut b, &t("b5")),
            vec![format!("* {exists} EXPUNGE")],
        );
        exists -= 1;

        ok(
            &mut a,
            &t("a6"),
            &format!("STORE {exists} +FLAGS.SILENT (\\Deleted)"),
        );
        at(
            "STORE \\Deleted",
            noop(&mut b, &t("b6")),
            vec![format!("* {exists} FETCH (FLAGS (\\Deleted))")],
        );
        ok(&mut a, &t("a7"), "EXPUNGE");
        at(
            "EXPUNGE",
            noop(&mut b, &t("b7")),
            vec![format!("* {exists} EXPUNGE")],
        );
        exists -= 1;

        let (code, text) = smtp_send(
            &mut smtp,
            "s@r.test",
            &[ALICE],
            &format!("Subject: round {round}\r\n\r\nx\r\n"),
        );
        assert_eq!(code, 250, "{text}");
        exists += 1;
        at(
            "SMTP delivery",
            noop(&mut b, &t("b8")),
            vec![
                format!("* {exists} EXISTS"),
                format!("* {} RECENT", round + 1),
            ],
        );
        // A saw the same changes; keep its view in step without checking it.
        noop(&mut a, &t("a8"));
    }
    let status = ok(&mut b, "st", "STATUS Moved (MESSAGES)").join("");
    assert!(status.contains(&format!("MESSAGES {ROUNDS}")), "{status}");
}
