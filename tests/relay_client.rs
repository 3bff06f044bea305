//! The outbound SMTP client against real servers: Postfix's `smtp-sink` (PIPELINING on and off,
//! EHLO refused, 4xx/5xx/421 on demand, every received message dumped to a file) and surel
//! itself (STARTTLS, AUTH, CHUNKING, certificate verification, the stored message). A few
//! failures no real server produces on demand (a silent peer, a broken handshake, injected
//! clear text) come from small scripted servers written here.
//!
//! The client runs inside a monoio runtime, as it does on a core: the epoll driver here, and
//! io_uring for the STARTTLS delivery.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{PASSWORD, TestServer, block_on, inbox};
use surel::relay::{
    ClientConfig, ClientError, ClientTimeouts, ClientTlsConfigs, OutboundMessage,
    OutboundRecipient, SmtpClient, Stage, TlsPolicy, client_configs,
};

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

fn tls_configs() -> ClientTlsConfigs {
    static CONFIGS: OnceLock<ClientTlsConfigs> = OnceLock::new();
    CONFIGS
        .get_or_init(|| client_configs(None).expect("client TLS configs"))
        .clone()
}

fn config(tls: TlsPolicy) -> ClientConfig {
    ClientConfig {
        helo_name: "client.test".into(),
        tls,
        tls_configs: tls_configs(),
        credentials: None,
        timeouts: ClientTimeouts {
            connect: Duration::from_secs(5),
            greeting: Duration::from_secs(10),
            command: Duration::from_secs(10),
            data_block: Duration::from_secs(10),
            data_done: Duration::from_secs(20),
        },
    }
}

fn rcpt(address: &str) -> OutboundRecipient<'_> {
    OutboundRecipient {
        address,
        notify: None,
        orcpt: None,
    }
}

fn message<'a>(
    from: &'a str,
    recipients: &'a [OutboundRecipient<'a>],
    body: &[u8],
) -> OutboundMessage<'a> {
    OutboundMessage {
        mail_from: from,
        recipients,
        ret: None,
        envid: None,
        body: Bytes::copy_from_slice(body),
        needs_smtputf8: false,
        eight_bit: false,
    }
}

