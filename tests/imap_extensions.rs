//! IMAP extensions end to end over TLS against the real binary and its store on disk:
//! CHILDREN and the LIST/LSUB details of names without a mailbox (kept across a restart),
//! PREVIEW, REPLACE, I18NLEVEL=1, CATENATE.

mod common;

use common::*;

const ALICE: &str = "alice@example.test";

fn capabilities(c: &mut Client) -> Vec<String> {
    let caps = ok(c, "cap", "CAPABILITY");
    assert_eq!(caps.len(), 1, "{caps:?}");
    caps[0].split(' ').skip(2).map(str::to_owned).collect()
}

#[test]
fn children_and_subscriptions_of_deleted_mailboxes_survive_a_restart() {
    let mut server = TestServer::start(&[ALICE], "");
    let mut c = login_tls_as(&server, ALICE);
    assert!(capabilities(&mut c).iter().any(|w| w == "CHILDREN"));
    for (tag, command) in [
        ("a1", "CREATE Projects/Old/Notes"),
        ("a2", "CREATE Projects/Done"),
        ("a3", "SUBSCRIBE Projects/Old"),
        ("a4", "SUBSCRIBE Projects/Done"),
        ("a5", "DELETE Projects/Old"),
        ("a6", "DELETE Projects/Done"),
    ] {
        ok(&mut c, tag, command);
    }
    let expect_list = |c: &mut Client| {
        assert_eq!(
            ok(c, "l1", "LIST \"\" Projects*"),
            [
                "* LIST (\\HasChildren) \"/\" Projects",
                "* LIST (\\Noselect \\HasChildren) \"/\" Projects/Old",
                "* LIST (\\HasNoChildren) \"/\" Projects/Old/Notes",
            ]
        );
        assert_eq!(
            ok(c, "l2", "LIST (SUBSCRIBED) \"\" Projects/*"),
            [
                "* LIST (\\NonExistent \\HasNoChildren \\Subscribed) \"/\" Projects/Done",
                "* LIST (\\NonExistent \\HasChildren \\Subscribed) \"/\" Projects/Old",
            ]
        );
        assert_eq!(
            ok(c, "l3", "LSUB \"\" Projects%"),
            ["* LSUB (\\Noselect) \"/\" Projects"]
        );
        assert_eq!(
            ok(c, "l4", "LSUB \"\" Projects/%"),
            [
                "* LSUB (\\Noselect) \"/\" Projects/Done",
                "* LSUB (\\Noselect) \"/\" Projects/Old",
            ]
        );
    };
    expect_list(&mut c);
    assert_eq!(
        imap(&mut c, "s", "SELECT Projects/Done"),
        (vec![], "s NO [NONEXISTENT] No such mailbox".to_string())
    );
    drop(c);
    server.restart();
    let mut c = login_tls_as(&server, ALICE);
    expect_list(&mut c);
    // Re-created, the mailbox is subscribed again; unsubscribed, the lost name disappears.
    ok(&mut c, "c1", "CREATE Projects/Done");
    ok(&mut c, "c2", "UNSUBSCRIBE Projects/Old");
    assert_eq!(
        ok(&mut c, "c3", "LIST (SUBSCRIBED) \"\" Projects/*"),
        ["* LIST (\\HasNoChildren \\Subscribed) \"/\" Projects/Done"]
    );
}

fn append(c: &mut Client, tag: &str, mailbox: &str, message: &str) -> String {
    append_ok(c, tag, mailbox, message)
}

#[test]
fn preview_of_plain_html_and_attachment_only_messages() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = login_tls_as(&server, ALICE);
    assert!(capabilities(&mut c).iter().any(|w| w == "PREVIEW"));
    let alternative = "From: a@example.test\r\nSubject: alt\r\n\
Content-Type: multipart/alternative; boundary=XX\r\n\r\n\
--XX\r\nContent-Type: text/html\r\n\r\n<b>Bold</b> news\r\n\
--XX\r\nContent-Type: text/plain\r\n\r\nPlain news,\r\n  in two lines.\r\n\
--XX--\r\n";
    append(&mut c, "m1", "INBOX", alternative);
    append(
        &mut c,
        "m2",
        "INBOX",
        "From: a@example.test\r\nSubject: html\r\nContent-Type: text/html\r\n\r\n\
<html><head><title>T</title></head><body><div>Only&nbsp;HTML &lt;here&gt;</div></body></html>\r\n",
    );
    append(
        &mut c,
        "m3",
        "INBOX",
        "From: a@example.test\r\nSubject: file\r\nContent-Type: application/pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n",
    );
    ok(&mut c, "s", "SELECT INBOX");
    assert_eq!(
        ok(&mut c, "f1", "UID FETCH 1:3 (PREVIEW (LAZY))"),
        [
            "* 1 FETCH (UID 1 PREVIEW \"Plain news, in two lines.\")",
            "* 2 FETCH (UID 2 PREVIEW \"Only HTML <here>\")",
            "* 3 FETCH (UID 3 PREVIEW \"\")",
        ]
    );
    assert_eq!(
        imap(&mut c, "f2", "FETCH 1 (PREVIEW (SOON))"),
        (vec![], "f2 BAD Unknown PREVIEW modifier".to_string())
    );
    assert_eq!(
        ok(&mut c, "f3", "FETCH 1 (PREVIEW RFC822.SIZE)"),
        [format!(
            "* 1 FETCH (RFC822.SIZE {} PREVIEW \"Plain news, in two lines.\")",
            alternative.len()
        )]
    );
}

