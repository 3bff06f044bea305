//! surel relays to Postfix: a server we did not write takes what we send. A private Postfix
//! instance (Debian's package, its own config, queue and mail directories in a temporary
//! directory, listening on 127.0.0.1 and a high port) delivers to a Maildir; the message must
//! arrive there byte for byte behind Postfix's own trace headers. Postfix's master must run as
//! root, as on any mail server; `scripts/test.sh` installs the package.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
}

fn postfix_cmd(etc: &Path, args: &[&str]) -> std::process::Output {
    Command::new("/usr/sbin/postfix")
        .arg("-c")
        .arg(etc)
        .args(args)
        .output()
        .expect("run postfix")
}

impl Postfix {
    fn start() -> Postfix {
        assert!(
            Path::new("/usr/sbin/postfix").exists(),
            "Postfix is missing: install Debian's postfix package (scripts/test.sh does)"
        );
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "Postfix's master runs as root; run this test as root (CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        // Postfix's daemons run as `postfix` and `nobody`: they must reach into the directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path();
        let etc = d.join("etc");
        for sub in ["etc", "spool", "data", "mail"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let chown = |p: &Path, user: &str| {
            let ok = Command::new("chown").arg(user).arg(p).status().unwrap();
            assert!(ok.success());
        };
        chown(&d.join("data"), "postfix");
        chown(&d.join("mail"), "nobody:nogroup");
        std::fs::write(
            etc.join("main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {d}/spool\n\
                 data_directory = {d}/data\n\
                 command_directory = /usr/sbin\n\
                 daemon_directory = /usr/lib/postfix/sbin\n\
                 meta_directory = /etc/postfix\n\
                 shlib_directory = /usr/lib/postfix\n\
                 mail_owner = postfix\n\
                 setgid_group = postdrop\n\
                 maillog_file = {d}/postfix.log\n\
                 maillog_file_prefixes = {d}\n\
                 myhostname = mx.example.net\n\
                 mydomain = example.net\n\
                 mydestination =\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 smtp_dns_support_level = disabled\n\
                 local_recipient_maps =\n\
                 alias_maps =\n\
                 alias_database =\n\
                 biff = no\n\
                 smtpd_relay_restrictions = reject_unauth_destination\n\
                 virtual_mailbox_domains = example.net\n\
                 virtual_mailbox_base = {d}/mail\n\
                 virtual_mailbox_maps = static:bob/\n\
                 virtual_uid_maps = static:65534\n\
                 virtual_gid_maps = static:65534\n\
                 virtual_minimum_uid = 100\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            etc.join("master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd\n\
                 pickup unix n - n 60 1 pickup\n\
                 cleanup unix n - n - 0 cleanup\n\
                 qmgr unix n - n 300 1 qmgr\n\
                 tlsmgr unix - - n 1000? 1 tlsmgr\n\
                 rewrite unix - - n - - trivial-rewrite\n\
                 bounce unix - - n - 0 bounce\n\
                 defer unix - - n - 0 bounce\n\
                 trace unix - - n - 0 bounce\n\
                 verify unix - - n - 1 verify\n\
                 flush unix n - n 1000? 0 flush\n\
                 proxymap unix - - n - - proxymap\n\
                 smtp unix - - n - - smtp\n\
                 relay unix - - n - - smtp\n\
                 showq unix n - n - - showq\n\
                 error unix - - n - - error\n\
                 retry unix - - n - - error\n\
                 discard unix - - n - - discard\n\
                 virtual unix - n n - - virtual\n\
                 anvil unix - - n - 1 anvil\n\
                 scache unix - - n - 1 scache\n\
                 postlog unix-dgram n - n - 1 postlogd\n"
            ),
        )
        .unwrap();
        let check = postfix_cmd(&etc, &["check"]);
        assert!(check.status.success(), "postfix check: {check:?}");
        let start = postfix_cmd(&etc, &["start"]);
        assert!(start.status.success(), "postfix start: {start:?}");
        let postfix = Postfix { dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Postfix did not listen: {}",
                postfix.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        postfix
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// Waits (up to 10 s) for `needle` in Postfix's log (written by its postlogd).
    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn maildir(&self) -> Vec<PathBuf> {
        let new = self.dir.path().join("mail/bob/new");
        std::fs::read_dir(new)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = postfix_cmd(&self.dir.path().join("etc"), &["stop"]);
    }
}

#[test]
fn postfix_accepts_and_delivers_what_surel_relays() {
    let postfix = Postfix::start();
    let a = TestServer::start(
        &["alice@example.test"],
        &format!(
            "[relay]\nallowed_networks = [\"127.0.0.1/32\"]\nretry_initial_secs = 1\n\
             [relay.routes]\n\"example.net\" = \"127.0.0.1:{}\"\n",
            postfix.port
        ),
    );
    let body = "From: alice@example.test\r\nTo: bob@example.net\r\nSubject: to Postfix\r\n\
                Message-ID: <to-postfix@example.test>\r\nDate: Wed, 02 Dec 2026 06:00:00 +0000\r\n\r\nHello Postfix.\r\n.. a stuffed dot\r\n";
    let mut c = smtp_session(&a);
    let (code, reply) = smtp_send(&mut c, "alice@example.test", &["bob@example.net"], body);
    assert_eq!(code, 250, "{reply}");
    c.expect("QUIT", 221);
    let deadline = Instant::now() + Duration::from_secs(30);
    let file = loop {
        if let Some(f) = postfix.maildir().into_iter().next() {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "nothing delivered by Postfix.\nsurel: {}\npostfix: {}",
            a.log(),
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Postfix's virtual(8) writes LF line endings; compare line by line.
    let stored = std::fs::read_to_string(file).unwrap();
    let sent = body.replace("\r\n", "\n").replace("\n..", "\n.");
    assert!(stored.ends_with(&sent), "{stored}");
    assert!(stored.contains("Received: from mx.test"), "{stored}");
    postfix.wait_log("status=sent (delivered to maildir)");
    a.wait_log("to=<bob@example.net>, relay=127.0.0.1[127.0.0.1]");
    a.wait_log("status=sent (250 2.0.0 Ok");
}
