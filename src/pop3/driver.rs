//! Runs a [`Pop3Session`] over a connection: authentication off the event loop, the maildrop
//! lock, RETR/TOP straight from the store, and the durable expunge at QUIT.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;

use super::{MaildropOpen, Pop3Event, Pop3Session, write_stuffed};
use crate::net::{Connection, Flow, ProtocolSession, SessionDriver};
use crate::runtime::{Core, Protocol, Services};
use crate::store::{MailStore, MailboxSnapshot, StoreError};

const LOCK_SHARDS: usize = 16;

/// Messages at least this large are written straight from their buffer instead of being
/// copied behind the queued replies.
const DIRECT_SEND_BYTES: usize = 64 * 1024;

/// Maildrops with a POP3 session in TRANSACTION state (RFC 1939 §8: one at a time).
/// Split over shards so logins on different cores rarely share a lock.
pub struct MaildropLocks {
    shards: Vec<Mutex<HashSet<String>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for MaildropLocks {
    fn default() -> Self {
        MaildropLocks {
            shards: (0..LOCK_SHARDS)
                .map(|_| Mutex::new(HashSet::new()))
                .collect(),
            hasher: Default::default(),
        }
    }
}

impl MaildropLocks {
    fn shard(&self, account: &str) -> &Mutex<HashSet<String>> {
        &self.shards[self.hasher.hash_one(account) as usize % LOCK_SHARDS]
    }

    fn try_lock(&self, account: &str) -> bool {
        let mut held = self
            .shard(account)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        held.insert(account.to_string())
    }

    fn unlock(&self, account: &str) {
        let mut held = self
            .shard(account)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        held.remove(account);
    }
}

impl ProtocolSession for Pop3Session {
    type Event = Pop3Event;

    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<Pop3Event>) {
        match Pop3Session::feed(self, input, out) {
            (used, Pop3Event::NeedInput) => (used, None),
            (used, event) => (used, Some(event)),
        }
    }
    fn is_idle(&self) -> bool {
        // A POP3 session changes nothing until QUIT, so closing it never loses work.
        true
    }
    fn on_timeout(&mut self, out: &mut Vec<u8>) {
        self.timeout(out)
    }
    fn on_shutdown(&mut self, out: &mut Vec<u8>) {
        self.shutdown(out)
    }
}

struct Pop3Driver<'a> {
    protocol: Protocol,
    session: Pop3Session,
    peer: SocketAddr,
    core: &'a Core,
    /// The locked maildrop, with which messages need dot-stuffing (by UID, sorted).
    maildrop: Option<Maildrop>,
}

struct Maildrop {
    account: String,
    needs_stuffing: Vec<(u32, bool)>,
    /// Kept to give the maildrop lock back on drop.
    services: Arc<Services>,
}

impl Drop for Maildrop {
    fn drop(&mut self) {
        self.services.pop3_locks.unlock(&self.account);
    }
}

impl Pop3Driver<'_> {
    fn open_maildrop(&mut self, account: String) -> MaildropOpen {
        let services = &self.core.services;
        if !services.pop3_locks.try_lock(&account) {
            return MaildropOpen::InUse;
        }
        let snapshot = match services.store.snapshot(&account, "INBOX") {
            Ok(s) => s,
            // No mail delivered yet: an empty maildrop.
            Err(StoreError::NoSuchMailbox) => MailboxSnapshot {
                id: 0,
                uidvalidity: 0,
                uidnext: 1,
                highest_modseq: 0,
                messages: Vec::new(),
            },
            Err(e) => {
                services.pop3_locks.unlock(&account);
                return MaildropOpen::Failed(e);
            }
        };
        self.maildrop = Some(Maildrop {
            account,
            needs_stuffing: snapshot
                .messages
                .iter()
                .map(|m| (m.uid, m.needs_dot_stuffing))
                .collect(),
            services: services.clone(),
        });
        MaildropOpen::Ok(snapshot)
    }

    /// RETR/TOP: the reply line is already queued; the message follows it.
    async fn send_message<S: AsyncReadRent + AsyncWriteRent>(
        &mut self,
        conn: &mut Connection<S>,
        uid: u32,
        top_lines: Option<u32>,
    ) -> std::io::Result<()> {
        let Some(maildrop) = &self.maildrop else {
            return Err(std::io::Error::other("RETR without a maildrop"));
        };
        let bytes = match self
            .core
            .services
            .store
            .read_body(&maildrop.account, "INBOX", uid)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                // The +OK line is already out; the only safe move is to drop the connection.
                tracing::warn!(error = %e, uid, "reading message for RETR");
                return Err(std::io::Error::other(e.to_string()));
            }
        };
        let stuffing = maildrop
            .needs_stuffing
            .binary_search_by_key(&uid, |&(u, _)| u)
            .map(|i| maildrop.needs_stuffing[i].1)
            .unwrap_or(true);
        if top_lines.is_none() && !stuffing && bytes.ends_with(b"\r\n") {
            if bytes.len() >= DIRECT_SEND_BYTES {
                // Nothing to escape: send the stored bytes as they are, without another copy.
                conn.write_owned(bytes).await?;
            } else {
                // Small messages ride along with the replies around them: one write (and one
                // TLS record) for a pipelined burst costs less than a write per message.
                conn.output().extend_from_slice(&bytes);
            }
            conn.output().extend_from_slice(b".\r\n");
        } else {
            write_stuffed(&bytes, top_lines, conn.output());
        }
        Ok(())
    }
}

impl SessionDriver for Pop3Driver<'_> {
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
        let services = self.core.services.clone();
        let mut pending: Option<Pop3Event> = None;
        loop {
            let Some(event) = conn
                .next_event_after(
                    &mut pending,
                    &mut self.session,
                    services.timeouts,
                    &self.core.shutdown,
                )
                .await
            else {
                return Flow::Closed;
            };
            match event {
                Pop3Event::NeedInput => {}
                Pop3Event::Authenticate { username, password } => {
                    let outcome = self
                        .core
                        .authenticate(self.protocol, self.peer, &username, &password)
                        .await;
                    pending = self.session.auth_result(outcome, conn.output());
                }
                Pop3Event::OpenMaildrop { account } => {
                    let opened = self.open_maildrop(account);
                    self.session.maildrop_opened(opened, conn.output());
                }
                Pop3Event::Send { uid, top_lines } => {
                    if self.send_message(conn, uid, top_lines).await.is_err() {
                        return Flow::Closed;
                    }
                }
                Pop3Event::Commit { expunge_uids } => {
                    let result = match &self.maildrop {
                        Some(m) if !expunge_uids.is_empty() => services
                            .store
                            .expunge(&m.account, "INBOX", &expunge_uids)
                            .await
                            .map(drop),
                        _ => Ok(()),
                    };
                    self.maildrop = None;
                    self.session.commit_result(result, conn.output());
                    let _ = conn.flush().await;
                    return Flow::Closed;
                }
                Pop3Event::StartTls => return conn.finish(Flow::StartTls).await,
                Pop3Event::Close => return conn.finish(Flow::Closed).await,
            }
        }
    }
}

/// Serves one POP3 connection on port 110 (STLS) or 995 (implicit TLS).
pub async fn serve(protocol: Protocol, stream: TcpStream, peer: SocketAddr, core: &Core) {
    let services = &core.services;
    let implicit_tls = protocol == Protocol::Pop3s;
    let mut driver = Pop3Driver {
        protocol,
        session: Pop3Session::new(services.pop3.clone(), implicit_tls, !implicit_tls),
        peer,
        core,
        maildrop: None,
    };
    core.serve_connection(stream, implicit_tls, &mut driver)
        .await;
}
