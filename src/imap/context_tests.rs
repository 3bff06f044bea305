//! CONTEXT=SEARCH / CONTEXT=SORT (RFC 5267 §4) through the sans-IO session and a real store:
//! the exact ADDTO / REMOVEFROM a session holding live results sees as another session (or
//! itself) changes the mailbox. (A child module of `tests`, for its `Client`.)

use super::*;

async fn put(store: &LogStore, subject: &str, internal_date: i64) -> u32 {
    store_raw(store, "INBOX", &msg(subject, "hello"), internal_date).await
}

/// A session with IMAP4rev2 enabled (no \Recent noise) and INBOX selected.
async fn selected(store: &LogStore, config: ImapConfig) -> Client {
    let mut c = Client::new(store, config).await;
    let out = c.send("e ENABLE IMAP4rev2\r\ns SELECT INBOX\r\n").await;
    assert!(
        out.ends_with("s OK [READ-WRITE] SELECT completed\r\n"),
        "{out}"
    );
    c
}

#[test]
fn search_contexts_follow_another_session() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["a", "b", "c"] {
            deliver(&store, "INBOX", s).await;
        }
        let mut a = selected(&store, ImapConfig::default()).await;
        let mut b = selected(&store, ImapConfig::default()).await;
        let out = a
            .send(
                "s1 UID SEARCH RETURN (UPDATE) UNSEEN\r\n\
                 s2 SEARCH RETURN (COUNT UPDATE) UNSEEN\r\n",
            )
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"s1\") UID ALL 1:3\r\ns1 OK SEARCH completed\r\n\
             * ESEARCH (TAG \"s2\") COUNT 3\r\ns2 OK SEARCH completed\r\n"
        );

        // A flag change that takes a message out of the result.
        b.send("b1 STORE 2 +FLAGS (\\Seen)\r\n").await;
        a.settle().await;
        let out = a.send("n1 NOOP\r\n").await;
        assert_eq!(
            out,
            "* 2 FETCH (FLAGS (\\Seen))\r\n\
             * ESEARCH (TAG \"s1\") UID REMOVEFROM (0 2)\r\n\
             * ESEARCH (TAG \"s2\") REMOVEFROM (0 2)\r\n\
             n1 OK NOOP completed\r\n"
        );

        // A new message: ADDTO after EXISTS.
        deliver(&store, "INBOX", "d").await;
        a.settle().await;
        let out = a.send("n2 NOOP\r\n").await;
        assert_eq!(
            out,
            "* 4 EXISTS\r\n\
             * ESEARCH (TAG \"s1\") UID ADDTO (0 4)\r\n\
             * ESEARCH (TAG \"s2\") ADDTO (0 4)\r\n\
             n2 OK NOOP completed\r\n"
        );

        // An expunge: REMOVEFROM while the message number is still valid, then EXPUNGE.
        b.send("b2 STORE 1 +FLAGS.SILENT (\\Deleted)\r\nb3 EXPUNGE\r\n")
            .await;
        a.settle().await;
        let out = a.send("n3 NOOP\r\n").await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"s1\") UID REMOVEFROM (0 1)\r\n\
             * ESEARCH (TAG \"s2\") REMOVEFROM (0 1)\r\n\
             * 1 EXPUNGE\r\n\
             n3 OK NOOP completed\r\n"
        );

        // A message that starts matching again, and one delivered meanwhile, seen during IDLE.
        let out = a.send("i IDLE\r\n").await;
        assert_eq!(out, "+ idling\r\n");
        b.send("b4 UID STORE 2 -FLAGS (\\Seen)\r\n").await;
        deliver(&store, "INBOX", "e").await;
        a.settle().await;
        let mut out = Vec::new();
        a.s.idle_update(&a.store, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "* 1 FETCH (FLAGS ())\r\n\
             * 4 EXISTS\r\n\
             * ESEARCH (TAG \"s1\") UID ADDTO (0 2,5)\r\n\
             * ESEARCH (TAG \"s2\") ADDTO (0 1,4)\r\n"
        );
        assert_eq!(a.send("DONE\r\n").await, "i OK IDLE terminated\r\n");
        // The live result is what a new search finds.
        let out = a.send("s3 UID SEARCH UNSEEN\r\n").await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"s3\") UID ALL 2:5\r\ns3 OK SEARCH completed\r\n"
        );
    });
}

