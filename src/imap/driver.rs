//! Runs an [`ImapSession`] over a connection: authentication off the event loop, commands
//! against the store (long FETCH responses streamed in chunks), and IDLE, where mailbox
//! changes are pushed while the client's `DONE` is awaited. Once NOTIFY (RFC 5465) is set,
//! the same pushing goes on whenever the client is silent between commands, from the selected
//! mailbox's and the account's change subscriptions (`NotifyPusher`).
//!
//! A session talks to the store from whichever core accepted it: the store's writes go
//! through the owning shard's log writer over a channel and its reads take only that shard's
//! index lock, so no connection has to migrate and no global lock is taken.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;

use super::session::State;
use super::{ImapConfig, ImapEvent, ImapSession, Step};
use crate::net::conn::Pusher;
use crate::net::{Connection, Ended, Flow, ProtocolSession, SessionDriver, Timeouts};
use crate::runtime::{Core, Protocol};
use crate::store::{AccountChange, AccountChangeReceiver, ChangeReceiver, LogStore};

/// RFC 9051 §5.4: an idle client may be logged out only after at least 30 minutes.
const MIN_AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);

impl ProtocolSession for ImapSession {
    type Event = ImapEvent;

    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<ImapEvent>) {
        ImapSession::feed(self, input, out)
    }
    fn is_idle(&self) -> bool {
        ImapSession::is_idle(self)
    }
    fn on_timeout(&mut self, out: &mut Vec<u8>) {
        ImapSession::on_timeout(self, out)
    }
    fn on_shutdown(&mut self, out: &mut Vec<u8>) {
        ImapSession::on_shutdown(self, out)
    }
    fn held_bytes(&self) -> usize {
        ImapSession::held_bytes(self)
    }
    fn shed_transfer(&mut self) {
        ImapSession::shed_transfer(self)
    }
}

/// During IDLE: wakes on the selected mailbox's changes and reports them.
struct MailboxPusher<'a> {
    session: &'a mut ImapSession,
    changes: Option<ChangeReceiver>,
    store: &'a LogStore,
}

impl Pusher for MailboxPusher<'_> {
    async fn ready(&mut self) {
        match self.changes.as_mut() {
            Some(rx) => {
                if rx.recv().await.is_err() {
                    // The mailbox is gone; nothing more will come.
                    self.changes = None;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }

    fn push(&mut self, out: &mut Vec<u8>) {
        // A notification is only a wake-up: drain the others, then report the mailbox's state.
        if let Some(rx) = self.changes.as_mut() {
            while rx.try_recv().is_ok() {}
        }
        self.session.idle_update(self.store, out);
    }
}

/// With NOTIFY set (between commands and in IDLE): wakes on the selected mailbox's changes
/// and on the account's, and reports what NOTIFY asks for.
struct NotifyPusher<'a> {
    session: &'a mut ImapSession,
    selected: Option<ChangeReceiver>,
    account: Option<AccountChangeReceiver>,
    store: &'a LogStore,
    selected_changed: bool,
    changes: Vec<AccountChange>,
}

/// The next message of `rx`; never resolves once it is closed (or absent). Cancel-safe.
async fn next_of<T>(rx: &mut Option<futures_channel::mpsc::UnboundedReceiver<T>>) -> Option<T> {
    let got = match rx.as_mut() {
        Some(rx) => rx.recv().await.ok(),
        None => std::future::pending().await,
    };
    if got.is_none() {
        *rx = None;
    }
    got
}

impl Pusher for NotifyPusher<'_> {
    async fn ready(&mut self) {
        let sel = next_of(&mut self.selected);
        let acc = next_of(&mut self.account);
        monoio::select! {
            // A closed receiver (the mailbox is gone) is reported too: the sync says CLOSED.
            _ = sel => self.selected_changed = true,
            change = acc => self.changes.extend(change),
        }
    }

    fn push(&mut self, out: &mut Vec<u8>) {
        if let Some(rx) = self.selected.as_mut() {
            while rx.try_recv().is_ok() {
                self.selected_changed = true;
            }
        }
        if let Some(rx) = self.account.as_mut() {
            while let Ok(change) = rx.try_recv() {
                self.changes.push(change);
            }
        }
        self.session
            .notify_update(self.store, self.selected_changed, &self.changes, out);
        self.selected_changed = false;
        self.changes.clear();
    }
}

