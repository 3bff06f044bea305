//! CATENATE (RFC 4469) through the session and the store: a message built from text and
//! parts of a stored message, a whole message by absolute URL, and BADURL refusals that
//! store nothing.

use super::*;

fn text(s: &str) -> String {
    format!("TEXT {{{}+}}\r\n{s}", s.len())
}

#[test]
fn append_catenate_builds_messages_from_parts() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let original = "Subject: orig\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
second\r\n--b--\r\n";
        store_raw(&store, "INBOX", original.as_bytes(), 1_700_000_000).await;
        let inbox = store.snapshot("alice", "INBOX").unwrap().uidvalidity;
        let drafts = store.snapshot("alice", "Drafts").unwrap().uidvalidity;
        let mut c = Client::login(&store).await;
        let head = "Subject: built\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n";
        let tail = "\r\n--c--\r\n";
        let out = c
            .send(format!(
                "a APPEND Drafts (\\Draft) CATENATE ({} URL \"/INBOX;UIDVALIDITY={inbox}/;UID=1/;SECTION=1.MIME\" \
URL /INBOX/;UID=1/;section=1 {})\r\n",
                text(head),
                text(tail)
            ))
            .await;
        assert_eq!(
            out,
            format!("a OK [APPENDUID {drafts} 1] APPEND completed\r\n")
        );
        let out = c
            .send("b APPEND Drafts CATENATE (URL \"imap://alice@localhost/INBOX/;UID=1\")\r\n")
            .await;
        assert_eq!(
            out,
            format!("b OK [APPENDUID {drafts} 2] APPEND completed\r\n")
        );
        // Unknown UID, stale UIDVALIDITY, unknown mailbox, unsupported section: nothing stored.
        let out = c
            .send(format!(
                "c1 APPEND Drafts CATENATE (URL /INBOX/;UID=9)\r\n\
c2 APPEND Drafts CATENATE ({} URL \"/INBOX;UIDVALIDITY={}/;UID=1\")\r\n\
c3 APPEND Drafts CATENATE (URL /Nope/;UID=1)\r\n\
c4 APPEND Drafts CATENATE (URL \"/INBOX/;UID=1/;SECTION=HEADER.FIELDS (TO)\")\r\n\
c5 APPEND Drafts CATENATE (TEXT x)\r\nc6 NOOP\r\n",
                text("x"),
                inbox.wrapping_add(1)
            ))
            .await;
        assert_eq!(
            out,
            format!(
                "c1 NO [BADURL /INBOX/;UID=9] URL not found\r\n\
c2 NO [BADURL /INBOX;UIDVALIDITY={}/;UID=1] URL not found\r\n\
c3 NO [BADURL /Nope/;UID=1] URL not found\r\n\
c4 NO [BADURL /INBOX/;UID=1/;SECTION=HEADER.FIELDS (TO)] URL not found\r\n\
c5 BAD CATENATE TEXT needs a literal\r\nc6 OK NOOP completed\r\n",
                inbox.wrapping_add(1)
            )
        );
        c.send("s SELECT Drafts\r\n").await;
        let built = format!("{head}Content-Type: text/plain\r\n\r\nfirst part{tail}");
        assert_eq!(
            c.send("f FETCH 1:* (FLAGS BODY.PEEK[])\r\n").await,
            format!(
                "* 1 FETCH (FLAGS (\\Draft \\Recent) BODY[] {{{}}}\r\n{built})\r\n\
* 2 FETCH (FLAGS (\\Recent) BODY[] {{{}}}\r\n{original})\r\nf OK FETCH completed\r\n",
                built.len(),
                original.len()
            )
        );
    });
}

#[test]
fn catenate_result_larger_than_the_append_limit_is_toobig() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", &"x".repeat(80)).await;
        let mut c = Client::new(
            &store,
            ImapConfig {
                max_literal: 100,
                ..ImapConfig::default()
            },
        )
        .await;
        assert_eq!(
            c.send("a APPEND Drafts CATENATE (URL /INBOX/;UID=1 URL /INBOX/;UID=1)\r\nb STATUS Drafts (MESSAGES)\r\n")
                .await,
            "a NO [TOOBIG] Message too large\r\n* STATUS Drafts (MESSAGES 0)\r\nb OK STATUS completed\r\n"
        );
    });
}