#[test]
fn own_changes_update_contexts() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["a", "b", "c"] {
            deliver(&store, "INBOX", s).await;
        }
        let mut a = selected(&store, ImapConfig::default()).await;
        a.send("s1 UID SEARCH RETURN (UPDATE MIN) UNSEEN\r\n").await;
        let out = a.send("t1 STORE 1 +FLAGS (\\Seen)\r\n").await;
        assert_eq!(
            out,
            "* 1 FETCH (FLAGS (\\Seen))\r\n\
             * ESEARCH (TAG \"s1\") UID REMOVEFROM (0 1)\r\n\
             t1 OK STORE completed\r\n"
        );
        let out = a
            .send("t2 STORE 2:3 +FLAGS.SILENT (\\Deleted)\r\nt3 EXPUNGE\r\n")
            .await;
        assert_eq!(
            out,
            "t2 OK STORE completed\r\n\
             * ESEARCH (TAG \"s1\") UID REMOVEFROM (0 2:3)\r\n\
             * 3 EXPUNGE\r\n* 2 EXPUNGE\r\n\
             t3 OK EXPUNGE completed\r\n"
        );
        let out = a.send("t4 APPEND INBOX {5+}\r\nhello\r\n").await;
        assert!(
            out.starts_with("* 2 EXISTS\r\n* ESEARCH (TAG \"s1\") UID ADDTO (0 4)\r\n"),
            "{out}"
        );
        // A copy into the selected mailbox, then a MOVE out of it.
        let out = a.send("t5 COPY 2 INBOX\r\n").await;
        assert!(
            out.starts_with("* 3 EXISTS\r\n* ESEARCH (TAG \"s1\") UID ADDTO (0 5)\r\n"),
            "{out}"
        );
        let out = a.send("t6 MOVE 2:3 Trash\r\n").await;
        assert!(
            out.ends_with(
                "* ESEARCH (TAG \"s1\") UID REMOVEFROM (0 4:5)\r\n\
                 * 3 EXPUNGE\r\n* 2 EXPUNGE\r\nt6 OK MOVE completed\r\n"
            ),
            "{out}"
        );
    });
}