/// A command ending in a synchronizing literal: waits for the continuation, then collects.
fn with_literal(c: &mut Client, tag: &str, command: &str, message: &str) -> (Vec<String>, String) {
    c.send(&format!("{tag} {command} {{{}}}\r\n", message.len()));
    let go_ahead = c.line().expect("continuation");
    assert!(go_ahead.starts_with('+'), "{go_ahead}");
    c.send(message);
    c.send("\r\n");
    collect(c, tag)
}

#[test]
fn replace_a_draft_and_find_only_the_new_one_after_a_restart() {
    let mut server = TestServer::start(&[ALICE], "");
    let mut c = login_tls_as(&server, ALICE);
    assert!(capabilities(&mut c).iter().any(|w| w == "REPLACE"));
    let v1 = "From: alice@example.test\r\nSubject: draft\r\n\r\nDear Bob,\r\n";
    let v2 = "From: alice@example.test\r\nSubject: draft\r\n\r\nDear Bob, see you.\r\n";
    let status = append(&mut c, "a", "Drafts (\\Draft)", v1);
    let uidvalidity: u32 = status
        .split("APPENDUID ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("APPENDUID");
    ok(&mut c, "s", "SELECT Drafts");
    assert_eq!(
        with_literal(&mut c, "r", "REPLACE 1 Drafts (\\Draft \\Seen)", v2),
        (
            vec![
                format!("* OK [APPENDUID {uidvalidity} 2] Replacement Message ready"),
                "* 2 EXISTS".to_string(),
                "* 2 RECENT".to_string(),
                "* 1 EXPUNGE".to_string(),
            ],
            "r OK REPLACE completed".to_string()
        )
    );
    // The old UID is gone: UID REPLACE of it fails and changes nothing.
    assert_eq!(
        with_literal(&mut c, "u", "UID REPLACE 1 Drafts", v1),
        (vec![], "u NO No such message".to_string())
    );
    drop(c);
    server.restart();
    let mut c = login_tls_as(&server, ALICE);
    ok(&mut c, "s", "SELECT Drafts");
    assert_eq!(
        ok(&mut c, "f", "FETCH 1:* (UID FLAGS BODY.PEEK[TEXT])"),
        [
            "* 1 FETCH (UID 2 FLAGS (\\Seen \\Draft \\Recent) BODY[TEXT] {20}\r\nDear Bob, see you.\r\n)"
        ]
    );
}

#[test]
fn unicode_casemap_search_and_sort() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = login_tls_as(&server, ALICE);
    assert!(capabilities(&mut c).iter().any(|w| w == "I18NLEVEL=1"));
    for (tag, subject) in [
        ("m1", "=?utf-8?q?=C3=89t=C3=A9_report?="),
        ("m2", "=?utf-8?q?E=CC=81TE=CC=81?="),
        ("m3", "ete"),
        ("m4", "_misc"),
    ] {
        append(
            &mut c,
            tag,
            "INBOX",
            &format!("From: a@example.test\r\nSubject: {subject}\r\n\r\nx\r\n"),
        );
    }
    ok(&mut c, "s", "SELECT INBOX");
    // "été" in NFC as a literal: matches the precomposed and the decomposed subject, not "ete".
    assert_eq!(
        with_literal(&mut c, "f", "SEARCH CHARSET UTF-8 SUBJECT", "\u{e9}t\u{e9}"),
        (
            vec!["* SEARCH 1 2".to_string()],
            "f OK SEARCH completed".to_string()
        )
    );
    assert_eq!(
        ok(&mut c, "o", "SORT (SUBJECT) UTF-8 ALL"),
        ["* SORT 3 2 1 4"]
    );
}

#[test]
fn catenate_with_a_synchronizing_text_literal_and_a_section_url() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = login_tls_as(&server, ALICE);
    assert!(capabilities(&mut c).iter().any(|w| w == "CATENATE"));
    let original = "From: a@example.test\r\nSubject: quoted\r\n\r\nThe text to quote.\r\n";
    append(&mut c, "m", "INBOX", original);
    let header = "From: alice@example.test\r\nSubject: Re: quoted\r\n\r\n> ";
    // The TEXT literal is synchronizing: the server asks for it in the middle of the list.
    c.send(&format!(
        "a APPEND Drafts CATENATE (TEXT {{{}}}\r\n",
        header.len()
    ));
    let go_ahead = c.line().expect("continuation");
    assert!(go_ahead.starts_with('+'), "{go_ahead}");
    c.send(&format!(
        "{header} URL \"/INBOX/;UID=1/;SECTION=TEXT\")\r\n"
    ));
    let (untagged, status) = collect(&mut c, "a");
    assert!(untagged.is_empty(), "{untagged:?}");
    assert!(
        status.starts_with("a OK [APPENDUID ") && status.ends_with(" 1] APPEND completed"),
        "{status}"
    );
    ok(&mut c, "s", "SELECT Drafts");
    let built = format!("{header}The text to quote.\r\n");
    assert_eq!(
        ok(&mut c, "f", "FETCH 1 BODY.PEEK[]"),
        [format!("* 1 FETCH (BODY[] {{{}}}\r\n{built})", built.len())]
    );
    assert_eq!(
        imap(
            &mut c,
            "b",
            "APPEND Drafts CATENATE (URL \"/INBOX/;UID=2\")"
        ),
        (
            vec![],
            "b NO [BADURL /INBOX/;UID=2] URL not found".to_string()
        )
    );
}
