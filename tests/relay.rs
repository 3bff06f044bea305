//! The outbound queue and relay end to end: real surel processes on loopback relaying to each
//! other, to loadgen's SMTP sink, and through MX records served by a real DNS server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use loadgen::sink::{Sink, SinkConfig};
use surel::store::MailStore;

/// Queue settings that make retries and expiry fit in a test.
const FAST_QUEUE: &str = "retry_initial_secs = 1\nretry_max_secs = 1\nconnect_timeout_secs = 2\n";

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `surel queue list --json` against the running server.
fn queue(server: &TestServer) -> Vec<serde_json::Value> {
    let out = run_cli(
        &["queue", "list", "--json", "--data-dir"],
        &server.data_dir(),
        None,
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn inbox(server: &TestServer, account: &str) -> Vec<Vec<u8>> {
    let store = server.open_store();
    let Ok(snap) = store.snapshot(account, "INBOX") else {
        return Vec::new();
    };
    snap.messages
        .iter()
        .map(|m| store.read(account, "INBOX", m.uid).unwrap())
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sink(port: u16, tempfail: f64, permfail: f64, dump: Option<&std::path::Path>) -> Sink {
    Sink::start(SinkConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        tempfail_pct: tempfail,
        permfail_pct: permfail,
        dump_dir: dump.map(|d| d.to_path_buf()),
        ..SinkConfig::default()
    })
    .expect("sink")
}

/// A port nobody listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Relays one message from `from` through port 25 (the test client is in allowed_networks).
fn send(server: &TestServer, from: &str, to: &[&str], body: &str) -> String {
    let mut c = smtp_session(server);
    let (code, reply) = smtp_send(&mut c, from, to, body);
    assert_eq!(code, 250, "{reply}");
    c.expect("QUIT", 221);
    reply.trim().rsplit(' ').next().unwrap().to_string()
}

fn relay_config(route: &str, extra: &str) -> String {
    format!(
        "[relay]\nallowed_networks = [\"127.0.0.1/32\"]\n{FAST_QUEUE}{extra}\n[relay.routes]\n{route}\n"
    )
}

#[test]
fn relays_through_a_static_route_to_another_surel_byte_exact() {
    let mut b = TestServer::start(&["bob@example.net"], "");
    let route = format!("\"example.net\" = \"{}\"", b.addr("smtp"));
    let a = TestServer::start(&["alice@example.test"], &relay_config(&route, ""));
    // As the client sends it (dot-stuffed) and as it is stored.
    let wire = "From: alice@example.test\r\nTo: bob@example.net\r\nSubject: over the relay\r\n\r\n..leading dot\r\nbody\r\n";
    let body = "From: alice@example.test\r\nTo: bob@example.net\r\nSubject: over the relay\r\n\r\n.leading dot\r\nbody\r\n";
    let id = send(&a, "alice@example.test", &["bob@example.net"], wire);
    wait_until("the queue to empty", Duration::from_secs(20), || {
        queue(&a).is_empty()
    });
    assert!(
        a.log().contains(&format!(
            "{id}: to=<bob@example.net>, relay=127.0.0.1[127.0.0.1]:"
        )),
        "{}",
        a.log()
    );
    assert!(a.log().contains("status=sent (250 2.0.0"), "{}", a.log());
    b.stop();
    let got = inbox(&b, "bob@example.net");
    assert_eq!(got.len(), 1);
    let m = text(&got[0]);
    // B's trace headers, then A's Received, then the message exactly as sent.
    assert!(m.starts_with("Return-Path: <alice@example.test>\r\nDelivered-To: bob@example.net\r\nReceived: from mx.test"), "{m}");
    assert!(
        m.contains(&format!("with ESMTP id {id}")),
        "A's Received header: {m}"
    );
    assert!(m.ends_with(body), "{m}");
}

/// Postfix's `smtp-sink` refusing every RCPT with 4xx: a destination that is temporarily
/// unavailable. Killed on drop (the port is free again once the process is gone).
struct RefusingPostfixSink(std::process::Child);

impl RefusingPostfixSink {
    fn start(port: u16) -> RefusingPostfixSink {
        const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
        assert!(
            std::path::Path::new(SMTP_SINK).exists(),
            "{SMTP_SINK} is missing: install Debian's postfix package (.ci/run does)"
        );
        let mut cmd = std::process::Command::new(SMTP_SINK);
        // smtp-sink refuses to run as root without -u.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        cmd.args(["-r", "RCPT", &format!("127.0.0.1:{port}"), "16"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = cmd.spawn().expect("spawn smtp-sink");
        wait_until("smtp-sink to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        RefusingPostfixSink(child)
    }
}

impl Drop for RefusingPostfixSink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn temporary_failure_then_success_is_delivered_once() {
    let port = free_port();
    let refusing = RefusingPostfixSink::start(port);
    let route = format!("\"example.net\" = \"127.0.0.1:{port}\"");
    let a = TestServer::start(&["alice@example.test"], &relay_config(&route, ""));
    let id = send(
        &a,
        "alice@example.test",
        &["bob@example.net"],
        "Subject: t\r\n\r\nx\r\n",
    );
    wait_until("a deferral", Duration::from_secs(20), || {
        queue(&a)
            .first()
            .is_some_and(|m| m["recipients"][0]["state"] == "deferred")
    });
    let q = queue(&a);
    assert!(
        q[0]["recipients"][0]["last_reply"]
            .as_str()
            .unwrap()
            .starts_with("450 4."),
        "{q:?}"
    );
    drop(refusing);
    let accepting = sink(port, 0.0, 0.0, None);
    assert!(
        accepting.wait_for_delivered(1, Duration::from_secs(20)),
        "{}",
        a.log()
    );
    wait_until("the queue to empty", Duration::from_secs(10), || {
        queue(&a).is_empty()
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(accepting.snapshot().messages, 1, "delivered exactly once");
    assert!(a.log().contains(&format!("{id}: to=<bob@example.net>")));
    assert!(a.log().contains("status=deferred (450 4."), "{}", a.log());
}

#[test]
fn permanent_failure_returns_a_report_to_the_local_sender() {
    let refusing = sink(0, 0.0, 100.0, None);
    let port = refusing.addr().port();
    let route = format!("\"example.net\" = \"127.0.0.1:{port}\"");
    let mut a = TestServer::start(&["alice@example.test"], &relay_config(&route, ""));

    let body = "Subject: doomed\r\nMessage-ID: <doomed@example.test>\r\n\r\nsecret words\r\n";
    let id = send(
        &a,
        "alice@example.test",
        &["bob@example.net", "carol@example.net"],
        body,
    );
    wait_until("the queue to empty", Duration::from_secs(20), || {
        queue(&a).is_empty()
    });
    a.stop();
    let got = inbox(&a, "alice@example.test");
    assert_eq!(got.len(), 1, "one report for both recipients");
    let r = text(&got[0]);
    assert!(r.starts_with("Return-Path: <>\r\n"), "{r}");
    assert!(
        r.contains("Subject: Undelivered Mail Returned to Sender"),
        "{r}"
    );
    assert!(
        r.contains("multipart/report; report-type=delivery-status"),
        "{r}"
    );
    for rcpt in ["bob@example.net", "carol@example.net"] {
        assert!(
            r.contains(&format!(
                "Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1"
            )),
            "{r}"
        );
    }
    assert!(
        r.contains("Diagnostic-Code: smtp; 550 5.1.1 sink permfail"),
        "{r}"
    );
    assert!(r.contains(&format!("X-Surel-Queue-ID: {id}")), "{r}");
    assert!(r.contains("secret words"), "the original is returned: {r}");
}

#[test]
fn null_sender_is_never_bounced() {
    let refusing = sink(0, 0.0, 100.0, None);
    let port = refusing.addr().port();
    let route = format!("\"example.net\" = \"127.0.0.1:{port}\"");
    let mut a = TestServer::start(&["alice@example.test"], &relay_config(&route, ""));

    let id = send(
        &a,
        "",
        &["bob@example.net"],
        "Subject: a report\r\n\r\nx\r\n",
    );
    wait_until("the queue to empty", Duration::from_secs(20), || {
        queue(&a).is_empty()
    });
    assert!(
        a.log().contains(&format!("{id}: to=<bob@example.net>"))
            && a.log().contains("status=bounced"),
        "{}",
        a.log()
    );
    a.stop();
    assert!(inbox(&a, "alice@example.test").is_empty());
    assert!(inbox(&a, "postmaster@example.test").is_empty());
}

#[test]
fn unreachable_destination_is_deferred_then_returned_after_the_lifetime() {
    let port = free_port();
    let route = format!("\"example.net\" = \"127.0.0.1:{port}\"");
    let mut a = TestServer::start(
        &["alice@example.test"],
        &relay_config(&route, "queue_lifetime_secs = 4\n"),
    );
    let id = send(
        &a,
        "alice@example.test",
        &["bob@example.net"],
        "Subject: nowhere\r\n\r\nx\r\n",
    );
    wait_until("a deferral", Duration::from_secs(10), || {
        queue(&a)
            .first()
            .is_some_and(|m| m["recipients"][0]["state"] == "deferred")
    });
    wait_until("the return", Duration::from_secs(20), || {
        queue(&a).is_empty()
    });
    let log = a.log();
    assert!(
        log.contains(&format!(
            "{id}: to=<bob@example.net>, relay=127.0.0.1[127.0.0.1]:{port}"
        )) || log.contains(&format!("{id}: to=<bob@example.net>, relay=none")),
        "{log}"
    );
    assert!(log.contains("status=deferred (451 4.4.1"), "{log}");
    assert!(log.contains("status=bounced (451 4.4.1"), "{log}");
    a.stop();
    let got = inbox(&a, "alice@example.test");
    assert_eq!(got.len(), 1);
    let r = text(&got[0]);
    assert!(r.contains("Action: failed\r\nStatus: 4.4.1"), "{r}");
}

#[test]
fn relay_is_refused_outside_allowed_networks_and_before_auth() {
    let a = TestServer::start(
        &["alice@example.test"],
        "[relay]\nallowed_networks = [\"10.0.0.0/8\"]\n",
    );
    let mut c = smtp_session(&a);
    c.expect("MAIL FROM:<alice@example.test>", 250);
    let t = c.expect("RCPT TO:<bob@example.net>", 554);
    assert!(t.contains("5.7.1"), "{t}");
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("QUIT", 221);
    let mut s = Client::connect(a.addr("submission"));
    assert_eq!(s.reply().0, 220);
    s.expect("EHLO c.test", 250);
    s.expect("MAIL FROM:<alice@example.test>", 530);
    s.expect("QUIT", 221);
    assert!(queue(&a).is_empty());
}

#[path = "common/dns.rs"]
mod dns_server;

/// Verifies every DKIM signature of `message` with mail-auth, resolving keys through `dns`.
fn dkim_verdicts(dns: std::net::SocketAddr, message: &[u8]) -> Vec<mail_auth::DkimResult> {
    use mail_auth::hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
    };
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.port();
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    opts.cache_size = 0;
    let config = ResolverConfig::from_parts(
        None,
        vec![],
        vec![NameServerConfig::new(dns.ip(), true, vec![udp])],
    );
    let authenticator = mail_auth::MessageAuthenticator::new(config, opts).unwrap();
    let parsed = mail_auth::AuthenticatedMessage::parse(message).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            authenticator
                .verify_dkim(&parsed)
                .await
                .into_iter()
                .map(|o| o.result().clone())
                .collect()
        })
}

#[test]
fn relays_through_mx_records_from_a_real_dns_server_dkim_signed() {
    let mut b = TestServer::start(&["bob@example.org"], "");
    // A's signing key for its domain, generated by the CLI before A starts.
    let a_dir = tempfile::tempdir().unwrap();
    let data = a_dir.path().join("data");
    let out = run_cli(
        &["dkim", "generate", "example.test", "--data-dir"],
        &data,
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let keys = surel::dkim::DkimKeys::load(&surel::dkim::key_dir(&data)).unwrap();
    let value = surel::dkim::txt_record_value(keys.for_domain("example.test").unwrap());
    // dnsmasq takes a record's strings comma-separated; each at most 255 octets.
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let dns = dns_server::Dnsmasq::start(&[
        "--local=/test/",
        "--local=/org/",
        "--mx-host=example.org,mx1.example.org,10",
        "--mx-host=example.org,mx2.example.org,20",
        "--host-record=mx1.example.org,127.0.0.1",
        "--mx-host=nullmx.test,.,0",
        &format!(
            "--txt-record=surel._domainkey.example.test,{}",
            strings.join(",")
        ),
    ]);
    let extra = format!(
        "[relay]\nallowed_networks = [\"127.0.0.1/32\"]\nnameservers = [\"{}\"]\nsmtp_port = {}\n{FAST_QUEUE}",
        dns.addr(),
        b.addr("smtp").port()
    );
    let mut a = TestServer {
        dir: a_dir,
        child: None,
        ports: Default::default(),
        extra_config: extra,
        env: Vec::new(),
        cores: 2,
    };
    a.add_user("alice@example.test", PASSWORD);
    a.launch();
    let body = "From: Alice <alice@example.test>\r\nTo: bob@example.org\r\nSubject: signed\r\nDate: Wed, 02 Dec 2026 06:00:00 +0000\r\nMessage-ID: <signed@example.test>\r\n\r\nHello Bob.\r\n";
    let id = send(&a, "alice@example.test", &["bob@example.org"], body);
    // A null MX refuses mail outright: returned at once, no retries.
    let null = send(
        &a,
        "alice@example.test",
        &["x@nullmx.test"],
        "Subject: void\r\n\r\nx\r\n",
    );
    wait_until("the queue to empty", Duration::from_secs(30), || {
        queue(&a).is_empty()
    });
    let log = a.log();
    assert!(
        log.contains(&format!(
            "{id}: to=<bob@example.org>, relay=mx1.example.org[127.0.0.1]:"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("{null}: to=<x@nullmx.test>, relay=none")),
        "{log}"
    );
    assert!(log.contains("status=bounced (556 5.1.10"), "{log}");
    // mx1 answered at once: mx2 (no address) was never needed.
    assert!(dns.queries("MX", "example.org") >= 1, "{}", dns.log());
    b.stop();
    let got = inbox(&b, "bob@example.org");
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert!(
        text(m).contains("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{}",
        text(m)
    );
    assert!(m.ends_with(body.as_bytes()));
    let verdicts = dkim_verdicts(dns.addr(), m);
    assert_eq!(verdicts, vec![mail_auth::DkimResult::Pass], "{}", text(m));
    a.stop();
    let reports = inbox(&a, "alice@example.test");
    assert_eq!(reports.len(), 1);
    assert!(
        text(&reports[0]).contains("Status: 5.1.10"),
        "{}",
        text(&reports[0])
    );
}
