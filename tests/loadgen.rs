//! loadgen's protocol clients against the real server: bounded runs whose counts must add up,
//! with `--verify` reading every delivered message back byte for byte.

mod common;

use clap::Parser;
use common::*;

fn loadgen(args: &[&str]) -> loadgen::stats::Summary {
    let mut argv = vec!["loadgen"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&[
        "--cores",
        "1",
        "--quiet",
        "--password",
        PASSWORD,
        "--timeout",
        "20",
    ]);
    let cli = loadgen::cli::Cli::try_parse_from(argv).expect("loadgen arguments");
    loadgen::app::run(cli).expect("loadgen run")
}

#[test]
fn smtp_delivery_verified_through_pop3_then_fetched_again() {
    let users: Vec<String> = (1..=8)
        .map(|i| format!("user{i:04}@example.test"))
        .collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let server = TestServer::start(&refs, "");
    let smtp = server.addr("smtp").to_string();
    let pop3s = format!("pop3s://{}", server.addr("pop3s"));

    let s = loadgen(&[
        "smtp",
        "--target",
        &smtp,
        "--connections",
        "4",
        "--count",
        "120",
        "--users",
        "8",
        "--rcpts",
        "2",
        "--msgs-per-conn",
        "5",
        "--size-dist",
        "realistic",
        "--verify",
        "--verify-via",
        &pop3s,
    ]);
    assert_eq!((s.jobs_ok, s.jobs_failed), (120, 0), "{:?}", s.errors);
    let v = s.verify.expect("verify report");
    assert_eq!(v.expected, 240, "two recipients per message");
    assert_eq!(
        (v.found, v.lost, v.duplicated, v.corrupted),
        (240, 0, 0, 0),
        "{:?}",
        v.examples
    );

    // Every account holds 30 messages; 8 POP3 sessions (one per account) fetch all 240.
    let p = loadgen(&[
        "pop3",
        "--target",
        &server.addr("pop3").to_string(),
        "--stls",
        "--connections",
        "4",
        "--count",
        "8",
        "--users",
        "8",
    ]);
    assert_eq!((p.jobs_ok, p.jobs_failed), (8, 0), "{:?}", p.errors);
    assert_eq!(p.messages, 240);

    // The same over IMAP (TLS), full bodies and then headers only.
    let imaps = server.addr("imaps").to_string();
    for extra in [None, Some("--headers-only")] {
        let mut args = vec![
            "imap",
            "--target",
            &imaps,
            "--tls",
            "--connections",
            "4",
            "--count",
            "8",
            "--users",
            "8",
        ];
        args.extend(extra);
        let i = loadgen(&args);
        assert_eq!((i.jobs_ok, i.jobs_failed), (8, 0), "{:?}", i.errors);
        assert_eq!(i.messages, 240, "{extra:?}");
    }
}

#[test]
fn e2e_delivery_is_seen_by_idle_watchers() {
    let server = TestServer::start(&["user0001@example.test", "user0002@example.test"], "");
    let watch = format!("imaps://{}", server.addr("imaps"));
    let s = loadgen(&[
        "e2e",
        "--target",
        &server.addr("smtp").to_string(),
        "--watch",
        &watch,
        "--connections",
        "2",
        "--count",
        "20",
        "--users",
        "2",
        "--e2e-wait",
        "10",
    ]);
    assert_eq!((s.jobs_ok, s.jobs_failed), (20, 0), "{:?}", s.errors);
    assert!(!s.errors.contains_key("not-seen-by-idle"), "{:?}", s.errors);
    assert_eq!(
        s.latency.count, 20,
        "every delivery timed from 250 to EXISTS"
    );
}

#[test]
fn submission_with_auth_and_starttls() {
    let server = TestServer::start(&["user0001@example.test", "user0002@example.test"], "");
    let s = loadgen(&[
        "smtp",
        "--target",
        &server.addr("submission").to_string(),
        "--starttls",
        "--auth",
        "each",
        "--connections",
        "2",
        "--count",
        "20",
        "--users",
        "2",
    ]);
    assert_eq!((s.jobs_ok, s.jobs_failed), (20, 0), "{:?}", s.errors);
}