struct ImapDriver<'a> {
    protocol: Protocol,
    session: ImapSession,
    peer: SocketAddr,
    core: &'a Core,
    timeouts: Timeouts,
    /// When a connection that has not logged in is logged out.
    prelogin_deadline: Instant,
}

impl ImapDriver<'_> {
    /// Before login, a connection has the pre-login autologout in all, counted from accept
    /// (RFC 9051 §5.4 only protects authenticated sessions with its 30 minutes). A deadline
    /// rather than a per-read timeout: a client that drips a byte or a NOOP now and then
    /// would otherwise hold its connection, and a connection slot, without ever logging in.
    /// A login is an event, so the next wait after it already uses the normal timeouts.
    fn current_timeouts(&self) -> Timeouts {
        let deadline =
            (self.session.state() == State::NotAuthenticated).then_some(self.prelogin_deadline);
        Timeouts {
            deadline,
            ..self.timeouts
        }
    }

    /// Carries out one store command, streaming long responses. Returns the event a pipelined
    /// command left pending after IDLE, or `Err` when the connection must close.
    async fn command<S: AsyncReadRent + AsyncWriteRent + Split>(
        &mut self,
        conn: &mut Connection<S>,
        command: super::ImapCommand,
    ) -> Result<Option<ImapEvent>, ()> {
        let store = &self.core.services.store;
        let mut step = self.session.execute(store, command, conn.output()).await;
        loop {
            match step {
                Step::Done => return Ok(None),
                Step::Flush => {
                    conn.flush().await.map_err(drop)?;
                    step = self.session.resume(store, conn.output()).await;
                }
                Step::Close => {
                    let _ = conn.flush().await;
                    return Err(());
                }
                Step::Idle => return self.idle(conn).await,
            }
        }
    }

    /// IDLE: push changes until the client sends `DONE` (or leaves, or times out).
    async fn idle<S: AsyncReadRent + AsyncWriteRent + Split>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Result<Option<ImapEvent>, ()> {
        let store = &self.core.services.store;
        loop {
            // Input already buffered may hold DONE (and pipelined commands after it).
            let event = conn.feed(&mut self.session);
            if event.is_some() || !self.session.is_idling() {
                return Ok(event);
            }
            conn.flush().await.map_err(drop)?;
            let read = if self.session.notifying() {
                self.read_notifying(conn).await
            } else {
                let changes = self.session.take_change_receiver();
                let mut pusher = MailboxPusher {
                    session: &mut self.session,
                    changes,
                    store,
                };
                let read = conn
                    .read_while_pushing(&mut pusher, self.timeouts.idle, &self.core.shutdown)
                    .await;
                if let Some(rx) = pusher.changes.take() {
                    self.session.restore_change_receiver(rx);
                }
                read
            };
            self.go_on_after(conn, read).await?;
        }
    }
}

