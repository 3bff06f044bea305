//! Runs an [`SmtpSession`] over a connection and carries out what it asks: password checks
//! (off the event loop, with throttling), durable local delivery, STARTTLS.

use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;

use super::{DeliveryFailure, ListenerKind, SmtpEvent, SmtpSession};
use crate::auth::LocalDirectory;
use crate::delivery::{self, DeliveryError, LocalMessage};
use crate::net::{Connection, Flow, ProtocolSession, SessionDriver};
use crate::runtime::{Core, Protocol};

/// The session bound to the directory it resolves recipients with.
struct Resolving<'a> {
    session: &'a mut SmtpSession,
    directory: &'a LocalDirectory,
}

impl ProtocolSession for Resolving<'_> {
    type Event = SmtpEvent;

    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<SmtpEvent>) {
        match self.session.feed(input, out, self.directory) {
            (used, SmtpEvent::NeedInput) => (used, None),
            (used, event) => (used, Some(event)),
        }
    }
    fn is_idle(&self) -> bool {
        self.session.is_idle()
    }
    fn on_timeout(&mut self, out: &mut Vec<u8>) {
        self.session.timeout(out)
    }
    fn on_shutdown(&mut self, out: &mut Vec<u8>) {
        self.session.shutdown(out)
    }
}

struct SmtpDriver<'a> {
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
            let mut bound = Resolving {
                session: &mut self.session,
                directory: &services.directory,
            };
            let event = match conn
                .next_event(&mut bound, services.timeouts, &self.core.shutdown)
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
                        .authenticate(self.peer, &username, &password)
                        .await;
                    self.session.auth_result(outcome, conn.output());
                }
                SmtpEvent::Deliver(tx) => {
                    let accounts = tx
                        .recipients
                        .iter()
                        .flat_map(|(_, accounts)| accounts.iter().map(String::as_str))
                        .collect();
                    let result = delivery::deliver(
                        &services.store,
                        LocalMessage {
                            mail_from: &tx.mail_from,
                            accounts,
                            message: &tx.message,
                        },
                    )
                    .await
                    .map_err(|DeliveryError::Temporary(why)| {
                        tracing::warn!(error = %why, "delivery failed");
                        DeliveryFailure::Temporary(why)
                    });
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
    let mut driver = SmtpDriver {
        session: SmtpSession::new(
            services.smtp.clone(),
            kind,
            peer,
            implicit_tls,
            !implicit_tls,
        ),
        peer,
        core,
    };
    core.serve_connection(stream, implicit_tls, &mut driver)
        .await;
}
