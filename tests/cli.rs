//! The command-line contract: exit codes and one-line errors.

mod common;

use common::*;

#[test]
fn user_management_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = run_cli(args, data, stdin);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    ok(
        &["user", "add", "a@x.test", "--password-stdin", "--data-dir"],
        Some("pw1"),
    );
    ok(
        &["user", "add", "b@x.test", "--password-stdin", "--data-dir"],
        Some("pw2"),
    );
    assert_eq!(
        ok(&["user", "list", "--data-dir"], None),
        "a@x.test\nb@x.test\n"
    );
    ok(
        &[
            "user",
            "passwd",
            "b@x.test",
            "--password-stdin",
            "--data-dir",
        ],
        Some("pw3"),
    );
    ok(&["user", "remove", "a@x.test", "--data-dir"], None);
    assert_eq!(ok(&["user", "list", "--data-dir"], None), "b@x.test\n");
    let users = std::fs::read_to_string(data.join("users")).unwrap();
    assert!(
        users.contains("$argon2id$"),
        "passwords must be Argon2id hashes"
    );
    assert!(!users.contains("pw3"));

    let list = data.join("import.txt");
    std::fs::write(&list, "c@x.test pw-c\nd@x.test  pw d\n").unwrap();
    assert_eq!(
        ok(
            &["user", "import", list.to_str().unwrap(), "--data-dir"],
            None
        ),
        "imported 2 accounts\n"
    );
    assert_eq!(
        ok(&["user", "list", "--data-dir"], None),
        "b@x.test\nc@x.test\nd@x.test\n"
    );
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let fail = |args: &[&str], stdin: Option<&str>| {
        let out = run_cli(args, data, stdin);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        err
    };
    fail(&["user", "remove", "ghost@x.test", "--data-dir"], None);
    fail(
        &[
            "user",
            "add",
            "not-an-address",
            "--password-stdin",
            "--data-dir",
        ],
        Some("pw"),
    );
    run_cli(
        &["user", "add", "a@x.test", "--password-stdin", "--data-dir"],
        data,
        Some("pw"),
    );
    fail(
        &["user", "add", "a@x.test", "--password-stdin", "--data-dir"],
        Some("pw"),
    );

    let cfg = data.join("bad.toml");
    std::fs::write(&cfg, "hostname = \"x\"\n[limits]\nmax_recipents = 3\n").unwrap();
    let err = fail(&["serve", "--config", cfg.to_str().unwrap()], None);
    assert!(
        err.contains("max_recipents") && err.contains("line 3"),
        "{err}"
    );
    let err = fail(&["serve", "--config", "/nonexistent/surel.toml"], None);
    assert!(err.contains("/nonexistent/surel.toml"), "{err}");
}

#[test]
fn config_default_is_printed_and_parses() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(&["config", "default"], dir.path(), None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[ports]") && text.contains("smtp = 25"));
    let file = dir.path().join("c.toml");
    std::fs::write(&file, &text).unwrap();
    let out = run_cli(
        &["config", "check", file.to_str().unwrap()],
        dir.path(),
        None,
    );
    assert!(out.status.success(), "{out:?}");
}