#[test]
fn sort_contexts_report_positions() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        put(&store, "m1", 100).await;
        put(&store, "m2", 300).await;
        put(&store, "m3", 200).await;
        let mut a = selected(&store, ImapConfig::default()).await;
        let mut b = selected(&store, ImapConfig::default()).await;
        let out = a
            .send(
                "o1 UID SORT RETURN (UPDATE) (ARRIVAL) UTF-8 UNSEEN\r\n\
                 o2 SORT RETURN (UPDATE COUNT) (REVERSE ARRIVAL) UTF-8 UNSEEN\r\n",
            )
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"o1\") UID ALL 1,3,2\r\no1 OK SORT completed\r\n\
             * ESEARCH (TAG \"o2\") COUNT 3\r\no2 OK SORT completed\r\n"
        );
        // Arrival 150 goes between 1 (100) and 3 (200): position 2 (3 from the end).
        put(&store, "m4", 150).await;
        a.settle().await;
        let out = a.send("n1 NOOP\r\n").await;
        assert_eq!(
            out,
            "* 4 EXISTS\r\n\
             * ESEARCH (TAG \"o1\") UID ADDTO (2 4)\r\n\
             * ESEARCH (TAG \"o2\") ADDTO (3 4)\r\n\
             n1 OK NOOP completed\r\n"
        );
        // 1,4,3,2: the third leaves.
        b.send("b1 UID STORE 3 +FLAGS (\\Seen)\r\n").await;
        a.settle().await;
        let out = a.send("n2 NOOP\r\n").await;
        assert_eq!(
            out,
            "* 3 FETCH (FLAGS (\\Seen))\r\n\
             * ESEARCH (TAG \"o1\") UID REMOVEFROM (3 3)\r\n\
             * ESEARCH (TAG \"o2\") REMOVEFROM (2 3)\r\n\
             n2 OK NOOP completed\r\n"
        );
        // 1,4,2 + 5 (arrival 50, first) and 6 (400, last): two pairs in one ADDTO.
        put(&store, "m5", 50).await;
        put(&store, "m6", 400).await;
        a.settle().await;
        let out = a.send("n3 NOOP\r\n").await;
        assert_eq!(
            out,
            "* 6 EXISTS\r\n\
             * ESEARCH (TAG \"o1\") UID ADDTO (1 5 5 6)\r\n\
             * ESEARCH (TAG \"o2\") ADDTO (1 6 5 5)\r\n\
             n3 OK NOOP completed\r\n"
        );
        // 5,1,4,2,6: 1 and 4 go (adjacent: one pair), REMOVEFROM before the EXPUNGEs.
        b.send("b2 UID STORE 1,4 +FLAGS.SILENT (\\Deleted)\r\nb3 EXPUNGE\r\n")
            .await;
        a.settle().await;
        let out = a.send("n4 NOOP\r\n").await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"o1\") UID REMOVEFROM (2 1,4)\r\n\
             * ESEARCH (TAG \"o2\") REMOVEFROM (3 4,1)\r\n\
             * 4 EXPUNGE\r\n* 1 EXPUNGE\r\n\
             n4 OK NOOP completed\r\n"
        );
        let out = a.send("o3 UID SORT (ARRIVAL) UTF-8 UNSEEN\r\n").await;
        assert_eq!(out, "* SORT 5 2 6\r\no3 OK SORT completed\r\n");
    });
}

