//! IMAP extensions end to end over TLS against the real binary and its store on disk:
//! CHILDREN and the LIST/LSUB details of names without a mailbox (kept across a restart).

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
