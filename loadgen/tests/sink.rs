//! `loadgen sink` driven as a process, the way relay benchmarks and scripts use it: read the
//! `listening ADDR` line, talk SMTP to it (Python's smtplib, swaks, `loadgen smtp`, raw
//! pipelined bytes), and check its summary, `--stats-file` and `--dump-dir` against what was sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// A `loadgen sink` child process; killed on drop if still running.
struct SinkProcess {
    child: Child,
    addr: SocketAddr,
    stdout: mpsc::Receiver<String>,
}

impl SinkProcess {
    fn start(args: &[&str]) -> SinkProcess {
        let mut child = Command::new(LOADGEN)
            .args(["sink", "--listen", "127.0.0.1:0", "--quiet", "--no-pin"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn loadgen sink");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the sink prints its address first");
        let addr = first
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("first line {first:?}"))
            .parse()
            .expect("address");
        SinkProcess {
            child,
            addr,
            stdout: rx,
        }
    }

    /// Waits (bounded) for the sink to exit; returns its status and the rest of its stdout.
    fn wait(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the sink did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            out.push_str(&line);
            out.push('\n');
        }
        (status, out)
    }

    fn terminate(&mut self) -> (ExitStatus, String) {
        // SAFETY: kill(2) on the pid of our own child.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(r, 0);
        self.wait(Duration::from_secs(10))
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn counter(v: &Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {v}"))
}

/// A raw SMTP connection for byte-exact pipelining.
struct Raw {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut raw = Raw {
            stream,
            pending: Vec::new(),
        };
        assert!(raw.lines(1)[0].starts_with("220 "));
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads exactly `n` reply lines.
    fn lines(&mut self, n: usize) -> Vec<String> {
        let mut lines = Vec::with_capacity(n);
        let mut buf = [0u8; 65536];
        while lines.len() < n {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                lines.push(String::from_utf8_lossy(&line).trim_end().to_string());
                continue;
            }
            let k = self.stream.read(&mut buf).expect("reply");
            assert!(k > 0, "connection closed after {lines:?}");
            self.pending.extend_from_slice(&buf[..k]);
        }
        lines
    }

    fn ehlo(&mut self) -> Vec<String> {
        self.send(b"EHLO raw.test\r\n");
        let mut all = Vec::new();
        loop {
            let line = self.lines(1).remove(0);
            let last = line.as_bytes().get(3) == Some(&b' ');
            all.push(line);
            if last {
                return all;
            }
        }
    }
}

/// Messages with the octets that matter: dot lines, lone dots, 8-bit text, varied lengths.
fn messages(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut m = format!(
                "From: a@example.test\r\nTo: b@example.test\r\nSubject: sink test {i}\r\n\r\n"
            )
            .into_bytes();
            for line in 0..(i * 7 % 40 + 1) {
                match (i + line) % 6 {
                    0 => m.extend_from_slice(b".leading dot\r\n"),
                    1 => m.extend_from_slice(b".\r\n"),
                    2 => m.extend_from_slice(b"..two dots\r\n"),
                    3 => m.extend_from_slice("caf\u{e9} \u{2014} 8-bit\r\n".as_bytes()),
                    _ => {
                        m.extend(std::iter::repeat_n(b'x', line * 13 % 200));
                        m.extend_from_slice(b"\r\n");
                    }
                }
            }
            m
        })
        .collect()
}

