//! Runs an [`SmtpSession`] over a connection and carries out what it asks: password checks
//! (off the event loop, with throttling), recipient routing, durable delivery through the
//! pipeline, STARTTLS.

use std::net::SocketAddr;

use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;

use super::{ListenerKind, SmtpEvent, SmtpSession};
use crate::delivery::router;
use crate::net::{Connection, Flow, ProtocolSession, SessionDriver};
use crate::runtime::{Core, Protocol};

impl ProtocolSession for SmtpSession {
    type Event = SmtpEvent;

    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<SmtpEvent>) {
        match SmtpSession::feed(self, input, out) {
            (used, SmtpEvent::NeedInput) => (used, None),
            (used, event) => (used, Some(event)),
        }
    }
    fn is_idle(&self) -> bool {
        SmtpSession::is_idle(self)
    }
    fn on_timeout(&mut self, out: &mut Vec<u8>) {
        self.timeout(out)
    }
    fn on_shutdown(&mut self, out: &mut Vec<u8>) {
        self.shutdown(out)
    }
    fn held_bytes(&self) -> usize {
        SmtpSession::held_bytes(self)
    }
    fn shed_transfer(&mut self) {
        SmtpSession::shed_transfer(self)
    }
}

struct SmtpDriver<'a> {
    protocol: Protocol,
    session: SmtpSession,
    peer: SocketAddr,
    core: &'a Core,
}

impl SessionDriver for SmtpDriver<'_> {
    fn greet(&mut self, out: &mut Vec<u8>) {
        self.session.greeting(out);
    }

    fn tls_started(&mut self) {
        self.session.tls_started();
    }

    async fn run<S: AsyncReadRent + AsyncWriteRent + Split>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Flow {
        let services = &self.core.services;
        loop {
            let event = match conn
                .next_event(&mut self.session, services.timeouts, &self.core.shutdown)
                .await
            {
                Ok(event) => event,
                Err(_) => return Flow::Closed,
            };
            match event {
                SmtpEvent::NeedInput => {}
                SmtpEvent::Authenticate { username, password } => {
                    let outcome = self
                        .core
                        .authenticate(self.protocol, self.peer, &username, &password)
                        .await;
                    self.session.auth_result(outcome, conn.output());
                }
                SmtpEvent::CheckSender { address, account } => {
                    let allowed =
                        router::sender_allowed(services.directory.as_ref(), &address, &account);
                    if !allowed {
                        tracing::info!(
                            "sender refused: client={} user={account} from=<{address}>",
                            self.peer.ip()
                        );
                    }
                    self.session.sender_result(allowed, conn.output());
                }
                SmtpEvent::Route { address, may_relay } => {
                    let route = router::route(services.directory.as_ref(), &address, may_relay);
                    self.session.route_result(route, conn.output());
                }
                SmtpEvent::Deliver(tx) => {
                    let envelope = &tx.envelope;
                    tracing::info!(
                        "{}: client={}, from=<{}>, size={}, nrcpt={}{}",
                        envelope.id,
                        self.peer.ip(),
                        envelope.mail_from,
                        tx.size,
                        envelope.recipients.len(),
                        envelope
                            .authenticated_as
                            .as_deref()
                            .map(|a| format!(", sasl_username={a}"))
                            .unwrap_or_default()
                    );
                    let result = services
                        .pipeline
                        .deliver(envelope, Bytes::from(tx.message), self.core.index)
                        .await;
                    if let Err(e) = &result {
                        tracing::warn!("{}: not accepted: {e:?}", envelope.id);
                    }
                    self.session.delivery_result(result, conn.output());
                }
                SmtpEvent::StartTls => return conn.finish(Flow::StartTls).await,
                SmtpEvent::Close => return conn.finish(Flow::Closed).await,
            }
        }
    }
}

/// Serves one SMTP connection on port 25, 587 or 465.
pub async fn serve(protocol: Protocol, stream: TcpStream, peer: SocketAddr, core: &Core) {
    let services = &core.services;
    let kind = match protocol {
        Protocol::Submission => ListenerKind::Submission,
        Protocol::Submissions => ListenerKind::Submissions,
        _ => ListenerKind::Mx,
    };
    let implicit_tls = kind == ListenerKind::Submissions;
    let mut session = SmtpSession::new(
        services.smtp.clone(),
        kind,
        peer,
        implicit_tls,
        !implicit_tls,
    );
    session.set_relay_client(
        services
            .relay_networks
            .iter()
            .any(|n| n.contains(peer.ip())),
    );
    let mut driver = SmtpDriver {
        protocol,
        session,
        peer,
        core,
    };
    core.serve_connection(stream, implicit_tls, &mut driver)
        .await;
}