impl ImapDriver<'_> {
    /// After a wait for input that pushed changes: go on, or end the session (the client
    /// left, or is told goodbye on a timeout or a shutdown).
    async fn go_on_after<S: AsyncReadRent + AsyncWriteRent + Split>(
        &mut self,
        conn: &mut Connection<S>,
        read: Result<usize, Ended>,
    ) -> Result<(), ()> {
        match read {
            Ok(0) => Err(()),
            Ok(_) => Ok(()),
            Err(why) => {
                if matches!(why, Ended::TimedOut | Ended::Shutdown) {
                    conn.say_goodbye(&mut self.session, &why).await;
                }
                Err(())
            }
        }
    }

    /// Waits for input while pushing what NOTIFY asks for.
    async fn read_notifying<S: AsyncReadRent + AsyncWriteRent + Split>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Result<usize, Ended> {
        let selected = self.session.take_change_receiver();
        let account = self.session.take_account_changes();
        let mut pusher = NotifyPusher {
            session: &mut self.session,
            selected,
            account,
            store: &self.core.services.store,
            selected_changed: false,
            changes: Vec::new(),
        };
        let read = conn
            .read_while_pushing(&mut pusher, self.timeouts.idle, &self.core.shutdown)
            .await;
        let (selected, account) = (pusher.selected.take(), pusher.account.take());
        if let Some(rx) = selected {
            self.session.restore_change_receiver(rx);
        }
        if let Some(rx) = account {
            self.session.restore_account_changes(rx);
        }
        read
    }

    /// RFC 5465 §3: with NOTIFY set, notifications go out while the client is silent between
    /// commands, not only in IDLE. Returns the next event, or `None` when a command has begun
    /// arriving (the normal read takes it from there, without pushes in the middle of it).
    async fn between_commands<S: AsyncReadRent + AsyncWriteRent + Split>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Result<Option<ImapEvent>, ()> {
        loop {
            let event = conn.feed(&mut self.session);
            if event.is_some() || !self.session.is_idle() || !self.session.notifying() {
                return Ok(event);
            }
            conn.flush().await.map_err(drop)?;
            let read = self.read_notifying(conn).await;
            self.go_on_after(conn, read).await?;
        }
    }
}

impl SessionDriver for ImapDriver<'_> {
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
        let mut pending: Option<ImapEvent> = None;
        loop {
            if pending.is_none() && self.session.notifying() {
                match self.between_commands(conn).await {
                    Ok(event) => pending = event,
                    Err(()) => return Flow::Closed,
                }
            }
            let timeouts = self.current_timeouts();
            let Some(event) = conn
                .next_event_after(
                    &mut pending,
                    &mut self.session,
                    timeouts,
                    &self.core.shutdown,
                )
                .await
            else {
                return Flow::Closed;
            };
            match event {
                ImapEvent::Command(command) => match self.command(conn, *command).await {
                    Ok(next) => pending = next,
                    Err(()) => return Flow::Closed,
                },
                ImapEvent::Authenticate { username, password } => {
                    let outcome = self
                        .core
                        .authenticate(self.protocol, self.peer, &username, &password)
                        .await;
                    pending = self.session.auth_result(outcome, conn.output());
                }
                ImapEvent::StartTls => return conn.finish(Flow::StartTls).await,
                ImapEvent::Compress => {
                    let level = self.session.config.limits.compress_level;
                    if conn.start_compression(level).await.is_err() {
                        return Flow::Closed;
                    }
                    self.session.compression_started();
                }
                ImapEvent::Close => return conn.finish(Flow::Closed).await,
            }
        }
    }
}

/// Serves one IMAP connection on port 143 (STARTTLS) or 993 (implicit TLS).
pub async fn serve(protocol: Protocol, stream: TcpStream, peer: SocketAddr, core: &Core) {
    let services = &core.services;
    let implicit_tls = protocol == Protocol::Imaps;
    let config = ImapConfig {
        starttls: !implicit_tls,
        ..services.imap.clone()
    };
    let timeouts = Timeouts {
        idle: services.timeouts.idle.max(MIN_AUTOLOGOUT),
        ..services.timeouts
    };
    let mut driver = ImapDriver {
        protocol,
        prelogin_deadline: Instant::now() + config.limits.prelogin_timeout,
        session: ImapSession::new(config, implicit_tls),
        peer,
        core,
        timeouts,
    };
    core.serve_connection(stream, implicit_tls, &mut driver)
        .await;
}