fn dumped(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

const SMTPLIB_SENDER: &str = r#"
import smtplib, sys
host, port, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
with smtplib.SMTP(host, port, timeout=20) as s:
    s.ehlo("python.test")
    assert s.has_extn("pipelining") and s.has_extn("8bitmime") and s.has_extn("chunking")
    for f in files:
        data = open(f, "rb").read()
        refused = s.sendmail("a@example.test", ["b@example.test", "c@example.test"], data,
                            mail_options=["BODY=8BITMIME"])
        assert refused == {}, refused
"#;

#[test]
fn smtplib_messages_are_counted_and_dumped_byte_for_byte() {
    const N: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump");
    let stats = dir.path().join("stats.json");
    let mut sink = SinkProcess::start(&[
        "--cores",
        "2",
        "--dump-dir",
        dump.to_str().unwrap(),
        "--stats-file",
        stats.to_str().unwrap(),
        "--expect",
        &(2 * N).to_string(),
        "--json",
    ]);
    let msgs = messages(N);
    let mut files = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let f = dir.path().join(format!("msg{i}"));
        std::fs::write(&f, m).unwrap();
        files.push(f.to_str().unwrap().to_string());
    }
    let status = Command::new("python3")
        .args([
            "-c",
            SMTPLIB_SENDER,
            "127.0.0.1",
            &sink.addr.port().to_string(),
        ])
        .args(&files)
        .status()
        .expect("python3");
    assert!(status.success(), "smtplib sender failed");

    let (status, out) = sink.wait(Duration::from_secs(20));
    assert!(status.success(), "{status:?}: {out}");
    let summary = json(&out);
    assert_eq!(summary["stopped_by"], "expect");
    assert_eq!(counter(&summary, "messages"), N as u64);
    assert_eq!(counter(&summary, "recipients_accepted"), 2 * N as u64);
    assert_eq!(counter(&summary, "recipients_delivered"), 2 * N as u64);
    assert_eq!(counter(&summary, "recipients_tempfailed"), 0);
    assert_eq!(counter(&summary, "connections"), 1);
    assert_eq!(counter(&summary, "command_errors"), 0);
    let total: usize = msgs.iter().map(Vec::len).sum();
    assert_eq!(counter(&summary, "bytes"), total as u64);
    assert!(
        summary["first_connection_unix_ms"].as_u64() <= summary["last_message_unix_ms"].as_u64()
    );

    // one connection, so the dump order is the sending order; dot-stuffing is undone
    let got = dumped(&dump);
    assert_eq!(got.len(), N);
    for (i, (got, sent)) in got.iter().zip(&msgs).enumerate() {
        assert!(got == sent, "message {i} differs");
    }

    let stats = json(&std::fs::read_to_string(&stats).unwrap());
    for name in [
        "messages",
        "recipients_delivered",
        "bytes",
        "connections",
        "dumped",
        "first_connection_unix_ms",
        "last_message_unix_ms",
    ] {
        assert_eq!(stats[name], summary[name], "{name}");
    }
}

#[test]
fn pipelined_bdat_data_and_garbage_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink =
        SinkProcess::start(&["--cores", "1", "--dump-dir", dir.path().to_str().unwrap()]);
    let mut c = Raw::connect(sink.addr);
    let caps = c.ehlo();
    for cap in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "DSN",
    ] {
        assert!(
            caps.iter().any(|l| &l[4..] == cap),
            "{cap} missing: {caps:?}"
        );
    }
    assert!(!caps.iter().any(|l| l.contains("STARTTLS")), "no --tls");

    // A chunk holds raw octets: an end-of-data marker and commands inside it are content.
    let chunk1 = b"A\r\n.\r\nQUIT\r\n";
    let chunk2 = b"\r\n..z";
    let mut batch = b"MAIL FROM:<a@x.test> BODY=BINARYMIME\r\nRCPT TO:<b@x.test>\r\n".to_vec();
    batch.extend_from_slice(format!("BDAT {}\r\n", chunk1.len()).as_bytes());
    batch.extend_from_slice(chunk1);
    batch.extend_from_slice(format!("BDAT {} LAST\r\n", chunk2.len()).as_bytes());
    batch.extend_from_slice(chunk2);
    batch.extend_from_slice(
        b"GARBAGE\r\nMAIL FROM:broken\r\nNOOP\r\nMAIL FROM:<a@x.test> SIZE=20\r\n\
RCPT TO:<c@x.test>\r\nRCPT TO:<d@x.test>\r\nDATA\r\n",
    );
    c.send(&batch);
    assert_eq!(
        c.lines(10),
        [
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.0.0 12 octets received",
            "250 2.0.0 Ok: queued",
            "500 5.5.1 Command unrecognized",
            "501 5.1.7 Bad sender address syntax",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
        ]
    );
    assert_eq!(c.lines(1), ["354 End data with <CR><LF>.<CR><LF>"]);
    c.send(b"..x\r\n\n.\nnot the end\r\n.\r\nRSET\r\nDATA\r\nQUIT\r\n");
    assert_eq!(
        c.lines(4),
        [
            "250 2.0.0 Ok: queued",
            "250 2.0.0 Ok",
            "503 5.5.1 Bad sequence of commands: MAIL first",
            "221 2.0.0 Bye"
        ]
    );

    let got = dumped(dir.path());
    let mut first = chunk1.to_vec();
    first.extend_from_slice(chunk2);
    assert_eq!(got, [first, b".x\r\n\n.\nnot the end\r\n".to_vec()]);

    let (status, out) = sink.terminate();
    assert!(status.success(), "{status:?}");
    assert!(out.contains("stopped by signal"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(["command", "errors", "2"])),
        "{out}"
    );
}