#[test]
fn limits_cancel_and_end_of_contexts() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["a", "b", "c"] {
            deliver(&store, "INBOX", s).await;
        }
        let config = ImapConfig {
            limits: ImapLimits {
                max_update_contexts: 1,
                ..ImapLimits::default()
            },
            ..ImapConfig::default()
        };
        let mut a = Client::new(&store, config).await;
        let out = a.send("c0 CANCELUPDATE \"u1\"\r\n").await;
        assert_eq!(out, "c0 BAD No mailbox selected\r\n");
        let out = a.send("c1 CAPABILITY\r\n").await;
        assert!(out.contains(" CONTEXT=SEARCH CONTEXT=SORT "), "{out}");
        a.send("e ENABLE IMAP4rev2\r\ns SELECT INBOX\r\n").await;
        let out = a
            .send(
                "u1 SEARCH RETURN (UPDATE CONTEXT) ALL\r\n\
                 u1 SEARCH RETURN (UPDATE) ALL\r\n\
                 u2 UID SEARCH RETURN (UPDATE COUNT) ALL\r\n\
                 u3 UID SORT RETURN (UPDATE) (SIZE) UTF-8 ALL\r\n\
                 u4 SEARCH RETURN (CONTEXT COUNT) ALL\r\n",
            )
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"u1\") ALL 1:3\r\nu1 OK SEARCH completed\r\n\
             u1 BAD Tag reuse\r\n\
             * NO [NOUPDATE \"u2\"] Too many contexts (at most 1 per session)\r\n\
             * ESEARCH (TAG \"u2\") UID COUNT 3\r\nu2 OK SEARCH completed\r\n\
             * NO [NOUPDATE \"u3\"] Too many contexts (at most 1 per session)\r\n\
             * ESEARCH (TAG \"u3\") UID ALL 1:3\r\nu3 OK SORT completed\r\n\
             * ESEARCH (TAG \"u4\") COUNT 3\r\nu4 OK SEARCH completed\r\n"
        );
        let out = a
            .send(
                "c2 CANCELUPDATE \"u1\" \"zz\"\r\n\
                 c3 CANCELUPDATE \"u1\"\r\n\
                 c4 CANCELUPDATE u1\r\n",
            )
            .await;
        assert_eq!(
            out,
            "c2 NO No update context for zz\r\n\
             c3 NO No update context for u1\r\n\
             c4 BAD CANCELUPDATE takes quoted tags\r\n"
        );
        deliver(&store, "INBOX", "d").await;
        a.settle().await;
        assert_eq!(
            a.send("n1 NOOP\r\n").await,
            "* 4 EXISTS\r\nn1 OK NOOP completed\r\n"
        );
        // Room again: a cancelled context frees its slot, and a PARTIAL window with UPDATE
        // still gets updates about every match.
        let out = a
            .send("p1 UID SEARCH RETURN (PARTIAL 1:2 UPDATE) ALL\r\nc5 CANCELUPDATE \"p1\"\r\n")
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"p1\") UID PARTIAL (1:2 1:2)\r\np1 OK SEARCH completed\r\n\
             c5 OK CANCELUPDATE completed\r\n"
        );
        a.send("p2 UID SEARCH RETURN (PARTIAL -1:-1 UPDATE) ALL\r\n")
            .await;
        deliver(&store, "INBOX", "e").await;
        a.settle().await;
        assert_eq!(
            a.send("n2 NOOP\r\n").await,
            "* 5 EXISTS\r\n* ESEARCH (TAG \"p2\") UID ADDTO (0 5)\r\nn2 OK NOOP completed\r\n"
        );
        // Contexts end with the selection: after UNSELECT and SELECT nothing more comes, and
        // the tag is free again.
        a.send("x UNSELECT\r\ny SELECT INBOX\r\n").await;
        deliver(&store, "INBOX", "f").await;
        a.settle().await;
        assert_eq!(
            a.send("n3 NOOP\r\n").await,
            "* 6 EXISTS\r\nn3 OK NOOP completed\r\n"
        );
        let out = a.send("p2 SEARCH RETURN (UPDATE COUNT) ALL\r\n").await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"p2\") COUNT 6\r\np2 OK SEARCH completed\r\n"
        );
        let out = a.send("z SELECT INBOX\r\n").await;
        assert!(out.starts_with("* OK [CLOSED]"), "{out}");
        deliver(&store, "INBOX", "g").await;
        a.settle().await;
        assert_eq!(
            a.send("n4 NOOP\r\n").await,
            "* 7 EXISTS\r\nn4 OK NOOP completed\r\n"
        );
    });
}

#[test]
fn contexts_on_message_numbers_and_sequence_criteria() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["a", "b", "c", "d"] {
            deliver(&store, "INBOX", s).await;
        }
        let mut a = selected(&store, ImapConfig::default()).await;
        let mut b = selected(&store, ImapConfig::default()).await;
        // `2:*` depends on positions: an expunge below it shifts the whole view.
        a.send("q1 UID SEARCH RETURN (UPDATE) 2:*\r\n").await;
        b.send("b1 STORE 1 +FLAGS.SILENT (\\Deleted)\r\nb2 EXPUNGE\r\n")
            .await;
        a.settle().await;
        // Before the EXPUNGE, message 1 is still in the view: nothing changes for 2:*.
        let out = a.send("f1 FETCH 1 UID\r\n").await;
        assert_eq!(out, "* 1 FETCH (UID 1)\r\nf1 OK FETCH completed\r\n");
        // After it, messages 2:* are UIDs 3 and 4.
        let out = a.send("n1 NOOP\r\n").await;
        assert_eq!(
            out,
            "* 1 EXPUNGE\r\n\
             * ESEARCH (TAG \"q1\") UID REMOVEFROM (0 2)\r\n\
             n1 OK NOOP completed\r\n"
        );
        assert_eq!(a.send("n2 NOOP\r\n").await, "n2 OK NOOP completed\r\n");
        // On message numbers: a SORT context. UID 3 (message 2) goes: out of both results
        // before its EXPUNGE; message 2 is UID 4 afterwards, still in `2:*`.
        a.send("q2 SORT RETURN (UPDATE) (REVERSE ARRIVAL) UTF-8 ALL\r\n")
            .await;
        b.send("b3 STORE 2 +FLAGS.SILENT (\\Deleted)\r\nb4 EXPUNGE\r\n")
            .await;
        a.settle().await;
        let out = a.send("n3 NOOP\r\n").await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"q1\") UID REMOVEFROM (0 3)\r\n\
             * ESEARCH (TAG \"q2\") REMOVEFROM (2 2)\r\n\
             * 2 EXPUNGE\r\n\
             n3 OK NOOP completed\r\n"
        );
    });
}

