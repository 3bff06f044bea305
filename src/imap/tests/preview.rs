//! PREVIEW (RFC 8970) through the session and the store: the item alone and among others,
//! LAZY, UID FETCH, no \Seen side effect, refused modifiers.

use super::*;

#[test]
fn fetch_preview_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "plain").await;
        store_raw(
            &store,
            "INBOX",
            b"Subject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><p>Caf\xc3\xa9 \"au lait\"</p>\r\n<p>at   noon</p></body></html>\r\n",
            1_700_000_000,
        )
        .await;
        let mut c = Client::login(&store).await;
        c.send("s SELECT INBOX\r\n").await;
        assert_eq!(
            c.send("a FETCH 1 (PREVIEW)\r\n").await,
            "* 1 FETCH (PREVIEW \"hello world\")\r\na OK FETCH completed\r\n"
        );
        // Non-ASCII text goes in a literal (a rev1 quoted string is 7-bit); quotes are kept.
        assert_eq!(
            c.send("b FETCH 2 (FLAGS PREVIEW (LAZY))\r\n").await,
            "* 2 FETCH (FLAGS (\\Recent) PREVIEW {23}\r\nCaf\u{e9} \"au lait\" at noon)\r\n\
b OK FETCH completed\r\n"
        );
        assert_eq!(
            c.send("c UID FETCH 1:* PREVIEW\r\n").await,
            "* 1 FETCH (UID 1 PREVIEW \"hello world\")\r\n\
* 2 FETCH (UID 2 PREVIEW {23}\r\nCaf\u{e9} \"au lait\" at noon)\r\nc OK FETCH completed\r\n"
        );
        // PREVIEW is not a body fetch: \Seen stays unset.
        assert_eq!(
            c.send("d FETCH 1:2 FLAGS\r\n").await,
            "* 1 FETCH (FLAGS (\\Recent))\r\n* 2 FETCH (FLAGS (\\Recent))\r\nd OK FETCH completed\r\n"
        );
        assert_eq!(
            c.send("e FETCH 1 (PREVIEW (FUZZY))\r\nf FETCH 1 (PREVIEW\r\ng NOOP\r\n")
                .await,
            "e BAD Unknown PREVIEW modifier\r\nf BAD Unbalanced parentheses\r\n\
g OK NOOP completed\r\n"
        );
    });
}