#[test]
fn delay_is_paid_once_per_batch_of_pipelined_commands() {
    let mut sink = SinkProcess::start(&["--cores", "1", "--delay-ms", "300"]);
    let mut c = Raw::connect(sink.addr);
    let t0 = Instant::now();
    c.ehlo();
    let one = t0.elapsed();
    assert!(
        one >= Duration::from_millis(300),
        "EHLO answered in {one:?}"
    );
    let t1 = Instant::now();
    c.send(&b"NOOP\r\n".repeat(10));
    let replies = c.lines(10);
    let ten = t1.elapsed();
    assert!(replies.iter().all(|l| l == "250 2.0.0 Ok"), "{replies:?}");
    assert!(ten >= Duration::from_millis(300), "{ten:?}");
    // ten commands in one read: one delay, not ten (3 s)
    assert!(ten < Duration::from_millis(2000), "{ten:?}");
    drop(c);
    sink.terminate();
}

/// One transaction of `n` pipelined RCPTs on a fresh single-core sink; returns the reply codes
/// and the sink's summary.
fn recipient_codes(seed: &str, n: usize, extra: &[&str]) -> (Vec<String>, Value) {
    let mut args = vec![
        "--cores",
        "1",
        "--seed",
        seed,
        "--tempfail-pct",
        "20",
        "--permfail-pct",
        "10",
        "--json",
    ];
    args.extend_from_slice(extra);
    let mut sink = SinkProcess::start(&args);
    let mut c = Raw::connect(sink.addr);
    c.ehlo();
    c.send(b"MAIL FROM:<a@x.test>\r\n");
    assert_eq!(c.lines(1), ["250 2.1.0 Ok"]);
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend_from_slice(format!("RCPT TO:<user{i}@x.test>\r\n").as_bytes());
    }
    c.send(&batch);
    let lines = c.lines(n);
    for l in &lines {
        assert!(
            [
                "250 2.1.5 Ok",
                "451 4.3.0 sink tempfail",
                "550 5.1.1 sink permfail"
            ]
            .contains(&l.as_str()),
            "{l}"
        );
    }
    let accepted = lines.iter().filter(|l| l.starts_with("250")).count();
    c.send(b"DATA\r\n");
    assert_eq!(c.lines(1)[0], "354 End data with <CR><LF>.<CR><LF>");
    c.send(b"hi\r\n.\r\nQUIT\r\n");
    assert_eq!(c.lines(2), ["250 2.0.0 Ok: queued", "221 2.0.0 Bye"]);
    let (status, out) = sink.terminate();
    assert!(status.success());
    let summary = json(&out);
    assert_eq!(summary["stopped_by"], "signal");
    assert_eq!(counter(&summary, "recipients_delivered"), accepted as u64);
    (lines.iter().map(|l| l[..3].to_string()).collect(), summary)
}

