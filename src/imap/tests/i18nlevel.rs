//! I18NLEVEL=1 (RFC 5255): SEARCH and SORT through the session with the i;unicode-casemap
//! comparator: case and normalization form do not matter, accents do, and SORT orders the
//! titlecased keys.

use super::*;

async fn deliver_raw(store: &LogStore, raw: &str) {
    store_raw(store, "INBOX", raw.as_bytes(), 1_700_000_000).await;
}

/// A UTF-8 search string as a non-synchronizing literal.
fn lit(s: &str) -> String {
    format!("{{{}+}}\r\n{s}", s.len())
}

#[test]
fn search_and_sort_use_unicode_casemap() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let text = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n";
        for (subject, body) in [
            (
                "=?utf-8?q?Caf=C3=A9_cr=C3=A8me?=",
                "Gr\u{fc}\u{df}e aus K\u{f6}ln",
            ),
            ("=?utf-8?q?CAFE=CC=81_au_lait?=", "plain"),
            ("Cafe", "plain"),
            ("=?utf-8?q?=C3=89mile?=", "\u{fb01}nal \u{fb01}le"),
            ("_under", "plain"),
        ] {
            deliver_raw(
                &store,
                &format!("Subject: {subject}\r\n{text}\r\n{body}\r\n"),
            )
            .await;
        }
        let mut c = Client::login(&store).await;
        assert!(c.send("c CAPABILITY\r\n").await.contains(" I18NLEVEL=1 "));
        c.send("s SELECT INBOX\r\n").await;
        let searches = [
            (format!("SUBJECT {}", lit("café")), "1 2"),
            (format!("SUBJECT {}", lit("CAFÉ CRÈME")), "1"),
            (format!("SUBJECT {}", lit("cafe\u{301}")), "1 2"),
            ("SUBJECT cafe".to_string(), "1 2 3"),
            (format!("SUBJECT {}", lit("émile")), "4"),
            ("SUBJECT emile".to_string(), ""),
            (format!("BODY {}", lit("KÖLN")), "1"),
            ("BODY FILE".to_string(), "4"),
            (format!("TEXT {}", lit("\u{fb01}nal")), "4"),
        ];
        for (criteria, expected) in searches {
            let out = c
                .send(format!("a SEARCH CHARSET UTF-8 {criteria}\r\n"))
                .await;
            let hits = if expected.is_empty() {
                String::new()
            } else {
                format!(" {expected}")
            };
            assert_eq!(
                out,
                format!("* SEARCH{hits}\r\na OK SEARCH completed\r\n"),
                "{criteria}"
            );
        }
        // Keys are titlecased: "_" (0x5F) sorts after the letters, "É" with the "E"s.
        assert_eq!(
            c.send("o SORT (SUBJECT) UTF-8 ALL\r\n").await,
            "* SORT 3 2 1 4 5\r\no OK SORT completed\r\n"
        );
    });
}
