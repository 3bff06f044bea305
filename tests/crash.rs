//! A short run of the crash harness (`scripts/crash_driver.py`, also behind
//! `scripts/crash-test.sh`): the server is SIGKILLed at random moments under mixed SMTP, IMAP,
//! POP3 and compaction load, and after every restart nothing acknowledged may be lost,
//! duplicated or changed, and `surel store check` must find the store clean.

mod common;

use std::process::Command;

#[test]
fn sigkill_under_mixed_load_and_compaction_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/crash_driver.py");
    let out = Command::new("python3")
        .arg(driver)
        .args(["--surel", common::surel_bin(), "--cycles", "20"])
        .args([
            "--load-min",
            "0.2",
            "--load-max",
            "1.5",
            "--max-seconds",
            "100",
        ])
        .arg("--work")
        .arg(work.path())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(work.path().join("server.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\nserver log (last lines, newest first):\n{}",
        tail.join("\n")
    );
    let summary = stdout
        .lines()
        .find_map(|l| l.strip_prefix("crash-test summary: "))
        .expect("summary line");
    eprintln!("{summary}");
    let field = |name: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {summary}"))
    };
    assert!(summary.starts_with("PASS"), "{summary}");
    assert!(field("cycles") >= 5, "{summary}");
    assert!(field("acknowledged") > 100, "{summary}");
    assert_eq!((field("lost"), field("duplicated")), (0, 0), "{summary}");
    assert!(field("segments_compacted") > 0, "compaction ran: {summary}");
}