#[test]
fn tempfail_and_permfail_shares_follow_the_seed() {
    let (codes, summary) = recipient_codes("42", 1000, &[]);
    let count = |c: &str| codes.iter().filter(|x| *x == c).count() as u64;
    let (ok, temp, perm) = (count("250"), count("451"), count("550"));
    assert_eq!(ok + temp + perm, 1000);
    // binomial standard deviations are about 13 and 9.5: ±5 of them
    assert!((135..=265).contains(&temp), "tempfailed {temp}");
    assert!((52..=148).contains(&perm), "permfailed {perm}");
    assert_eq!(counter(&summary, "recipients_accepted"), ok);
    assert_eq!(counter(&summary, "recipients_tempfailed"), temp);
    assert_eq!(counter(&summary, "recipients_permfailed"), perm);
    assert_eq!(counter(&summary, "messages"), 1);

    // the same seed gives the same answers, whatever the driver; another seed does not
    let (again, _) = recipient_codes("42", 1000, &["--legacy-driver"]);
    assert_eq!(codes, again);
    let (other, _) = recipient_codes("43", 1000, &[]);
    assert_ne!(codes, other);
}

#[test]
fn loadgen_smtp_against_the_sink_until_expect() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let client_json = dir.path().join("client.json");
    let mut sink = SinkProcess::start(&[
        "--cores",
        "1",
        "--expect",
        "100",
        "--stats-file",
        stats.to_str().unwrap(),
        "--json",
    ]);
    let target = sink.addr.to_string();
    let status = Command::new(LOADGEN)
        .args(["smtp", "--target", &target, "--count", "50", "--rcpts", "2"])
        .args(["--cores", "1", "--connections", "4", "--msgs-per-conn", "5"])
        .args(["--size", "4096", "--quiet", "--no-pin", "--json"])
        .arg(&client_json)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let client = json(&std::fs::read_to_string(&client_json).unwrap());
    assert_eq!(client["jobs_ok"], 50, "{client}");

    let (status, out) = sink.wait(Duration::from_secs(20));
    assert!(
        status.success(),
        "--expect reached means exit status 0: {out}"
    );
    let summary = json(&out);
    assert_eq!(summary["stopped_by"], "expect");
    assert_eq!(counter(&summary, "messages"), 50);
    assert_eq!(counter(&summary, "recipients_delivered"), 100);
    assert_eq!(counter(&summary, "bytes"), 50 * 4096);
    let stats = json(&std::fs::read_to_string(&stats).unwrap());
    assert_eq!(counter(&stats, "messages"), 50);
    assert_eq!(counter(&stats, "recipients_delivered"), 100);
    assert_eq!(counter(&stats, "bytes"), 50 * 4096);
    // 5 messages per connection, fewer on a connection whose task ran out of jobs
    assert!(
        (10..=14).contains(&counter(&stats, "connections")),
        "{stats}"
    );
    assert_eq!(counter(&stats, "connections_open"), 0);
}