#[test]
fn sort_contexts_place_new_messages_in_a_long_result() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for i in 1..=40 {
            put(&store, &format!("s{i:02}"), 1000 + 10 * i).await;
        }
        let mut a = selected(&store, ImapConfig::default()).await;
        let mut b = selected(&store, ImapConfig::default()).await;
        let out = a
            .send(
                "o1 UID SORT RETURN (UPDATE COUNT) (SUBJECT) UTF-8 ALL\r\n\
                 o2 SORT RETURN (UPDATE COUNT) (REVERSE ARRIVAL) UTF-8 UNSEEN\r\n",
            )
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"o1\") UID COUNT 40\r\no1 OK SORT completed\r\n\
             * ESEARCH (TAG \"o2\") COUNT 40\r\no2 OK SORT completed\r\n"
        );
        // Subject s20a sorts after s20; arrival 1205 is between UIDs 20 and 21, so 20th from
        // the end in reverse. Message 7 leaves the UNSEEN result (34th from the end).
        put(&store, "s20a", 1205).await;
        b.send("f UID STORE 7 +FLAGS (\\Seen)\r\n").await;
        a.settle().await;
        let out = a.send("n NOOP\r\n").await;
        assert_eq!(
            out,
            "* 7 FETCH (FLAGS (\\Seen))\r\n\
             * 41 EXISTS\r\n\
             * ESEARCH (TAG \"o1\") UID ADDTO (21 41)\r\n\
             * ESEARCH (TAG \"o2\") REMOVEFROM (34 7)\r\n\
             * ESEARCH (TAG \"o2\") ADDTO (21 41)\r\n\
             n OK NOOP completed\r\n"
        );
        let out = a.send("o3 SORT (REVERSE ARRIVAL) UTF-8 UNSEEN\r\n").await;
        let fresh: Vec<u32> = out
            .lines()
            .next()
            .unwrap()
            .split(' ')
            .skip(2)
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(fresh.len(), 40);
        assert_eq!(fresh.iter().position(|&n| n == 41), Some(20));
        assert!(!fresh.contains(&7));
    });
}

/// A client's copy of a live result, kept only from what the server sends.
struct Model {
    uid: bool,
    sorted: bool,
    list: Vec<u32>,
}

fn expand(set: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for part in set.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                v.extend(a.min(b)..=a.max(b));
            }
            None => v.push(part.parse().unwrap()),
        }
    }
    v
}

