//! CHILDREN (RFC 3348) and the LIST/LSUB details around names without a mailbox: hierarchy
//! levels left by DELETE, subscriptions that outlive their mailbox (RFC 9051 §6.3.9), LSUB's
//! `%` levels (RFC 3501 §6.3.9). Each exchange asserted exactly, across a store restart.

use super::*;

#[test]
fn capability_lists_children() {
    let s = ImapSession::new(ImapConfig::default(), true);
    let mut out = Vec::new();
    s.greeting(&mut out);
    let greeting = String::from_utf8(out).unwrap();
    assert!(greeting.split(' ').any(|w| w == "CHILDREN"), "{greeting}");
}

#[test]
fn deleted_mailboxes_keep_their_subscription_and_their_level() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let mut c = Client::login(&store).await;
        let out = c
            .send(
                "a1 CREATE t/a/b\r\na2 CREATE t/c\r\na3 SUBSCRIBE t/a\r\na4 SUBSCRIBE t/c\r\n\
a5 SUBSCRIBE t/new\r\na6 DELETE t/a\r\na7 DELETE t/c\r\n",
            )
            .await;
        assert_eq!(
            masked_ids(&out),
            "a1 OK [MAILBOXID (*)] CREATE completed\r\na2 OK [MAILBOXID (*)] CREATE completed\r\na3 OK SUBSCRIBE completed\r\n\
a4 OK SUBSCRIBE completed\r\na5 OK SUBSCRIBE completed\r\na6 OK DELETE completed\r\n\
a7 OK DELETE completed\r\n"
        );
        // RFC 3501 LIST: the level t/a remains (its child does), \Noselect; subscriptions
        // alone are no mailboxes.
        assert_eq!(
            c.send("l1 LIST \"\" t/*\r\n").await,
            "* LIST (\\Noselect \\HasChildren) \"/\" t/a\r\n\
* LIST (\\HasNoChildren) \"/\" t/a/b\r\nl1 OK LIST completed\r\n"
        );
        assert_eq!(
            c.send("l2 LIST \"\" t%\r\n").await,
            "* LIST (\\HasChildren) \"/\" t\r\nl2 OK LIST completed\r\n"
        );
        assert_eq!(
            c.send("l3 LIST (SUBSCRIBED) \"\" t/*\r\n").await,
            "* LIST (\\NonExistent \\HasChildren \\Subscribed) \"/\" t/a\r\n\
* LIST (\\NonExistent \\HasNoChildren \\Subscribed) \"/\" t/c\r\n\
* LIST (\\NonExistent \\HasNoChildren \\Subscribed) \"/\" t/new\r\nl3 OK LIST completed\r\n"
        );
        assert_eq!(
            c.send("l4 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" t\r\n")
                .await,
            "* LIST (\\HasChildren) \"/\" t (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n\
l4 OK LIST completed\r\n"
        );
        assert_eq!(
            c.send("l5 LIST \"\" t/* RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES))\r\n")
                .await,
            "* LIST (\\NonExistent \\HasChildren \\Subscribed) \"/\" t/a\r\n\
* LIST (\\HasNoChildren) \"/\" t/a/b\r\n* STATUS t/a/b (MESSAGES 0)\r\nl5 OK LIST completed\r\n"
        );
        // LSUB shows subscribed names that lost their mailbox as \Noselect, and with `%`
        // the unsubscribed level above them.
        assert_eq!(
            c.send("m1 LSUB \"\" t/*\r\n").await,
            "* LSUB (\\Noselect) \"/\" t/a\r\n* LSUB (\\Noselect) \"/\" t/c\r\n\
* LSUB (\\Noselect) \"/\" t/new\r\nm1 OK LSUB completed\r\n"
        );
        assert_eq!(
            c.send("m2 LSUB \"\" t%\r\n").await,
            "* LSUB (\\Noselect) \"/\" t\r\nm2 OK LSUB completed\r\n"
        );
        assert_eq!(
            c.send("s1 STATUS t/c (MESSAGES)\r\ns2 SELECT t/a\r\n")
                .await,
            "s1 NO [NONEXISTENT] No such mailbox\r\ns2 NO [NONEXISTENT] No such mailbox\r\n"
        );
        assert_eq!(
            c.send("u1 UNSUBSCRIBE t/c\r\nu2 UNSUBSCRIBE t/c\r\nu3 SUBSCRIBE \"t//x\"\r\n")
                .await,
            "u1 OK UNSUBSCRIBE completed\r\nu2 NO [NONEXISTENT] No such mailbox\r\n\
u3 NO [CANNOT] Not allowed: empty hierarchy level in mailbox name\r\n"
        );
        // A mailbox created under a subscribed name takes the subscription over.
        assert_eq!(
            c.send("c1 CREATE t/new\r\nc2 LIST (SUBSCRIBED) \"\" t/*\r\n")
                .await,
            format!(
                "c1 OK [MAILBOXID ({})] CREATE completed\r\n\
* LIST (\\NonExistent \\HasChildren \\Subscribed) \"/\" t/a\r\n\
* LIST (\\HasNoChildren \\Subscribed) \"/\" t/new\r\nc2 OK LIST completed\r\n",
                mailbox_id(&store, "t/new")
            )
        );
        drop(c);
        store.close();
        drop(store);

        // After a restart (checkpoint written by close), and for an IMAP4rev2 client.
        let store = open_store(dir.path());
        let mut c = Client::login(&store).await;
        c.send("e ENABLE IMAP4rev2\r\n").await;
        assert_eq!(
            c.send("r1 LIST \"\" t/*\r\nr2 LSUB \"\" t/*\r\n").await,
            "* LIST (\\NonExistent \\HasChildren) \"/\" t/a\r\n\
* LIST (\\HasNoChildren) \"/\" t/a/b\r\n* LIST (\\HasNoChildren) \"/\" t/new\r\n\
r1 OK LIST completed\r\n\
* LSUB (\\Noselect) \"/\" t/a\r\n* LSUB () \"/\" t/new\r\nr2 OK LSUB completed\r\n"
        );
    });
}