#[test]
fn tempfailed_recipients_show_up_on_both_sides_and_a_missed_expect_fails() {
    let mut sink = SinkProcess::start(&[
        "--cores",
        "1",
        "--tempfail-pct",
        "50",
        "--seed",
        "5",
        "--expect",
        "1000",
        "--duration",
        "3",
        "--json",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let client_json = dir.path().join("client.json");
    let target = sink.addr.to_string();
    Command::new(LOADGEN)
        .args([
            "smtp", "--target", &target, "--count", "100", "--rcpts", "1",
        ])
        .args(["--cores", "1", "--connections", "2", "--quiet", "--no-pin"])
        .arg("--json")
        .arg(&client_json)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let client = json(&std::fs::read_to_string(&client_json).unwrap());
    let (status, out) = sink.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "--expect not reached: {out}");
    let summary = json(&out);
    assert_eq!(summary["stopped_by"], "duration");
    let (ok, failed) = (
        client["jobs_ok"].as_u64().unwrap(),
        client["jobs_failed"].as_u64().unwrap(),
    );
    assert_eq!(ok + failed, 100);
    assert!((25..=75).contains(&failed), "{client}");
    assert_eq!(counter(&summary, "messages"), ok);
    assert_eq!(counter(&summary, "recipients_tempfailed"), failed);
    assert_eq!(
        counter(&summary, "messages_rejected"),
        failed,
        "DATA gets 554"
    );
}

#[test]
fn swaks_and_loadgen_starttls_against_tls_sink() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SinkProcess::start(&[
        "--cores",
        "1",
        "--tls",
        "--dump-dir",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    let port = sink.addr.port().to_string();
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port, "-tls"])
        .args(["--to", "b@example.test", "--from", "a@example.test"])
        .args([
            "--header",
            "Subject: over TLS",
            "--body",
            "hello through STARTTLS",
        ])
        .args(["--timeout", "20"])
        .output()
        .expect("swaks");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    assert!(transcript.contains("250-STARTTLS"), "{transcript}");
    assert!(
        transcript.contains("220 2.0.0 Ready to start TLS"),
        "{transcript}"
    );
    // after the handshake swaks EHLOs again and STARTTLS is no longer offered
    assert!(transcript.contains("250 2.0.0 Ok: queued"), "{transcript}");

    let status = Command::new(LOADGEN)
        .args(["smtp", "--target", &sink.addr.to_string(), "--starttls"])
        .args([
            "--count",
            "5",
            "--cores",
            "1",
            "--connections",
            "1",
            "--quiet",
            "--no-pin",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let (status, out) = sink.terminate();
    assert!(status.success());
    let summary = json(&out);
    assert_eq!(counter(&summary, "tls_sessions"), 6);
    assert_eq!(counter(&summary, "messages"), 6);
    let got = dumped(dir.path());
    assert_eq!(got.len(), 6);
    let first = String::from_utf8_lossy(&got[0]);
    assert!(first.contains("Subject: over TLS\r\n"), "{first}");
    assert!(first.contains("hello through STARTTLS"), "{first}");
}

#[test]
fn a_port_in_use_is_refused() {
    let mut first = SinkProcess::start(&["--cores", "1"]);
    let out = Command::new(LOADGEN)
        .args([
            "sink",
            "--listen",
            &first.addr.to_string(),
            "--cores",
            "2",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
    first.terminate();
}

/// The in-process handle (what surel's relay tests can use) driven by loadgen's own client:
/// the recipients it reports refused are exactly the ones the sink counted as perm-failed.
#[test]
fn in_process_sink_with_loadgens_client() {
    use loadgen::client::smtp::{Security, SmtpClient};
    use loadgen::sink::{Sink, SinkConfig};

    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(SinkConfig {
        // one core, one connection: the seed fixes every answer (none of these 20 messages
        // has all five recipients refused, which loadgen's client would report as an error)
        cores: 1,
        permfail_pct: 30.0,
        seed: 11,
        dump_dir: Some(dir.path().to_path_buf()),
        ..SinkConfig::default()
    })
    .unwrap();
    let addr = sink.addr();
    assert_ne!(addr.port(), 0);
    let msgs = messages(20);
    let sent = msgs.clone();
    let (accepted, refused) = std::thread::spawn(move || {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut c = SmtpClient::connect(
                addr,
                Duration::from_secs(20),
                Security::None,
                None,
                "client.test",
                None,
            )
            .await
            .unwrap();
            assert!(c.caps.pipelining);
            let rcpts: Vec<String> = (0..5).map(|i| format!("r{i}@x.test")).collect();
            let (mut accepted, mut refused) = (0u64, 0u64);
            for (i, m) in sent.iter().enumerate() {
                match c
                    .send_message("a@x.test", &rcpts, m, true, i + 1 == sent.len())
                    .await
                {
                    Ok(s) => {
                        accepted += s.accepted.len() as u64;
                        assert!(s.rejected.iter().all(|&code| code == 550));
                        refused += s.rejected.len() as u64;
                    }
                    Err(e) => panic!("message {i}: {e}"),
                }
            }
            (accepted, refused)
        })
    })
    .join()
    .unwrap();
    assert_eq!(accepted + refused, 100);
    assert!(sink.wait_for_delivered(accepted, Duration::from_secs(10)));
    let counters = sink.stop();
    assert_eq!(counters.recipients_delivered, accepted);
    assert_eq!(counters.recipients_permfailed, refused);
    assert_eq!(counters.messages, 20, "{counters:?}");
    assert_eq!(dumped(dir.path()), msgs);
}
