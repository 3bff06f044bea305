//! Server-side TLS over a TCP stream that keeps no ciphertext buffer of its own.
//!
//! monoio-rustls gives every stream two fixed 16 KiB buffers for ciphertext, held for the
//! connection's life: 32 KiB of an idle IMAP connection that waits for one short line. Here the
//! socket is driven by readiness instead of by owned-buffer reads: the stream waits until the
//! socket is readable (a poll, which holds no buffer and loses nothing when cancelled), then
//! rustls reads straight from the socket into its own record buffer, which rustls shrinks back
//! to 4 KiB whenever it holds no partial record. Outgoing records wait in rustls' chunk queue,
//! each chunk freed as soon as the kernel took it. So an idle stream holds rustls' state and
//! nothing else, and a busy one only what is in flight.
//!
//! Socket calls are non-blocking (`MSG_DONTWAIT`) whichever driver runs: with io_uring the
//! wait is a `PollAdd`, with epoll the driver's readiness (re-checked with `poll`, since the
//! driver does not see our own `recv`/`send` drain the socket).
//!
//! Only servers use it; the relay client keeps monoio-rustls (one stream per delivery, never idle
//! in thousands).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

/// Accepts TLS connections with one server configuration (TLS 1.2 and 1.3, see
/// [`super::tls::server_config`]).
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl From<Arc<ServerConfig>> for TlsAcceptor {
    fn from(config: Arc<ServerConfig>) -> Self {
        TlsAcceptor { config }
    }
}

impl TlsAcceptor {
    /// Runs the server handshake over `io`. The caller bounds it with a timeout.
    pub async fn accept(&self, io: TcpStream) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(self.config.clone()).map_err(io::Error::other)?;
        let mut stream = TlsStream { io, conn };
        while stream.conn.is_handshaking() {
            stream.flush_tls().await?;
            if !stream.conn.is_handshaking() {
                break;
            }
            if stream.read_tls().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the TLS handshake",
                ));
            }
        }
        // The last flight, and TLS 1.3 session tickets.
        stream.flush_tls().await?;
        Ok(stream)
    }
}

/// A TLS session over a TCP stream. See the module documentation for its buffers.
pub struct TlsStream {
    io: TcpStream,
    conn: ServerConnection,
}

// Splitting shares the stream between a reader and a writer on one thread (IMAP IDLE reads
// while pushing updates). Each touches `conn` only between awaits, never across one, and the
// socket itself is safe to read and write at once.
unsafe impl Split for TlsStream {}

impl TlsStream {
    fn socket(&self) -> SocketIo {
        SocketIo(self.io.as_raw_fd())
    }

