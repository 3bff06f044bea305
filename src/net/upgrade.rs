//! The life of a connection, shared by every protocol: optional implicit TLS, the greeting, the
//! session, and an in-place STARTTLS/STLS upgrade when the session asks for one.

use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;

use super::tls_stream::{TlsAcceptor, TlsStream};
use super::{Connection, ConnectionSettings};

/// How a protocol driver's run over one stream ended.
pub enum Flow {
    Closed,
    /// The session accepted STARTTLS/STLS; its "go ahead" reply has been flushed.
    StartTls,
}

/// A protocol's driver: runs its sans-IO session over a connection and performs the session's
/// events (authentication, storage, ...).
#[allow(async_fn_in_trait)]
pub trait SessionDriver {
    fn greet(&mut self, out: &mut Vec<u8>);
    /// Called after a STARTTLS handshake: the session must forget what it learnt in clear text.
    fn tls_started(&mut self);
    async fn run<S: AsyncReadRent + AsyncWriteRent + Split>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Flow;
}

pub struct TlsSetup<'a> {
    pub acceptor: &'a TlsAcceptor,
    pub handshake_timeout: Duration,
    pub connection: &'a ConnectionSettings,
}

/// Runs `driver` over `stream`: TLS first when `implicit_tls`, else clear text with a possible
/// upgrade. A failed or slow handshake just closes the connection.
pub async fn serve_connection<D: SessionDriver>(
    stream: TcpStream,
    implicit_tls: bool,
    tls: TlsSetup<'_>,
    driver: &mut D,
) {
    if implicit_tls {
        let Some(stream) = handshake(stream, &tls).await else {
            return;
        };
        let mut conn = Connection::new(stream, tls.connection);
        driver.greet(conn.output());
        driver.run(&mut conn).await;
        return;
    }
    let mut conn = Connection::new(stream, tls.connection);
    driver.greet(conn.output());
    if let Flow::StartTls = driver.run(&mut conn).await {
        let Some(stream) = handshake(conn.into_stream(), &tls).await else {
            return;
        };
        driver.tls_started();
        let mut conn = Connection::new(stream, tls.connection);
        driver.run(&mut conn).await;
    }
}

async fn handshake(stream: TcpStream, tls: &TlsSetup<'_>) -> Option<TlsStream> {
    match monoio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}