/// Runs `f` on monoio's io_uring driver, and checks that it really is io_uring.
fn block_on_uring<F: std::future::Future>(f: F) -> F::Output {
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    assert!(
        matches!(runtime, monoio::FusionRuntime::Uring(_)),
        "io_uring is not available"
    );
    runtime.block_on(async {
        assert!(!monoio::utils::is_legacy());
        f.await
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// smtp-sink

/// A running `smtp-sink` that dumps each transaction to a file in its own directory.
struct Sink {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// One dumped transaction (see `man smtp-sink`, DUMP FILE FORMAT).
#[derive(Debug)]
struct Dump {
    proto: String,
    helo: Option<String>,
    mail_args: String,
    rcpt_args: Vec<String>,
    /// The message as received, unstuffed, lines ending in LF.
    message: Vec<u8>,
}

impl Sink {
    fn start(options: &[&str]) -> Sink {
        assert!(
            Path::new(SMTP_SINK).exists(),
            "{SMTP_SINK} is missing: install Debian's postfix package"
        );
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("sink.log")).unwrap();
        let mut cmd = Command::new(SMTP_SINK);
        // smtp-sink refuses to run as root without -u; as root it may keep root's rights.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        cmd.args(options)
            .arg("-d")
            .arg(dir.path().join("msg."))
            .arg(addr.to_string())
            .arg("16")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("spawn smtp-sink");
        let sink = Sink { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not start: {}",
                sink.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sink
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default()
    }

    fn dump_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("msg."))
            .collect()
    }

    /// The completed transactions (a dump that holds a message); waits up to 5 s for `n`.
    fn dumps(&self, n: usize) -> Vec<Dump> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let dumps: Vec<Dump> = self
                .dump_files()
                .iter()
                .filter_map(|p| parse_dump(&std::fs::read(p).unwrap()))
                .collect();
            if dumps.len() >= n || Instant::now() > deadline {
                assert_eq!(dumps.len(), n, "{dumps:?}\n{}", self.log());
                return dumps;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_dump(raw: &[u8]) -> Option<Dump> {
    let received = raw.windows(11).position(|w| w == b"\nReceived: ")?;
    let head = String::from_utf8_lossy(&raw[..received]).into_owned();
    // The Received header is three lines: "Received: ..." and two continuations.
    let mut rest = &raw[received + 1..];
    let mut lines = 0;
    while lines < 3 {
        let lf = rest.iter().position(|&b| b == b'\n')?;
        rest = &rest[lf + 1..];
        lines += 1;
    }
    // The dump ends with an empty line of its own.
    let message = rest.strip_suffix(b"\n")?.to_vec();
    let field = |name: &str| {
        head.lines()
            .filter_map(|l| l.strip_prefix(name).map(str::to_string))
            .collect::<Vec<_>>()
    };
    Some(Dump {
        proto: field("X-Client-Proto: ").pop()?,
        helo: field("X-Helo-Args: ").pop(),
        mail_args: field("X-Mail-Args: ").pop()?,
        rcpt_args: field("X-Rcpt-Args: "),
        message,
    })
}

/// What smtp-sink writes for a body we sent: bare LF made CRLF and a final line end added by
/// the client, then every CRLF written as LF by the dump.
fn as_dumped(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in body.iter().enumerate() {
        if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A recording TCP proxy: shows what the client wrote, and in which writes.

struct Proxy {
    addr: SocketAddr,
    /// Each read from the client side, in order.
    chunks: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Proxy {
    /// Forwards one connection to `upstream`.
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let chunks = Arc::new(Mutex::new(Vec::new()));
        let record = chunks.clone();
        std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            let client = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => return,
                }
            };
            client.set_nonblocking(false).unwrap();
            let server = TcpStream::connect(upstream).unwrap();
            for s in [&client, &server] {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.set_nodelay(true).unwrap();
            }
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let up = std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    record.lock().unwrap().push(buf[..n].to_vec());
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            let _ = std::io::copy(&mut s_read, &mut c_write);
            let _ = c_write.shutdown(std::net::Shutdown::Write);
            let _ = up.join();
        });
        Proxy { addr, chunks }
    }

    fn chunks(&self) -> Vec<Vec<u8>> {
        self.chunks.lock().unwrap().clone()
    }

    fn everything(&self) -> Vec<u8> {
        self.chunks().concat()
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted servers, one connection each, for failures real servers do not produce on demand.

trait Wire: Read + Write + Send {}
impl<T: Read + Write + Send> Wire for T {}

struct Script {
    reader: BufReader<Box<dyn Wire>>,
    /// The TCP stream under `reader`, for a STARTTLS upgrade.
    tcp: TcpStream,
}

impl Script {
    fn send(&mut self, text: &str) {
        let stream = self.reader.get_mut();
        stream.write_all(text.as_bytes()).unwrap();
        stream.flush().unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// Reads the DATA content up to the end marker (exclusive).
    fn content(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        loop {
            let mut line = Vec::new();
            if self.reader.read_until(b'\n', &mut line).unwrap() == 0 || line == b".\r\n" {
                return data;
            }
            data.extend_from_slice(&line);
        }
    }

    /// Server side of STARTTLS, with a fresh self-signed certificate for "localhost".
    fn start_tls(&mut self) {
        assert!(
            self.reader.buffer().is_empty(),
            "data pipelined after STARTTLS"
        );
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(pair.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pair.cert.der().clone()], key)
        .unwrap();
        let connection = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let tls = rustls::StreamOwned::new(connection, self.tcp.try_clone().unwrap());
        self.reader = BufReader::new(Box::new(tls));
    }
}

/// Serves `connections` connections in turn with `script` (given the connection's index);
/// the join handle returns what the scripts returned. Each wait is bounded: a connection that
/// never comes, or a client that stops talking, fails the script (and so the test's join).
fn scripted<T: Send + 'static>(
    connections: usize,
    script: impl Fn(usize, &mut Script) -> T + Send + 'static,
) -> (SocketAddr, std::thread::JoinHandle<Vec<T>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        (0..connections)
            .map(|i| {
                let deadline = Instant::now() + Duration::from_secs(20);
                let tcp = loop {
                    match listener.accept() {
                        Ok((tcp, _)) => break tcp,
                        Err(_) => {
                            assert!(Instant::now() < deadline, "connection {i} never came");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                };
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut s = Script {
                    reader: BufReader::new(Box::new(tcp.try_clone().unwrap())),
                    tcp,
                };
                script(i, &mut s)
            })
            .collect()
    });
    (addr, handle)
}

// ---------------------------------------------------------------------------------------------
// Against smtp-sink

#[test]
fn pipelined_transaction_with_dot_stuffing_and_dsn() {
    let sink = Sink::start(&[]);
    let proxy = Proxy::start(sink.addr);
    let recipients = [
        OutboundRecipient {
            address: "bob@example.org",
            notify: Some("SUCCESS,FAILURE"),
            orcpt: Some("rfc822;bob@example.org"),
        },
        rcpt("carol@example.org"),
    ];
    // Lines starting with dots, a lone dot, bare LFs (one hiding "\n.\n"), 8-bit text and no
    // final line end.
    let body: &[u8] = b"Subject: dots\r\n\r\n.leading\r\n..two\r\n.\r\nmid . dot\r\n\
                        bare\nlf\n.\nafter \xc3\xa9t\xc3\xa9\r\n.last";
    let mut msg = message("alice@example.test", &recipients, body);
    msg.ret = Some("HDRS");
    msg.envid = Some("Q1+2Bx");
    msg.eight_bit = true;
    let result = block_on(async {
        let mut client = SmtpClient::connect(proxy.addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap();
        let caps = client.capabilities().clone();
        assert!(
            caps.pipelining && caps.dsn && caps.eight_bit_mime,
            "{caps:?}"
        );
        assert!(!caps.chunking && !caps.starttls && !caps.smtputf8);
        assert_eq!(client.tls_version(), None);
        let result = client.send(&msg).await.unwrap();
        assert!(client.is_reusable());
        client.quit().await;
        result
    });
    assert_eq!(result.mail.code, 250);
    assert_eq!(result.mail.enhanced, Some((2, 1, 0)));
    assert!(
        result
            .recipients
            .iter()
            .all(|r| r.as_ref().unwrap().code == 250)
    );
    assert_eq!(result.data.as_ref().unwrap().code, 250);
    assert!(result.delivered(0) && result.delivered(1));

    let dumps = sink.dumps(1);
    let dump = &dumps[0];
    assert_eq!(dump.proto, "ESMTP");
    assert_eq!(dump.helo.as_deref(), Some("client.test"));
    assert_eq!(
        dump.mail_args,
        "<alice@example.test> BODY=8BITMIME RET=HDRS ENVID=Q1+2Bx"
    );
    assert_eq!(
        dump.rcpt_args,
        vec![
            "<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org",
            "<carol@example.org>"
        ]
    );
    assert_eq!(
        String::from_utf8_lossy(&dump.message),
        String::from_utf8_lossy(&as_dumped(body))
    );
    // RFC 2920: MAIL, both RCPTs and DATA left in one write.
    let chunks = proxy.chunks();
    assert!(
        chunks.iter().any(|c| c.starts_with(b"MAIL FROM:")
            && c.ends_with(b"DATA\r\n")
            && contains(c, "RCPT TO:<carol@example.org>")),
        "{:?}",
        chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
    );
    // The content on the wire: stuffed, CRLF only, then the end marker.
    let wire = proxy.everything();
    assert!(contains(
        &wire,
        "\r\n..leading\r\n...two\r\n..\r\nmid . dot\r\nbare\r\nlf\r\n..\r\nafter "
    ));
    assert!(wire.ends_with(b"\r\n..last\r\n.\r\nQUIT\r\n"));
}

#[test]
fn lock_step_without_pipelining_and_no_dsn_parameters() {
    let sink = Sink::start(&["-p", "-N"]);
    let proxy = Proxy::start(sink.addr);
    let recipients = [
        OutboundRecipient {
            address: "bob@example.org",
            notify: Some("NEVER"),
            orcpt: None,
        },
        rcpt("carol@example.org"),
    ];
    let body = b"Subject: plain\r\n\r\nno dots here\r\n";
    let mut msg = message("", &recipients, body);
    msg.ret = Some("FULL");
    let result = block_on(async {
        let mut client = SmtpClient::connect(proxy.addr, "localhost", &config(TlsPolicy::Disabled))
            .await
            .unwrap();
        assert!(!client.capabilities().pipelining);
        assert!(!client.capabilities().dsn);
        let result = client.send(&msg).await.unwrap();
        client.quit().await;
        result
    });
    assert!(result.delivered(0) && result.delivered(1));
    let dump = &sink.dumps(1)[0];
    assert_eq!(dump.mail_args, "<>");
    assert_eq!(
        dump.rcpt_args,
        vec!["<bob@example.org>", "<carol@example.org>"]
    );
    assert_eq!(dump.message, as_dumped(body));
    // One command per write, each after the previous reply; the body needed no change.
    let chunks = proxy.chunks();
    let commands: Vec<String> = chunks
        .iter()
        .take(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(
        commands,
        vec![
            "EHLO client.test\r\n",
            "MAIL FROM:<>\r\n",
            "RCPT TO:<bob@example.org>\r\n",
            "RCPT TO:<carol@example.org>\r\n",
            "DATA\r\n"
        ]
    );
    let mut after_data = body.to_vec();
    after_data.extend_from_slice(b".\r\nQUIT\r\n");
    assert_eq!(chunks[5..].concat(), after_data);
}

#[test]
fn temporary_failure_at_data_then_reuse() {
    // -r DATA: every DATA gets 450 (and smtp-sink stops offering PIPELINING).
    let sink = Sink::start(&["-r", "DATA"]);
    let recipients = [rcpt("bob@example.org")];
    let msg = message(
        "alice@example.test",
        &recipients,
        b"Subject: x\r\n\r\ny\r\n",
    );
    block_on(async {
        let mut client = SmtpClient::connect(sink.addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap();
        for _ in 0..2 {
            let result = client.send(&msg).await.unwrap();
            assert_eq!(result.mail.code, 250);
            assert_eq!(result.recipients[0].as_ref().unwrap().code, 250);
            let data = result.data.as_ref().expect("DATA's refusal is reported");
            assert!(data.is_transient(), "{data:?}");
            assert_eq!(data.text(), "450 4.3.0 Error: command failed");
            assert!(!result.delivered(0));
            // RSET made the connection ready for the next transaction.
            assert!(client.is_reusable());
        }
        client.quit().await;
    });
    sink.dumps(0);
}

#[test]
fn every_recipient_refused_sends_no_content() {
    let sink = Sink::start(&["-f", "RCPT"]);
    let recipients = [rcpt("bob@example.org"), rcpt("carol@example.org")];
    let msg = message(
        "alice@example.test",
        &recipients,
        b"Subject: x\r\n\r\ny\r\n",
    );
    block_on(async {
        let mut client = SmtpClient::connect(sink.addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap();
        let result = client.send(&msg).await.unwrap();
        assert_eq!(result.mail.code, 250);
        for r in &result.recipients {
            let r = r.as_ref().unwrap();
            assert!(r.is_permanent(), "{r:?}");
            assert_eq!(r.enhanced, Some((5, 3, 0)));
        }
        assert_eq!(result.data, None);
        assert!(client.is_reusable());
        client.quit().await;
    });
    sink.dumps(0);
}

#[test]
fn three_messages_on_one_connection() {
    let sink = Sink::start(&[]);
    let proxy = Proxy::start(sink.addr);
    let recipients = [rcpt("bob@example.org")];
    block_on(async {
        let mut client = SmtpClient::connect(proxy.addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap();
        for i in 0..3 {
            let body = format!("Subject: number {i}\r\n\r\n.{i}\r\n");
            let msg = message("alice@example.test", &recipients, body.as_bytes());
            let result = client.send(&msg).await.unwrap();
            assert!(result.delivered(0), "{result:?}");
            assert!(client.is_reusable());
        }
        client.quit().await;
    });
    let mut subjects: Vec<String> = sink
        .dumps(3)
        .iter()
        .map(|d| String::from_utf8_lossy(&d.message).into_owned())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        (0..3)
            .map(|i| format!("Subject: number {i}\n\n.{i}\n"))
            .collect::<Vec<_>>()
    );
    // All three went through the proxy's one connection, then QUIT.
    let wire = String::from_utf8_lossy(&proxy.everything()).into_owned();
    assert_eq!(wire.matches("MAIL FROM:").count(), 3);
    assert_eq!(wire.matches("EHLO").count(), 1);
    assert!(wire.ends_with("QUIT\r\n"));
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    // -e: no ESMTP at all, EHLO gets 500.
    let sink = Sink::start(&["-e"]);
    let recipients = [rcpt("bob@example.org")];
    let msg = message(
        "alice@example.test",
        &recipients,
        b"Subject: old\r\n\r\nhi\r\n",
    );
    block_on(async {
        let mut client = SmtpClient::connect(sink.addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap();
        assert_eq!(
            client.capabilities(),
            &surel::relay::Capabilities::default()
        );
        assert!(client.send(&msg).await.unwrap().delivered(0));
        client.quit().await;
    });
    let dump = &sink.dumps(1)[0];
    assert_eq!(dump.proto, "SMTP");
    assert_eq!(dump.helo.as_deref(), Some("client.test"));
}

#[test]
fn refusals_before_anything_is_sent() {
    let sink = Sink::start(&[]);
    let proxy = Proxy::start(sink.addr);
    let recipients = [rcpt("bob@example.org")];
    let utf8 = [rcpt("jörg@example.org")];
    block_on(async {
        let mut client = SmtpClient::connect(proxy.addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap();
        // smtp-sink offers no SMTPUTF8.
        let mut msg = message(
            "alice@example.test",
            &recipients,
            b"Subject: x\r\n\r\ny\r\n",
        );
        msg.needs_smtputf8 = true;
        let err = client.send(&msg).await.unwrap_err();
        assert!(matches!(err, ClientError::MessageRefused { .. }), "{err:?}");
        assert!(err.is_permanent());
        assert_eq!(err.status(), (5, 6, 7));
        // A non-ASCII address needs it too, flag or not.
        let msg = message("alice@example.test", &utf8, b"Subject: x\r\n\r\ny\r\n");
        assert_eq!(client.send(&msg).await.unwrap_err().status(), (5, 6, 7));
        // A CRLF in an address would start a command of its own.
        let evil = [rcpt("bob@example.org>\r\nRCPT TO:<eve@example.org")];
        let msg = message("alice@example.test", &evil, b"x\r\n");
        assert_eq!(client.send(&msg).await.unwrap_err().status(), (5, 1, 3));
        assert!(client.is_reusable());
        client.quit().await;
    });
    let wire = String::from_utf8_lossy(&proxy.everything()).into_owned();
    assert_eq!(wire, "EHLO client.test\r\nQUIT\r\n");
}

#[test]
fn credentials_are_never_sent_in_clear() {
    // smtp-sink offers AUTH PLAIN LOGIN without TLS.
    let sink = Sink::start(&[]);
    let proxy = Proxy::start(sink.addr);
    let mut cfg = config(TlsPolicy::May);
    cfg.credentials = Some(("alice".into(), "secret".into()));
    let err = block_on(SmtpClient::connect(proxy.addr, "localhost", &cfg)).unwrap_err();
    assert!(matches!(err, ClientError::AuthWithoutTls), "{err:?}");
    assert!(!err.is_permanent());
    let wire = String::from_utf8_lossy(&proxy.everything()).into_owned();
    assert_eq!(wire, "EHLO client.test\r\nQUIT\r\n");
}

#[test]
fn tls_required_but_not_offered() {
    let sink = Sink::start(&[]);
    for policy in [TlsPolicy::Require, TlsPolicy::Verify] {
        let err =
            block_on(SmtpClient::connect(sink.addr, "localhost", &config(policy))).unwrap_err();
        assert!(matches!(err, ClientError::TlsNotOffered), "{err:?}");
        assert!(!err.is_permanent());
        assert_eq!(err.status(), (4, 7, 4));
    }
}

#[test]
fn service_closing_in_a_transaction() {
    // -Q RCPT: "421" and the server hangs up.
    let sink = Sink::start(&["-Q", "RCPT"]);
    let recipients = [rcpt("bob@example.org")];
    let msg = message("alice@example.test", &recipients, b"x\r\n");
    block_on(async {
        let mut client = SmtpClient::connect(sink.addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap();
        let err = client.send(&msg).await.unwrap_err();
        let reply = err.reply().expect("the 421 is carried").clone();
        assert_eq!(reply.code, 421);
        assert!(
            matches!(
                err,
                ClientError::Rejected {
                    stage: Stage::Rcpt,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_permanent());
        assert!(!client.is_reusable());
        let err = client.send(&msg).await.unwrap_err();
        assert!(matches!(err, ClientError::Usage(_)), "{err:?}");
        client.quit().await;
    });
}

#[test]
fn server_hanging_up_mid_transaction() {
    // -q DATA: the connection closes without a reply to DATA.
    let sink = Sink::start(&["-q", "DATA"]);
    let recipients = [rcpt("bob@example.org")];
    let msg = message("alice@example.test", &recipients, b"x\r\n");
    block_on(async {
        let mut client = SmtpClient::connect(sink.addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap();
        let err = client.send(&msg).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::ConnectionClosed { stage: Stage::Data }
                    | ClientError::Io {
                        stage: Stage::Data,
                        ..
                    }
            ),
            "{err:?}"
        );
        assert_eq!(err.status(), (4, 4, 2));
        assert!(!client.is_reusable());
    });
}

/// A sink whose reply to one command comes 3 s late (`-W cmd:3`; `-p`: lock-step, so it is
/// the only command in flight) and a client that allows 1 s for it: a timeout at `stage`.
fn assert_slow_reply_times_out(
    late: &str,
    stage: Stage,
    limit: fn(&mut ClientTimeouts) -> &mut Duration,
) {
    let sink = Sink::start(&["-p", "-W", &format!("{late}:3")]);
    let recipients = [rcpt("bob@example.org")];
    let msg = message("alice@example.test", &recipients, b"x\r\n");
    let mut cfg = config(TlsPolicy::May);
    *limit(&mut cfg.timeouts) = Duration::from_secs(1);
    block_on(async {
        let mut client = SmtpClient::connect(sink.addr, "localhost", &cfg)
            .await
            .unwrap();
        let started = Instant::now();
        let err = client.send(&msg).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, ClientError::Timeout { stage: s, .. } if s == stage),
            "{err:?}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
            "{took:?}"
        );
        assert!(!client.is_reusable());
    });
}

#[test]
fn a_slow_reply_times_out() {
    assert_slow_reply_times_out("rcpt", Stage::Rcpt, |t| &mut t.command);
}

#[test]
fn a_slow_end_of_data_reply_times_out() {
    // data_done alone is short; the other replies keep the default limit.
    assert_slow_reply_times_out(".", Stage::DataDone, |t| &mut t.data_done);
}

// ---------------------------------------------------------------------------------------------
// Against surel

/// Checks that `stored` is `body` behind surel's trace header fields only.
fn assert_stored(stored: &[u8], body: &[u8], sender: &str) {
    let text = String::from_utf8_lossy(stored);
    assert!(stored.ends_with(body), "{text}");
    let trace = String::from_utf8_lossy(&stored[..stored.len() - body.len()]).into_owned();
    assert!(
        trace.starts_with(&format!("Return-Path: <{sender}>\r\n")),
        "{trace}"
    );
    for line in trace.split_terminator("\r\n") {
        assert!(
            line.starts_with("Return-Path: ")
                || line.starts_with("Delivered-To: ")
                || line.starts_with("Received: ")
                || line.starts_with(['\t', ' ']),
            "not a trace header line: {line:?} in\n{trace}"
        );
    }
}

/// Delivers over STARTTLS with AUTH PLAIN to the submission port, one local and one remote
/// recipient, with `policy`; returns the stored copy.
async fn submit_over_starttls(server_addr: SocketAddr, policy: TlsPolicy, body: &[u8]) {
    let mut cfg = config(policy);
    cfg.credentials = Some(("alice@example.test".into(), PASSWORD.into()));
    let mut client = SmtpClient::connect(server_addr, "localhost", &cfg)
        .await
        .unwrap();
    assert_eq!(client.tls_version(), Some("TLSv1.3"));
    let caps = client.capabilities().clone();
    assert!(
        caps.chunking && caps.pipelining && caps.smtputf8,
        "{caps:?}"
    );
    assert!(
        !caps.starttls,
        "STARTTLS offered again inside TLS: {caps:?}"
    );
    assert!(caps.auth.contains(&"PLAIN".to_string()), "{caps:?}");
    let recipients = [rcpt("bob@example.test"), rcpt("friend@elsewhere.test")];
    let mut msg = message("alice@example.test", &recipients, body);
    msg.eight_bit = true;
    let result = client.send(&msg).await.unwrap();
    assert_eq!(result.mail.code, 250);
    assert!(result.delivered(0), "{result:?}");
    // The authenticated client may relay: the remote recipient is queued.
    let remote = result.recipients[1].as_ref().unwrap();
    assert_eq!(remote.code, 250, "{remote:?}");
    assert!(result.delivered(1));
    assert!(
        result
            .data
            .as_ref()
            .unwrap()
            .text()
            .starts_with("250 2.0.0")
    );
    client.quit().await;
}

#[test]
fn starttls_may_with_auth_plain_and_bdat_on_io_uring() {
    let mut server = TestServer::start(&["alice@example.test", "bob@example.test"], "");
    // BDAT carries the body as is: a leading dot, a bare LF and no final CRLF arrive untouched.
    let body: &[u8] = b"Subject: relayed\r\n\r\n.leading dot\r\nbare\nlf \xc3\xa9\r\nno end";
    block_on_uring(submit_over_starttls(
        server.addr("submission"),
        TlsPolicy::May,
        body,
    ));
    server.stop();
    let msgs = inbox(&server, "bob@example.test");
    assert_eq!(msgs.len(), 1);
    assert_stored(&msgs[0], body, "alice@example.test");
    assert!(contains(&msgs[0], "Received: from client.test"));
    assert!(
        contains(&msgs[0], "ESMTPSA"),
        "{}",
        String::from_utf8_lossy(&msgs[0])
    );
}

#[test]
fn starttls_require_with_auth_plain() {
    let mut server = TestServer::start(&["alice@example.test", "bob@example.test"], "");
    let body: &[u8] = b"Subject: required\r\n\r\nhello\r\n";
    block_on(submit_over_starttls(
        server.addr("submission"),
        TlsPolicy::Require,
        body,
    ));
    server.stop();
    let msgs = inbox(&server, "bob@example.test");
    assert_eq!(msgs.len(), 1);
    assert_stored(&msgs[0], body, "alice@example.test");
}

#[test]
fn rejected_recipient_among_accepted_ones_on_port_25() {
    let mut server = TestServer::start(&["alice@example.test", "bob@example.test"], "");
    let recipients = [
        rcpt("alice@example.test"),
        rcpt("nobody@example.test"),
        rcpt("bob@example.test"),
    ];
    let body = b"Subject: three\r\n\r\n..two dots, stored as one by DATA, kept by BDAT\r\n";
    let msg = message("sender@remote.test", &recipients, body);
    block_on(async {
        let mut client =
            SmtpClient::connect(server.addr("smtp"), "mx.test", &config(TlsPolicy::Disabled))
                .await
                .unwrap();
        assert_eq!(client.tls_version(), None);
        let result = client.send(&msg).await.unwrap();
        assert!(result.delivered(0) && !result.delivered(1) && result.delivered(2));
        let refused = result.recipients[1].as_ref().unwrap();
        assert_eq!(refused.code, 550);
        assert_eq!(refused.enhanced, Some((5, 1, 1)));
        client.quit().await;
    });
    server.stop();
    for account in ["alice@example.test", "bob@example.test"] {
        let msgs = inbox(&server, account);
        assert_eq!(msgs.len(), 1, "{account}");
        assert_stored(&msgs[0], body, "sender@remote.test");
    }
}

#[test]
fn message_over_the_servers_size_limit_is_refused_before_sending() {
    let mut server = TestServer::start(
        &["alice@example.test"],
        "[limits]\nmax_message_size = 1000\n",
    );
    let recipients = [rcpt("alice@example.test")];
    let big = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(2000));
    block_on(async {
        let mut client =
            SmtpClient::connect(server.addr("smtp"), "mx.test", &config(TlsPolicy::May))
                .await
                .unwrap();
        assert_eq!(client.capabilities().size, Some(1000));
        let err = client
            .send(&message("s@remote.test", &recipients, big.as_bytes()))
            .await
            .unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.status(), (5, 3, 4));
        assert!(err.to_string().contains("1000"), "{err}");
        // The connection is still good for a message that fits.
        assert!(client.is_reusable());
        let result = client
            .send(&message(
                "s@remote.test",
                &recipients,
                b"Subject: small\r\n\r\nok\r\n",
            ))
            .await
            .unwrap();
        assert!(result.delivered(0));
        client.quit().await;
    });
    server.stop();
    assert_eq!(inbox(&server, "alice@example.test").len(), 1);
}

#[test]
fn auth_offered_in_clear_is_not_used() {
    let server = TestServer::start(&["alice@example.test"], "[auth]\nallow_plaintext = true\n");
    let proxy = Proxy::start(server.addr("submission"));
    let mut cfg = config(TlsPolicy::Disabled);
    cfg.credentials = Some(("alice@example.test".into(), PASSWORD.into()));
    let err = block_on(SmtpClient::connect(proxy.addr, "localhost", &cfg)).unwrap_err();
    assert!(matches!(err, ClientError::AuthWithoutTls), "{err:?}");
    let wire = String::from_utf8_lossy(&proxy.everything()).into_owned();
    assert_eq!(wire, "EHLO client.test\r\nQUIT\r\n");
    assert!(!wire.contains("AUTH"));
}

#[test]
fn verify_policy_checks_the_certificate_name() {
    let server = TestServer::start(&["alice@example.test"], "");
    let (cert, _) = surel::net::tls::default_paths(&server.data_dir());
    let mut cfg = config(TlsPolicy::Verify);
    cfg.tls_configs = client_configs(Some(&cert)).unwrap();
    let addr = server.addr("smtp");
    block_on(async {
        let client = SmtpClient::connect(addr, "localhost", &cfg).await.unwrap();
        assert!(client.tls_version().is_some());
        client.quit().await;
        let err = SmtpClient::connect(addr, "wrong.example", &cfg)
            .await
            .unwrap_err();
        let ClientError::Tls { reason } = &err else {
            panic!("{err:?}")
        };
        assert!(reason.contains("certificate"), "{reason}");
        assert_eq!(err.status(), (4, 7, 5));
        // Without the extra CA, the self-signed certificate is unknown whatever the name.
        let mut system_only = cfg.clone();
        system_only.tls_configs = tls_configs();
        let err = SmtpClient::connect(addr, "localhost", &system_only)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// Scripted failures

#[test]
fn silent_server_times_out_at_the_greeting() {
    // The kernel completes the TCP handshake; nobody ever speaks.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(TlsPolicy::May);
    cfg.timeouts.greeting = Duration::from_secs(1);
    let started = Instant::now();
    let err = block_on(SmtpClient::connect(
        listener.local_addr().unwrap(),
        "localhost",
        &cfg,
    ))
    .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                stage: Stage::Greeting,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        err.to_string(),
        "timed out after 1s waiting for the greeting"
    );
}

#[test]
fn connection_refused_is_reported_with_the_address() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let err = block_on(SmtpClient::connect(
        addr,
        "localhost",
        &config(TlsPolicy::May),
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("connect to {addr}: Connection refused")
    );
    assert!(!err.is_permanent());
}

#[test]
fn a_non_smtp_server_is_a_protocol_error() {
    let (addr, server) = scripted(1, |_, s| s.send("HTTP/1.1 400 Bad Request\r\n\r\n"));
    let err = block_on(SmtpClient::connect(
        addr,
        "localhost",
        &config(TlsPolicy::May),
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::BadReply {
                stage: Stage::Greeting,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("HTTP/1.1 400"), "{err}");
    server.join().unwrap();
}

#[test]
fn greeting_refusal_and_helo_refusal_carry_the_reply() {
    let (addr, server) = scripted(2, |i, s| {
        if i == 0 {
            s.send("554 5.7.1 no service for you\r\n");
            s.line() // QUIT
        } else {
            s.send("220 old ESMTP\r\n");
            s.line();
            s.send("502 5.5.1 what is EHLO\r\n");
            s.line();
            s.send("550-5.7.1 HELO refused\r\n550 5.7.1 go away\r\n");
            s.line()
        }
    });
    block_on(async {
        let err = SmtpClient::connect(addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(
            err.to_string(),
            "554 5.7.1 no service for you (in reply to initial greeting)"
        );
        let err = SmtpClient::connect(addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Rejected {
                    stage: Stage::Helo,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.reply().unwrap().lines, vec!["HELO refused", "go away"]);
    });
    assert_eq!(server.join().unwrap(), vec!["QUIT\r\n", "QUIT\r\n"]);
}

/// A server that offers STARTTLS and answers the handshake with clear text.
fn broken_tls(s: &mut Script) {
    s.send("220 fake ESMTP\r\n");
    s.line();
    s.send("250-fake\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
    assert_eq!(s.line(), "STARTTLS\r\n");
    s.send("220 2.0.0 go ahead\r\n");
    let mut hello = [0u8; 5];
    s.reader.read_exact(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a TLS handshake record");
    s.send("this is not TLS at all\r\n");
}

#[test]
fn may_falls_back_to_clear_text_when_the_handshake_fails() {
    let (addr, server) = scripted(2, |i, s| {
        if i == 0 {
            broken_tls(s);
            return Vec::new();
        }
        s.send("220 fake ESMTP\r\n");
        assert_eq!(s.line(), "EHLO client.test\r\n");
        s.send("250-fake\r\n250 STARTTLS\r\n");
        assert_eq!(s.line(), "MAIL FROM:<a@b.test>\r\n");
        s.send("250 2.1.0 ok\r\n");
        assert_eq!(s.line(), "RCPT TO:<c@d.test>\r\n");
        s.send("250 2.1.5 ok\r\n");
        assert_eq!(s.line(), "DATA\r\n");
        s.send("354 go\r\n");
        let content = s.content();
        s.send("250 2.0.0 queued\r\n");
        assert_eq!(s.line(), "QUIT\r\n");
        s.send("221 bye\r\n");
        content
    });
    let recipients = [rcpt("c@d.test")];
    let msg = message("a@b.test", &recipients, b"Subject: plain\r\n\r\n.x\r\n");
    block_on(async {
        let mut client = SmtpClient::connect(addr, "localhost", &config(TlsPolicy::May))
            .await
            .unwrap();
        assert_eq!(client.tls_version(), None);
        assert!(client.send(&msg).await.unwrap().delivered(0));
        client.quit().await;
    });
    let contents = server.join().unwrap();
    assert_eq!(contents[1], b"Subject: plain\r\n\r\n..x\r\n");
}

#[test]
fn require_does_not_fall_back_when_the_handshake_fails() {
    let (addr, server) = scripted(1, |_, s| broken_tls(s));
    let err = block_on(SmtpClient::connect(
        addr,
        "localhost",
        &config(TlsPolicy::Require),
    ))
    .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert!(!err.is_permanent());
    server.join().unwrap();
}

#[test]
fn clear_text_injected_after_the_starttls_reply_is_refused() {
    let (addr, server) = scripted(1, |_, s| {
        s.send("220 fake ESMTP\r\n");
        s.line();
        s.send("250-fake\r\n250 STARTTLS\r\n");
        s.line();
        // One write: the go-ahead and a forged EHLO reply meant to be read inside TLS.
        s.send("220 go ahead\r\n250-fake\r\n250 AUTH PLAIN\r\n");
        let mut rest = Vec::new();
        let _ = s.reader.read_to_end(&mut rest);
        rest
    });
    let err = block_on(SmtpClient::connect(
        addr,
        "localhost",
        &config(TlsPolicy::Require),
    ))
    .unwrap_err();
    let ClientError::Tls { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("after its STARTTLS reply"), "{reason}");
    // No handshake was even started.
    assert_eq!(server.join().unwrap(), vec![Vec::<u8>::new()]);
}

#[test]
fn auth_login_when_plain_is_not_offered_and_a_refused_auth() {
    let (addr, server) = scripted(2, |i, s| {
        s.send("220 fake ESMTP\r\n");
        assert_eq!(s.line(), "EHLO client.test\r\n");
        s.send("250-fake\r\n250 STARTTLS\r\n");
        assert_eq!(s.line(), "STARTTLS\r\n");
        s.send("220 2.0.0 go ahead\r\n");
        s.start_tls();
        assert_eq!(s.line(), "EHLO client.test\r\n");
        let mut said = Vec::new();
        if i == 0 {
            s.send("250-fake\r\n250 AUTH LOGIN\r\n");
            assert_eq!(s.line(), "AUTH LOGIN\r\n");
            s.send("334 VXNlcm5hbWU6\r\n");
            said.push(s.line());
            s.send("334 UGFzc3dvcmQ6\r\n");
            said.push(s.line());
            s.send("235 2.7.0 ok\r\n");
        } else {
            s.send("250-fake\r\n250 AUTH=PLAIN LOGIN\r\n");
            said.push(s.line());
            s.send("535 5.7.8 bad credentials\r\n");
        }
        assert_eq!(s.line(), "QUIT\r\n");
        s.send("221 bye\r\n");
        said
    });
    let mut cfg = config(TlsPolicy::Require);
    cfg.credentials = Some(("alice".into(), "pa ss".into()));
    block_on(async {
        let client = SmtpClient::connect(addr, "localhost", &cfg).await.unwrap();
        assert_eq!(client.tls_version(), Some("TLSv1.3"));
        assert_eq!(client.capabilities().auth, vec!["LOGIN"]);
        client.quit().await;
        let err = SmtpClient::connect(addr, "localhost", &cfg)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Rejected {
                    stage: Stage::Auth,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            !err.is_permanent(),
            "a credentials problem is ours: retry, do not bounce"
        );
        assert_eq!(err.reply().unwrap().code, 535);
    });
    let said = server.join().unwrap();
    let decode = |line: &str| surel::net::sasl::decode_base64(line.trim_end().as_bytes()).unwrap();
    assert_eq!(decode(&said[0][0]), b"alice");
    assert_eq!(decode(&said[0][1]), b"pa ss");
    let plain = said[1][0].strip_prefix("AUTH PLAIN ").expect(&said[1][0]);
    assert_eq!(decode(plain), b"\0alice\0pa ss");
}
