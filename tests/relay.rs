//! The outbound queue and relay end to end: real surel processes on loopback relaying to each
//! other, to loadgen's SMTP sink, and through MX records served by a real DNS server.

mod common;

use std::time::Duration;

use common::*;
use loadgen::sink::{Sink, SinkConfig};

/// Queue settings that make retries and expiry fit in a test.
const FAST_QUEUE: &str = "retry_initial_secs = 1\nretry_max_secs = 1\nconnect_timeout_secs = 2\n";

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
    a.wait_log(&format!(
        "{id}: to=<bob@example.net>, relay=127.0.0.1[127.0.0.1]:"
    ));
    a.wait_log("status=sent (250 2.0.0");
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

/// Postfix's `smtp-sink` as a destination, with its options (`-r RCPT`: every RCPT refused
/// with 4xx; `-N`: no DSN offered; `-d DIR/msg.`: each transaction dumped). Killed on drop
/// (the port is free again once the process is gone).
struct PostfixSink(std::process::Child);

impl PostfixSink {
    fn start(port: u16, options: &[&str]) -> PostfixSink {
        const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
        assert!(
            std::path::Path::new(SMTP_SINK).exists(),
            "{SMTP_SINK} is missing: install Debian's postfix package (scripts/test.sh does)"
        );
        let mut cmd = std::process::Command::new(SMTP_SINK);
        // smtp-sink refuses to run as root without -u.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        cmd.args(options)
            .args([&format!("127.0.0.1:{port}"), "16"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = cmd.spawn().expect("spawn smtp-sink");
        wait_until("smtp-sink to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        PostfixSink(child)
    }
}

impl Drop for PostfixSink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn temporary_failure_then_success_is_delivered_once() {
    let port = free_port();
    let refusing = PostfixSink::start(port, &["-r", "RCPT"]);
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
    a.wait_log(&format!("{id}: to=<bob@example.net>"));
    a.wait_log("status=deferred (450 4.");
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
    a.wait_log(&format!("{id}: to=<bob@example.net>"));
    a.wait_log("status=bounced");
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
    let log = a.wait_log("status=bounced (451 4.4.1");
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

#[path = "common/dkim.rs"]
mod dkim_check;

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
        open_files: None,
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
    a.wait_log("status=bounced (556 5.1.10");
    let log = a.wait_log(&format!("{id}: to=<bob@example.org>"));
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
    let verdicts = dkim_check::verdicts(dns.addr(), m);
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

/// Message-IDs of the messages a sink dumped, with how often each arrived.
fn dumped_ids(dir: &std::path::Path) -> std::collections::HashMap<String, usize> {
    let mut ids = std::collections::HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        let m = text(&bytes);
        let id = m
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap_or_else(|| panic!("no Message-ID in {m}"))
            .to_string();
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

fn loadgen(args: &[&str]) -> loadgen::stats::Summary {
    use clap::Parser;
    let mut argv = vec!["loadgen"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--cores", "1", "--quiet", "--timeout", "20"]);
    let cli = loadgen::cli::Cli::try_parse_from(argv).expect("loadgen arguments");
    loadgen::app::run(cli).expect("loadgen run")
}

#[test]
fn sigkill_with_a_full_queue_loses_nothing_duplicates_only_what_was_in_flight() {
    const N: u64 = 400;
    // At most this many transactions are in flight at any moment (over both cores).
    const IN_FLIGHT: usize = 8;
    let dump = tempfile::tempdir().unwrap();
    // A slow destination, so the queue is still full when the relay is killed.
    let sink = Sink::start(SinkConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        delay: Duration::from_millis(20),
        dump_dir: Some(dump.path().to_path_buf()),
        ..SinkConfig::default()
    })
    .unwrap();
    let route = format!("\"example.net\" = \"{}\"", sink.addr());
    let mut a = TestServer::start(
        &["alice@example.test"],
        &relay_config(&route, &format!("max_connections_per_site = {IN_FLIGHT}\n")),
    );
    let s = loadgen(&[
        "smtp",
        "--target",
        &a.addr("smtp").to_string(),
        "--connections",
        "16",
        "--count",
        &N.to_string(),
        "--users",
        "50",
        "--user-pattern",
        "user%04d@example.net",
    ]);
    assert_eq!((s.jobs_ok, s.jobs_failed), (N, 0), "{:?}", s.errors);
    // Every message was acknowledged; some have left, most wait in the queue.
    assert!(sink.wait_for_delivered(N / 4, Duration::from_secs(30)));
    let before_kill = sink.snapshot().messages;
    a.kill();
    assert!(
        before_kill < N,
        "the queue drained before the kill; slow the sink down"
    );
    a.launch();
    assert!(
        sink.wait_for_delivered(N, Duration::from_secs(60)),
        "not everything arrived after the restart: {:?}\n{}",
        sink.snapshot(),
        a.log()
    );
    wait_until("the queue to empty", Duration::from_secs(30), || {
        queue(&a).is_empty()
    });
    let ids = dumped_ids(dump.path());
    let total: usize = ids.values().sum();
    let duplicates = total - ids.len();
    eprintln!(
        "SIGKILL after {before_kill} of {N} delivered: {} unique, {duplicates} duplicated",
        ids.len()
    );
    assert_eq!(ids.len() as u64, N, "every acknowledged message arrives");
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates, more than the {IN_FLIGHT} transactions that can be in flight"
    );
}

#[test]
fn queue_commands_while_running_and_offline() {
    let port = free_port();
    let route = format!("\"example.net\" = \"127.0.0.1:{port}\"");
    // Nothing listens yet, and a failed attempt waits an hour.
    let mut a = TestServer::start(
        &["alice@example.test"],
        &format!(
            "[relay]\nallowed_networks = [\"127.0.0.1/32\"]\nretry_initial_secs = 3600\nconnect_timeout_secs = 2\n[relay.routes]\n{route}\n"
        ),
    );
    let data_dir = a.data_dir();
    let cli = |args: &[&str]| {
        let mut all = vec!["queue"];
        all.extend_from_slice(args);
        all.push("--data-dir");
        let out = run_cli(&all, &data_dir, None);
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let one = send(
        &a,
        "alice@example.test",
        &["bob@example.net"],
        "Subject: one\r\n\r\n1\r\n",
    );
    let two = send(
        &a,
        "alice@example.test",
        &["carol@example.net", "dave@example.net"],
        "Subject: two\r\n\r\n2\r\n",
    );
    wait_until("both deferred", Duration::from_secs(15), || {
        let q = queue(&a);
        q.len() == 2
            && q.iter().all(|m| {
                m["recipients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["state"] == "deferred")
            })
    });
    let (ok, list, _) = cli(&["list"]);
    assert!(ok);
    assert!(list.contains(&one) && list.contains(&two), "{list}");
    assert!(list.contains("deferred  attempts=1"), "{list}");
    assert!(
        list.contains("<carol@example.net>") && list.contains("(451 4.4.1"),
        "{list}"
    );
    assert!(list.ends_with("-- 2 messages, 3 recipients\n"), "{list}");
    // Hold and release.
    assert!(cli(&["hold", &one]).0);
    assert!(cli(&["list"]).1.contains("(held)"));
    assert!(cli(&["release", &one]).0);
    assert!(!cli(&["list"]).1.contains("(held)"));
    // Unknown ids and garbage are refused with exit 1.
    let (ok, _, err) = cli(&["remove", "NOSUCHID"]);
    assert!(!ok && err.contains("no such message"), "{err}");
    assert!(!cli(&["hold", "../etc"]).0);
    // Flush: the destination is up now; without the flush the retry would be an hour away.
    let accepting = sink(port, 0.0, 0.0, None);
    let (ok, out, _) = cli(&["flush"]);
    assert!(ok && out.contains("flush requested"), "{out}");
    assert!(
        accepting.wait_for_delivered(3, Duration::from_secs(20)),
        "{}",
        a.log()
    );
    wait_until("the queue to empty", Duration::from_secs(10), || {
        queue(&a).is_empty()
    });
    drop(accepting);
    // Remove and bounce, on new mail to a destination that is down again.
    let three = send(
        &a,
        "alice@example.test",
        &["erin@example.net"],
        "Subject: three\r\n\r\n3\r\n",
    );
    let four = send(
        &a,
        "alice@example.test",
        &["frank@example.net"],
        "Subject: four\r\n\r\n4\r\n",
    );
    wait_until("two queued", Duration::from_secs(10), || {
        queue(&a).len() == 2
    });
    let (ok, out, _) = cli(&["remove", &three]);
    assert!(ok && out.contains("removed"), "{out}");
    let (ok, out, _) = cli(&["bounce", &four]);
    assert!(
        ok && out.contains("returned to <alice@example.test>"),
        "{out}"
    );
    assert!(
        queue(&a)
            .iter()
            .all(|m| m["id"] != four.as_str() && m["id"] != three.as_str())
    );
    // Offline: the store is opened directly.
    let five = send(
        &a,
        "alice@example.test",
        &["gina@example.net"],
        "Subject: five\r\n\r\n5\r\n",
    );
    a.stop();
    assert!(!a.data_dir().join("control.sock").exists());
    let (ok, list, _) = cli(&["list"]);
    assert!(ok && list.contains(&five), "{list}");
    let (ok, out, _) = cli(&["flush"]);
    assert!(ok && out.contains("not running"), "{out}");
    assert!(cli(&["hold", &five]).0);
    assert!(cli(&["list"]).1.contains("(held)"));
    // The bounce report reached Alice; the removed message did not come back.
    let reports = inbox(&a, "alice@example.test");
    assert_eq!(reports.len(), 1);
    assert!(
        text(&reports[0]).contains("returned by the administrator"),
        "{}",
        text(&reports[0])
    );
}

#[test]
fn dsn_parameters_are_passed_on_and_success_is_reported() {
    let (with_dsn, without_dsn) = (free_port(), free_port());
    let dump = tempfile::tempdir().unwrap();
    let template = format!("{}/msg.", dump.path().display());
    let _sink = PostfixSink::start(with_dsn, &["-d", &template]);
    let _no_dsn = PostfixSink::start(without_dsn, &["-N"]);
    let routes = format!(
        "\"dsn.test\" = \"127.0.0.1:{with_dsn}\"\n\"nodsn.test\" = \"127.0.0.1:{without_dsn}\""
    );
    let mut a = TestServer::start(&["alice@example.test"], &relay_config(&routes, ""));
    let mut c = smtp_session(&a);
    c.expect("MAIL FROM:<alice@example.test> RET=HDRS ENVID=env+2B1", 250);
    c.expect(
        "RCPT TO:<x@dsn.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;X+40dsn.test",
        250,
    );
    c.expect("RCPT TO:<y@nodsn.test> NOTIFY=SUCCESS", 250);
    c.expect("RCPT TO:<alice@example.test> NOTIFY=SUCCESS", 250);
    c.expect("DATA", 354);
    c.send("Subject: tell me\r\n\r\nbody\r\n");
    c.expect(".", 250);
    c.expect("QUIT", 221);
    wait_until("the queue to empty", Duration::from_secs(20), || {
        queue(&a).is_empty()
    });
    // The next hop that offers DSN got the parameters, and reports success itself.
    let files: Vec<_> = std::fs::read_dir(dump.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
    let dumped = text(&std::fs::read(files[0].as_ref().unwrap().path()).unwrap());
    assert!(
        dumped.contains("X-Mail-Args: <alice@example.test> RET=HDRS ENVID=env+2B1"),
        "{dumped}"
    );
    assert!(
        dumped
            .contains("X-Rcpt-Args: <x@dsn.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;X+40dsn.test"),
        "{dumped}"
    );
    a.stop();
    let mail = inbox(&a, "alice@example.test");
    assert_eq!(mail.len(), 3, "the message and two reports");
    let reports: Vec<String> = mail
        .iter()
        .map(|m| text(m))
        .filter(|m| m.contains("Successful Mail Delivery Report"))
        .collect();
    assert_eq!(reports.len(), 2, "{mail:?}");
    let delivered = reports
        .iter()
        .find(|r| r.contains("Action: delivered"))
        .unwrap();
    assert!(
        delivered.contains("Final-Recipient: rfc822; alice@example.test"),
        "{delivered}"
    );
    assert!(
        delivered.contains("Original-Envelope-Id: env+2B1"),
        "{delivered}"
    );
    let relayed = reports
        .iter()
        .find(|r| r.contains("Action: relayed"))
        .unwrap();
    assert!(
        relayed.contains("Final-Recipient: rfc822; y@nodsn.test"),
        "{relayed}"
    );
    assert!(!relayed.contains("x@dsn.test"), "{relayed}");
    // Success reports carry the header only.
    assert!(
        relayed.contains("Content-Type: text/rfc822-headers"),
        "{relayed}"
    );
}

#[test]
fn delayed_mail_warns_the_sender_once() {
    let port = free_port();
    let route = format!("\"example.net\" = \"127.0.0.1:{port}\"");
    let mut a = TestServer::start(
        &["alice@example.test"],
        &relay_config(
            &route,
            "delay_warning_secs = 2\nqueue_lifetime_secs = 600\n",
        ),
    );
    let id = send(
        &a,
        "alice@example.test",
        &["bob@example.net"],
        "Subject: slow\r\n\r\nx\r\n",
    );
    wait_until("the delay warning", Duration::from_secs(20), || {
        a.log()
            .contains(&format!("{id}: sender delay notification"))
    });
    // Still queued, a few more attempts later, and warned only once.
    let attempts_logged = || {
        a.log()
            .matches(&format!("{id}: to=<bob@example.net>"))
            .count()
    };
    let warned_at = attempts_logged();
    wait_until("two more attempts", Duration::from_secs(20), || {
        attempts_logged() >= warned_at + 2
    });
    let q = queue(&a);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["recipients"][0]["state"], "deferred");
    assert!(
        q[0]["recipients"][0]["attempts"].as_u64().unwrap() >= 3,
        "{q:?}"
    );
    assert_eq!(
        a.log().matches("sender delay notification").count(),
        1,
        "{}",
        a.log()
    );
    a.stop();
    let mail = inbox(&a, "alice@example.test");
    assert_eq!(mail.len(), 1);
    let r = text(&mail[0]);
    assert!(
        r.contains("Subject: Delayed Mail (still being retried)"),
        "{r}"
    );
    assert!(r.contains("Action: delayed\r\nStatus: 4.4.1"), "{r}");
    assert!(r.contains("Will-Retry-Until: "), "{r}");
}

#[test]
fn smarthost_with_auth_over_starttls() {
    // B is a relay service here: its relay account sends on behalf of A's users.
    let mut b = TestServer::start(
        &["relay@example.net", "bob@example.net"],
        "[auth]\nenforce_sender = false\n",
    );
    let smarthost = format!(
        "smarthost = {{ host = \"127.0.0.1\", port = {}, username = \"relay@example.net\", password = \"{PASSWORD}\" }}\n",
        b.addr("submission").port()
    );
    let a = TestServer::start(
        &["alice@example.test"],
        &format!("[relay]\nallowed_networks = [\"127.0.0.1/32\"]\n{FAST_QUEUE}{smarthost}"),
    );
    let id = send(
        &a,
        "alice@example.test",
        &["bob@example.net"],
        "Subject: via smarthost\r\n\r\nhi\r\n",
    );
    wait_until("the queue to empty", Duration::from_secs(20), || {
        queue(&a).is_empty()
    });
    a.wait_log(&format!(
        "{id}: to=<bob@example.net>, relay=127.0.0.1[127.0.0.1]:{}",
        b.addr("submission").port()
    ));
    b.wait_log("sasl_username=relay@example.net");
    b.stop();
    let got = inbox(&b, "bob@example.net");
    assert_eq!(got.len(), 1);
    assert!(
        text(&got[0]).contains("with ESMTPSA id"),
        "TLS and AUTH: {}",
        text(&got[0])
    );
}