/// Apply the server's output to the models as RFC 5267 §4.3 tells a client to (and the
/// EXPUNGE renumbering of RFC 9051 to the models on message numbers).
/// Returns how many update pairs it applied.
fn apply(models: &mut std::collections::HashMap<String, Model>, out: &str) -> usize {
    let mut applied = 0;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("* ESEARCH (TAG \"") {
            let (tag, rest) = rest.split_once("\")").unwrap();
            let Some(m) = models.get_mut(tag) else {
                continue;
            };
            let rest = rest.trim_start();
            let rest = match rest.strip_prefix("UID ") {
                Some(r) => {
                    assert!(m.uid, "{line}");
                    r
                }
                None => {
                    assert!(!m.uid, "{line}");
                    rest
                }
            };
            let (item, pairs) = rest.split_once(" (").unwrap();
            let words: Vec<&str> = pairs.trim_end_matches(')').split(' ').collect();
            for pair in words.chunks(2) {
                applied += 1;
                let pos: usize = pair[0].parse().unwrap();
                let numbers = expand(pair[1]);
                assert_eq!(pos == 0, !m.sorted, "{line}");
                match item {
                    "ADDTO" if pos == 0 => {
                        for n in numbers {
                            assert!(!m.list.contains(&n), "{line}");
                            let at = m.list.partition_point(|&x| x < n);
                            m.list.insert(at, n);
                        }
                    }
                    "ADDTO" => {
                        assert!(pos <= m.list.len() + 1, "{line}");
                        for (k, n) in numbers.into_iter().enumerate() {
                            m.list.insert(pos - 1 + k, n);
                        }
                    }
                    "REMOVEFROM" if pos == 0 => {
                        for n in numbers {
                            let at = m.list.iter().position(|&x| x == n);
                            m.list.remove(at.unwrap_or_else(|| panic!("{line}")));
                        }
                    }
                    "REMOVEFROM" => {
                        for n in numbers {
                            assert_eq!(m.list.get(pos - 1), Some(&n), "{line}");
                            m.list.remove(pos - 1);
                        }
                    }
                    other => panic!("unexpected {other} in {line}"),
                }
            }
        } else if let Some(n) = line
            .strip_prefix("* ")
            .and_then(|r| r.strip_suffix(" EXPUNGE"))
        {
            let n: u32 = n.parse().unwrap();
            for m in models.values_mut().filter(|m| !m.uid) {
                assert!(!m.list.contains(&n), "EXPUNGE {n} of a live result");
                for x in m.list.iter_mut() {
                    if *x > n {
                        *x -= 1;
                    }
                }
            }
        }
    }
    applied
}

/// The result of a fresh search, in result order.
fn fresh(line: &str) -> Vec<u32> {
    match line.split_once(" ALL ") {
        Some((_, set)) => expand(set.trim_end()),
        None => Vec::new(),
    }
}

