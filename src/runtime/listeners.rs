//! Listening sockets: one SO_REUSEPORT socket per (listener, core), so the kernel spreads
//! connections over the cores and no accept queue is shared between threads.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

/// What a listening port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Port 25: MX inbound.
    Smtp,
    /// Port 587: STARTTLS then AUTH.
    Submission,
    /// Port 465: implicit TLS, AUTH.
    Submissions,
    Pop3,
    Pop3s,
    Imap,
    Imaps,
}

impl Protocol {
    pub const ALL: [Protocol; 7] = [
        Protocol::Smtp,
        Protocol::Submission,
        Protocol::Submissions,
        Protocol::Pop3,
        Protocol::Pop3s,
        Protocol::Imap,
        Protocol::Imaps,
    ];

    /// The name used in config (`disable`, `[ports]`) and in the ports file.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Submissions => "submissions",
            Protocol::Pop3 => "pop3",
            Protocol::Pop3s => "pop3s",
            Protocol::Imap => "imap",
            Protocol::Imaps => "imaps",
        }
    }

    pub fn configured_port(self, ports: &crate::config::Ports) -> u16 {
        match self {
            Protocol::Smtp => ports.smtp,
            Protocol::Submission => ports.submission,
            Protocol::Submissions => ports.submissions,
            Protocol::Pop3 => ports.pop3,
            Protocol::Pop3s => ports.pop3s,
            Protocol::Imap => ports.imap,
            Protocol::Imaps => ports.imaps,
        }
    }
}

/// The sockets of one listener, one per core, all bound to the same address.
pub struct BoundListener {
    pub protocol: Protocol,
    pub address: SocketAddr,
    pub per_core: Vec<TcpListener>,
}

fn reuseport_socket(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    // The epoll driver does not set this itself.
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Binds `cores` sockets for `addr`. With port 0 the first bind picks the port and the others
/// join it, so an ephemeral port still gets one socket per core.
pub fn bind(protocol: Protocol, addr: SocketAddr, cores: usize) -> io::Result<BoundListener> {
    let first = reuseport_socket(addr)?;
    let address = first.local_addr()?;
    let mut per_core = vec![first];
    for _ in 1..cores {
        per_core.push(reuseport_socket(address)?);
    }
    Ok(BoundListener {
        protocol,
        address,
        per_core,
    })
}
