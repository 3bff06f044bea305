//! Buffered line-oriented connection over a plain or TLS monoio TCP stream.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls::pki_types::ServerName;

/// Longest line accepted from a server before the connection is considered broken.
pub const MAX_LINE: usize = 1 << 20;

enum Io {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
    Closed,
}

/// A client connection with a read buffer. Lines and literals are returned as ranges
/// into the internal buffer, valid until the next read call ([`Conn::buf`] resolves them).
pub struct Conn {
    io: Io,
    rbuf: Vec<u8>,
    rpos: usize,
    timeout: Duration,
    fd: std::os::fd::RawFd,
    /// Bytes read from the socket (after TLS).
    pub bytes_in: u64,
    /// Bytes written to the socket (before TLS).
    pub bytes_out: u64,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Conn {
    /// Connect over plain TCP (TCP_NODELAY set).
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let tcp = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
            Ok(r) => r?,
            Err(_) => return Err(timed_out("connect")),
        };
        let _ = tcp.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        Ok(Conn {
            fd,
            io: Io::Plain(tcp),
            rbuf: Vec::with_capacity(16 * 1024),
            rpos: 0,
            timeout,
            bytes_in: 0,
            bytes_out: 0,
        })
    }

    /// Connect and immediately run a TLS handshake (implicit TLS: smtps/pop3s/imaps).
    pub async fn connect_tls(
        addr: SocketAddr,
        timeout: Duration,
        tls: &TlsConnector,
        name: ServerName<'static>,
    ) -> io::Result<Conn> {
        let mut c = Conn::connect(addr, timeout).await?;
        c.start_tls(tls, name).await?;
        Ok(c)
    }

    /// Upgrade a plain connection to TLS (STARTTLS / STLS). Any buffered plaintext is dropped.
    pub async fn start_tls(
        &mut self,
        tls: &TlsConnector,
        name: ServerName<'static>,
    ) -> io::Result<()> {
        let tcp = match std::mem::replace(&mut self.io, Io::Closed) {
            Io::Plain(t) => t,
            other => {
                self.io = other;
                return Err(io::Error::other(
                    "start_tls on a connection that is not plain TCP",
                ));
            }
        };
        self.rbuf.clear();
        self.rpos = 0;
        match monoio::time::timeout(self.timeout, tls.connect(name, tcp)).await {
            Ok(Ok(s)) => {
                self.io = Io::Tls(Box::new(s));
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(timed_out("TLS handshake")),
        }
    }

    /// Change the per-operation timeout (e.g. long for IMAP IDLE).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// The socket's file descriptor; another task may `shutdown(2)` it to end a blocked read.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// Resolve a range returned by [`Conn::read_line`] / [`Conn::read_exact`].
    #[inline]
    pub fn buf(&self, r: Range<usize>) -> &[u8] {
        &self.rbuf[r]
    }

    /// Bytes received but not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.rpos > 0 {
            if self.rpos == self.rbuf.len() {
                self.rbuf.clear();
            } else {
                self.rbuf.drain(..self.rpos);
            }
            self.rpos = 0;
        }
        if self.rbuf.capacity() - self.rbuf.len() < 8192 {
            self.rbuf.reserve(self.rbuf.len().max(16 * 1024));
        }
        let buf = std::mem::take(&mut self.rbuf);
        let (len, cap) = (buf.len(), buf.capacity());
        let slice = buf.slice_mut(len..cap);
        let res = match &mut self.io {
            Io::Plain(s) => monoio::time::timeout(self.timeout, s.read(slice)).await,
            Io::Tls(s) => monoio::time::timeout(self.timeout, s.read(slice)).await,
            Io::Closed => return Err(io::Error::new(io::ErrorKind::NotConnected, "closed")),
        };
        match res {
            Ok((r, slice)) => {
                self.rbuf = slice.into_inner();
                let n = r?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by server",
                    ));
                }
                self.bytes_in += n as u64;
                Ok(())
            }
            Err(_) => {
                self.io = Io::Closed;
                Err(timed_out("read"))
            }
        }
    }

    /// Read one line (terminated by LF, the terminator is included in the range).
    pub async fn read_line(&mut self) -> io::Result<Range<usize>> {
        let mut scanned = 0usize;
        loop {
            let start = self.rpos + scanned;
            if let Some(i) = memchr::memchr(b'\n', &self.rbuf[start..]) {
                let s = self.rpos;
                let e = start + i + 1;
                self.rpos = e;
                return Ok(s..e);
            }
            scanned = self.rbuf.len() - self.rpos;
            if scanned > MAX_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            self.fill().await?;
        }
    }

    /// Read exactly `n` bytes (e.g. an IMAP literal).
    pub async fn read_exact(&mut self, n: usize) -> io::Result<Range<usize>> {
        while self.rbuf.len() - self.rpos < n {
            if self.rpos > 0 || self.rbuf.capacity() < n {
                // make sure a single fill can eventually hold the whole literal
                let need = n + 16 * 1024;
                if self.rbuf.capacity() - self.rpos < need {
                    self.rbuf.reserve(need);
                }
            }
            self.fill().await?;
        }
        let s = self.rpos;
        self.rpos += n;
        Ok(s..s + n)
    }

    /// Write the whole buffer; the buffer is handed back for reuse.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let n = buf.len();
        let res = match &mut self.io {
            Io::Plain(s) => monoio::time::timeout(self.timeout, s.write_all(buf)).await,
            Io::Tls(s) => monoio::time::timeout(self.timeout, s.write_all(buf)).await,
            Io::Closed => {
                return (
                    Err(io::Error::new(io::ErrorKind::NotConnected, "closed")),
                    buf,
                );
            }
        };
        match res {
            Ok((r, b)) => {
                if r.is_ok() {
                    self.bytes_out += n as u64;
                }
                (r.map(|_| ()), b)
            }
            Err(_) => {
                self.io = Io::Closed;
                (Err(timed_out("write")), Vec::new())
            }
        }
    }

    /// Convenience: write a small command (allocates).
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all(data.to_vec()).await.0
    }
}