    /// Moves ciphertext from the socket into rustls and decrypts it, waiting for the socket when
    /// it has nothing. Returns the bytes received (0 = the peer closed its side).
    async fn read_tls(&mut self) -> io::Result<usize> {
        loop {
            let mut socket = self.socket();
            match self.conn.read_tls(&mut socket) {
                Ok(n) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        // rustls queued an alert saying why; one non-blocking attempt to send it.
                        let _ = self.conn.write_tls(&mut socket);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.io.readable(false).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends every record rustls has queued, waiting for the socket when it is full.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut socket = self.socket();
            match self.conn.write_tls(&mut socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.io.writable(false).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the buffer is owned by this call and `bytes_total` bytes from `write_ptr` are
        // writable; only the first `n` are marked initialised, after rustls wrote them.
        let slice = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
        loop {
            match self.conn.reader().read(slice) {
                Ok(n) => {
                    unsafe { buf.set_init(n) };
                    return (Ok(n), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (Err(e), buf),
            }
            // End of input also goes back to the reader above, which tells a clean close
            // (close_notify: Ok(0)) from a truncation (UnexpectedEof).
            if let Err(e) = self.read_tls().await {
                return (Err(e), buf);
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer points into `buf`, which outlives the read.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `bytes_init` bytes from `read_ptr` are initialised and owned by this call.
        let slice = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        if let Err(e) = self.flush_tls().await {
            return (Err(e), buf);
        }
        // rustls takes what fits its send limit (64 KiB): a large body goes out in rounds,
        // never encrypted whole into memory.
        let n = match self.conn.writer().write(slice) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        // Sent before returning, so a completed write means the bytes left the process.
        match self.flush_tls().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer points into `buf`, which outlives the write.
        let n = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write(raw).await.0,
            None => Ok(0),
        };
        (n, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_tls().await?;
        self.io.shutdown().await
    }
}

/// Non-blocking socket calls for rustls' `read_tls`/`write_tls`.
struct SocketIo(RawFd);

fn check(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

impl Read for SocketIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
        check(unsafe {
            libc::recv(
                self.0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        })
    }
}

impl Write for SocketIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
        check(unsafe {
            libc::send(
                self.0,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        })
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // rustls hands over its queued records at once: one syscall for all of them.
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; the message only borrows.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
        check(unsafe { libc::sendmsg(self.0, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn configs(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = pair.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pair.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    type Client = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

    #[derive(Clone, Copy, PartialEq)]
    enum Driver {
        IoUring,
        Epoll,
    }

    fn block_on<F: std::future::Future>(driver: Driver, f: F) -> Option<F::Output> {
        let built = match driver {
            Driver::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .build()
                .map(|mut rt| rt.block_on(f)),
            Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .map(|mut rt| rt.block_on(f)),
        };
        built.ok()
    }

    /// Runs `server` on a runtime of `driver` against `client` on a thread. Skipped when the
    /// driver is not available here (io_uring refused by the kernel).
    fn exchange<F, Fut>(
        driver: Driver,
        version: &'static rustls::SupportedProtocolVersion,
        server: F,
        client: impl FnOnce(Client, std::sync::mpsc::Receiver<()>) + Send + 'static,
    ) where
        F: FnOnce(TlsStream, std::sync::mpsc::Sender<()>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        if block_on(driver, async {}).is_none() {
            eprintln!("driver unavailable here: skipped");
            return;
        }
        let (server_config, client_config) = configs(version);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (go_tx, go_rx) = std::sync::mpsc::channel();
        let client_thread = std::thread::spawn(move || {
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut conn = rustls::ClientConnection::new(client_config, name).unwrap();
            // The server's accept needs the handshake done, whatever the client does next.
            let mut tcp = tcp;
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).unwrap();
            }
            client(rustls::StreamOwned::new(conn, tcp), go_rx);
        });
        block_on(driver, async move {
            let listener = monoio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let stream = TlsAcceptor::from(server_config).accept(tcp).await.unwrap();
            server(stream, go_tx).await;
        })
        .expect("runtime");
        client_thread.join().unwrap();
    }

    const CHUNK: usize = 16 * 1024 + 7;
    const ROUNDS: usize = 64;

    fn pattern(round: usize) -> Vec<u8> {
        (0..CHUNK).map(|i| (i * 31 + round * 7) as u8).collect()
    }

    /// Echoes until the peer's close_notify, then closes cleanly. Returns the bytes echoed.
    async fn echo(mut stream: TlsStream) -> usize {
        let mut total = 0;
        let mut buf = Vec::with_capacity(4096);
        loop {
            let (res, b) = stream.read(buf).await;
            let n = res.unwrap();
            if n == 0 {
                stream.shutdown().await.unwrap();
                return total;
            }
            total += n;
            let (res, mut b) = stream.write(b).await;
            assert_eq!(res.unwrap(), n, "a write of 4 KiB fits rustls' send limit");
            b.clear();
            buf = b;
        }
    }

    fn echo_client(mut c: Client, _: std::sync::mpsc::Receiver<()>) {
        for round in 0..ROUNDS {
            let sent = pattern(round);
            c.write_all(&sent).unwrap();
            let mut back = vec![0; CHUNK];
            c.read_exact(&mut back).unwrap();
            assert!(back == sent, "round {round}: echo differs");
        }
        c.conn.send_close_notify();
        c.flush().unwrap();
        let mut rest = Vec::new();
        // The server answers with its own close_notify: a clean end, no truncation error.
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    fn echoes_both_ways_and_ends_cleanly(driver: Driver) {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            exchange(
                driver,
                version,
                |stream, _| async move {
                    assert_eq!(echo(stream).await, CHUNK * ROUNDS);
                },
                echo_client,
            );
        }
    }

    #[test]
    fn echoes_both_ways_and_ends_cleanly_io_uring() {
        echoes_both_ways_and_ends_cleanly(Driver::IoUring);
    }

    #[test]
    fn echoes_both_ways_and_ends_cleanly_epoll() {
        echoes_both_ways_and_ends_cleanly(Driver::Epoll);
    }

    /// A read abandoned while waiting (a timeout) loses nothing: the wait holds no buffer and
    /// took no bytes. Then a peer that vanishes without close_notify is a truncation.
    fn cancelled_read_loses_nothing(driver: Driver) {
        exchange(
            driver,
            &rustls::version::TLS13,
            |mut stream, go| async move {
                let wait = stream.read(Vec::with_capacity(64));
                assert!(
                    monoio::time::timeout(Duration::from_millis(50), wait)
                        .await
                        .is_err()
                );
                go.send(()).unwrap();
                let mut got = Vec::new();
                while got.len() < 6 {
                    let (res, buf) = stream.read(Vec::with_capacity(64)).await;
                    assert!(res.unwrap() > 0);
                    got.extend_from_slice(&buf);
                }
                assert_eq!(got, b"late\r\n");
                // Not a clean end (Ok(0)): a truncation, or a reset when the client closed
                // with our session tickets unread.
                let (res, _) = stream.read(Vec::with_capacity(64)).await;
                let kind = res.unwrap_err().kind();
                assert!(
                    matches!(
                        kind,
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ),
                    "{kind:?}"
                );
            },
            |mut c, go| {
                go.recv().unwrap();
                c.write_all(b"late\r\n").unwrap();
                c.flush().unwrap();
                // Dropped without close_notify.
            },
        );
    }

    #[test]
    fn cancelled_read_loses_nothing_io_uring() {
        cancelled_read_loses_nothing(Driver::IoUring);
    }

    #[test]
    fn cancelled_read_loses_nothing_epoll() {
        cancelled_read_loses_nothing(Driver::Epoll);
    }
}