#[test]
fn live_results_match_fresh_searches_under_random_changes() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for i in 0..12 {
            put(&store, &format!("s{}", (i * 7) % 5), 1000 + (i * 37) % 11).await;
        }
        let config = ImapConfig {
            max_errors: u32::MAX,
            ..ImapConfig::default()
        };
        let mut a = selected(&store, config.clone()).await;
        let mut b = selected(&store, config).await;
        let queries: &[(&str, &str, bool, bool)] = &[
            ("c1", "UID SEARCH RETURN (UPDATE) UNSEEN", true, false),
            (
                "c2",
                "SEARCH RETURN (UPDATE) OR FLAGGED KEYWORD k",
                false,
                false,
            ),
            (
                "c3",
                "UID SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 UNDELETED",
                true,
                true,
            ),
            (
                "c4",
                "SORT RETURN (UPDATE) (ARRIVAL SIZE) UTF-8 NOT SEEN",
                false,
                true,
            ),
            ("c5", "UID SEARCH RETURN (UPDATE) 3:*", true, false),
            (
                "c6",
                "SORT RETURN (UPDATE) (SUBJECT) UTF-8 OR 2:4 UID 8:*",
                false,
                true,
            ),
        ];
        let mut models = std::collections::HashMap::new();
        for (tag, query, uid, sorted) in queries {
            let out = a.send(format!("{tag} {query}\r\n")).await;
            let first = out.lines().next().unwrap();
            models.insert(
                tag.to_string(),
                Model {
                    uid: *uid,
                    sorted: *sorted,
                    list: fresh(first),
                },
            );
        }
        let mut rng = XorShift(0x5eed_c0de_1234_5678);
        let mut applied = 0;
        let sets = ["1", "2:4", "*", "3,1", "5:2", "1:*", "7"];
        let flags = ["\\Seen", "\\Flagged", "\\Deleted", "k"];
        for i in 0..200 {
            let set = sets[rng.below(sets.len())];
            let flag = flags[rng.below(flags.len())];
            let sign = if rng.below(2) == 0 { "+" } else { "-" };
            let cmd = match rng.below(8) {
                0 => "EXPUNGE".to_string(),
                1 | 5 => format!(
                    "APPEND INBOX ({}) {{{}+}}\r\n{}",
                    if rng.below(2) == 0 { "" } else { "\\Seen" },
                    msg(&format!("s{}", rng.below(5)), "x").len(),
                    String::from_utf8(msg(&format!("s{}", rng.below(5)), "x")).unwrap()
                ),
                2 => format!("MOVE {} Archive", ["1", "*", "2"][rng.below(3)]),
                _ => format!("STORE {set} {sign}FLAGS ({flag})"),
            };
            // Most changes come from the other session, some from the observer itself.
            let own = rng.below(4) == 0;
            let actor = if own { &mut a } else { &mut b };
            let out = actor.send(format!("t{i} {cmd}\r\n")).await;
            // Message numbers past the end of a shrunken mailbox are the only error expected.
            assert!(
                !out.contains(&format!("t{i} BAD")) || out.contains(" sequence "),
                "{cmd} -> {out}"
            );
            if own {
                applied += apply(&mut models, &out);
            }
            if i % 3 == 0 {
                // Notifications may trail the other session's reply: the diff is what counts.
                if let Some(mb) = a.s.selected.as_mut() {
                    mb.mark_dirty();
                }
                let out = a.send("n NOOP\r\n").await;
                applied += apply(&mut models, &out);
                for (tag, query, _, _) in queries {
                    let plain = query.replace("RETURN (UPDATE) ", "RETURN (ALL) ");
                    let out = a.send(format!("q {plain}\r\n")).await;
                    // Nothing changed since the NOOP: the result and the tagged OK only.
                    assert_eq!(out.lines().count(), 2, "{out}");
                    let first = out.lines().next().unwrap();
                    assert!(first.starts_with("* ESEARCH (TAG \"q\")"), "{out}");
                    assert_eq!(models[*tag].list, fresh(first), "{tag} after t{i} {cmd}");
                }
            }
        }
        assert!(applied > 100, "{applied}");
    });
}

/// A change made elsewhere that the view has not merged yet can carry a lower MODSEQ than one
/// this session made since: it must still be evaluated when it is merged.
#[test]
fn changes_merged_late_are_not_missed() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["a", "b"] {
            deliver(&store, "INBOX", s).await;
        }
        let mut a = selected(&store, ImapConfig::default()).await;
        // No notifications reach the view for a while.
        let rx = a.s.take_change_receiver().expect("selected");
        deliver(&store, "INBOX", "c").await;
        let out = a.send("t STORE 1 +FLAGS (\\Flagged)\r\n").await;
        assert_eq!(
            out,
            "* 1 FETCH (FLAGS (\\Flagged))\r\nt OK STORE completed\r\n"
        );
        let out = a.send("s UID SEARCH RETURN (UPDATE) UNSEEN\r\n").await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"s\") UID ALL 1:2\r\ns OK SEARCH completed\r\n"
        );
        a.s.restore_change_receiver(rx);
        let out = a.send("n NOOP\r\n").await;
        assert_eq!(
            out,
            "* 3 EXISTS\r\n* ESEARCH (TAG \"s\") UID ADDTO (0 3)\r\nn OK NOOP completed\r\n"
        );
    });
}
