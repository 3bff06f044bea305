//! The delivery scheduler of one core: it works the outbound queue of the core's store shard,
//! on the core's own event loop (thread-per-core all the way: no pool, no locks between
//! cores).
//!
//! * It learns of queued messages from the store's queue events (a message enqueued by an
//!   SMTP session, a report, an operator's hold/release/flush) and keeps a timetable of when
//!   each is due.
//! * A due message is split by recipient domain; each domain is routed (configured route,
//!   smarthost, or MX) to a [`Destination`], whose *site* groups connections and limits.
//!   Recipients of one message for one site share one transaction ([`Job`]).
//! * Each site has a queue of jobs and up to `max_connections_per_site` connections; a
//!   connection takes jobs one after another (up to `max_messages_per_connection`), so
//!   connections are reused across messages. A global cap bounds connections per core.
//! * The result of every job is written to the store (durably, before the recipient is
//!   forgotten) together with any report for the sender, then logged in Postfix's shape.
//! * Recipients whose domain is local (reports for local senders) go straight into the
//!   mailbox.
//!
//! Limits configured for all cores are split evenly between them (each core has its own
//! queue): a site limit of 20 on 2 cores is 10 per core.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::outcome::{Attempt, AttemptKind};
use super::{Outbound, QueueConfig};
use crate::auth::{Directory, Recipient};
use crate::delivery::dsn;
use crate::delivery::pipeline::report_message;
use crate::delivery::trace::{delivery_headers, unix_now};
use crate::net::ShutdownSignal;
use crate::relay::client::{ClientConfig, OutboundMessage, OutboundRecipient, SmtpClient};
use crate::relay::route::Destination;
use crate::store::{
    Flags, LogStore, MailStore, MessageBytes, NewMessage, QueueEvent, QueueStore, QueueUpdate,
    QueuedMessage, RecipientState, Ret,
};

/// Messages being worked on at once per core; the rest wait in the timetable.
const MAX_IN_FLIGHT: usize = 20_000;
/// How long a connection with nothing to send stays open for more jobs.
const CONNECTION_IDLE: Duration = Duration::from_millis(500);

/// Recipients of one message for one site: one transaction.
#[derive(Debug)]
struct Job {
    id: String,
    recipients: Vec<u32>,
}

struct Site {
    destination: Destination,
    jobs: VecDeque<Job>,
    connections: usize,
    /// Rate limit window: start and messages sent in it.
    window: (Instant, u32),
}

#[derive(Default)]
struct Timetable {
    due: BTreeSet<(i64, String)>,
    when: HashMap<String, i64>,
}

impl Timetable {
    fn set(&mut self, id: &str, at: i64) {
        if let Some(old) = self.when.insert(id.to_string(), at) {
            self.due.remove(&(old, id.to_string()));
        }
        self.due.insert((at, id.to_string()));
    }
    fn remove(&mut self, id: &str) {
        if let Some(old) = self.when.remove(id) {
            self.due.remove(&(old, id.to_string()));
        }
    }
    fn next(&self) -> Option<i64> {
        self.due.first().map(|(t, _)| *t)
    }
    fn pop_due(&mut self, now: i64) -> Option<String> {
        let (t, _) = self.due.first()?;
        if *t > now {
            return None;
        }
        let (_, id) = self.due.pop_first()?;
        self.when.remove(&id);
        Some(id)
    }
}

#[derive(Default)]
struct State {
    timetable: Timetable,
    /// Messages in an attempt round: id → jobs still running.
    in_flight: HashMap<String, usize>,
    /// Flushed by the operator: try every waiting recipient, whatever its next attempt.
    forced: HashSet<String>,
    sites: HashMap<String, Site>,
    connections: usize,
}

pub struct Scheduler {
    shard: usize,
    store: LogStore,
    directory: Arc<dyn Directory>,
    outbound: Arc<Outbound>,
    state: RefCell<State>,
    /// Transactions under way, so shutdown can wait for them.
    busy: Cell<usize>,
    shutdown: ShutdownSignal,
}

impl Scheduler {
    pub fn new(
        shard: usize,
        store: LogStore,
        directory: Arc<dyn Directory>,
        outbound: Arc<Outbound>,
        shutdown: ShutdownSignal,
    ) -> Rc<Scheduler> {
        Rc::new(Scheduler {
            shard,
            store,
            directory,
            outbound,
            state: RefCell::new(State::default()),
            busy: Cell::new(0),
            shutdown,
        })
    }

    fn config(&self) -> &QueueConfig {
        &self.outbound.queue
    }

    /// Transactions or local deliveries under way on this core.
    pub fn busy(&self) -> usize {
        self.busy.get()
    }

    /// Runs until shutdown: loads the shard's queue, then follows its events and timetable.
    pub async fn run(self: Rc<Self>) {
        // Subscribe before reading, so nothing enqueued in between is missed.
        let mut events = self.store.queue_subscribe(self.shard);
        for m in self.store.queue_list(self.shard) {
            self.schedule(&m);
        }
        loop {
            let wait = self.time_to_next();
            monoio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => self.on_event(ev),
                    Err(_) => return,
                },
                _ = monoio::time::sleep(wait) => {}
                _ = self.shutdown.wait() => return,
            }
            while let Ok(ev) = events.try_recv() {
                self.on_event(ev);
            }
            self.dispatch_due();
        }
    }

    fn time_to_next(&self) -> Duration {
        let now = unix_now() as i64;
        let st = self.state.borrow();
        if st.in_flight.len() >= MAX_IN_FLIGHT {
            return Duration::from_millis(100);
        }
        match st.timetable.next() {
            Some(t) if t <= now => Duration::ZERO,
            // Whole seconds are the queue's resolution; wake at most a second late.
            Some(t) => Duration::from_secs((t - now) as u64).min(Duration::from_secs(1)),
            None => Duration::from_secs(1),
        }
    }

    fn on_event(&self, ev: QueueEvent) {
        match ev {
            QueueEvent::Changed(id) => {
                if self.state.borrow().in_flight.contains_key(&id) {
                    return; // rescheduled when its round ends
                }
                match self.store.queued(self.shard, &id) {
                    Some(m) => self.schedule(&m),
                    None => self.state.borrow_mut().timetable.remove(&id),
                }
            }
            QueueEvent::Gone(id) => {
                let mut st = self.state.borrow_mut();
                st.timetable.remove(&id);
                st.forced.remove(&id);
            }
            QueueEvent::Flush => {
                let now = unix_now() as i64;
                let mut st = self.state.borrow_mut();
                let ids: Vec<String> = st.timetable.when.keys().cloned().collect();
                for id in ids {
                    st.timetable.set(&id, now);
                    st.forced.insert(id);
                }
            }
        }
    }

    /// Puts a message in the timetable at its next attempt (or takes it out if held).
    fn schedule(&self, m: &QueuedMessage) {
        let mut st = self.state.borrow_mut();
        match m.next_attempt() {
            Some(at) if !m.held => st.timetable.set(&m.id, at),
            _ => st.timetable.remove(&m.id),
        }
    }

    fn dispatch_due(self: &Rc<Self>) {
        let now = unix_now() as i64;
        loop {
            let id = {
                let mut st = self.state.borrow_mut();
                if st.in_flight.len() >= MAX_IN_FLIGHT {
                    return;
                }
                match st.timetable.pop_due(now) {
                    Some(id) => id,
                    None => return,
                }
            };
            let Some(m) = self.store.queued(self.shard, &id) else {
                continue;
            };
            let forced = self.state.borrow_mut().forced.remove(&id);
            if m.held {
                continue;
            }
            let due: Vec<u32> = m
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    !r.status.state.is_final() && (forced || r.status.next_attempt <= now)
                })
                .map(|(i, _)| i as u32)
                .collect();
            if due.is_empty() {
                self.schedule(&m);
                continue;
            }
            // Recipients by domain, each domain routed once.
            let mut by_domain: Vec<(String, Vec<u32>)> = Vec::new();
            for i in due {
                let domain = crate::delivery::router::domain_of(&m.recipients[i as usize].address);
                match by_domain.iter_mut().find(|(d, _)| *d == domain) {
                    Some((_, v)) => v.push(i),
                    None => by_domain.push((domain, vec![i])),
                }
            }
            self.state
                .borrow_mut()
                .in_flight
                .insert(id.clone(), by_domain.len());
            for (domain, recipients) in by_domain {
                let this = self.clone();
                let id = id.clone();
                monoio::spawn(async move { this.route_job(id, domain, recipients).await });
            }
        }
    }

    /// Routes one domain's recipients of a message and hands them to their site.
    async fn route_job(self: Rc<Self>, id: String, domain: String, recipients: Vec<u32>) {
        if self.directory.is_local_domain(&domain) {
            self.deliver_locally(&id, &recipients).await;
            return;
        }
        match self
            .outbound
            .routes
            .destination(&self.outbound.resolver, &domain)
            .await
        {
            Err(no_route) => {
                let kind = if no_route.permanent {
                    AttemptKind::Failed
                } else {
                    AttemptKind::Deferred
                };
                let attempt = Attempt::new(kind, no_route.reply, "none");
                let results = recipients.iter().map(|&i| (i, attempt.clone())).collect();
                self.finish_job(&id, results).await;
            }
            Ok(destination) => {
                // Join a job of the same message for the same site: one transaction.
                let start = {
                    let mut st = self.state.borrow_mut();
                    let site = st
                        .sites
                        .entry(destination.site.clone())
                        .or_insert_with(|| Site {
                            destination: destination.clone(),
                            jobs: VecDeque::new(),
                            connections: 0,
                            window: (Instant::now(), 0),
                        });
                    let merged = match site.jobs.iter_mut().find(|j| j.id == id) {
                        Some(j) => {
                            j.recipients.extend(recipients.iter().copied());
                            true
                        }
                        None => {
                            site.jobs.push_back(Job {
                                id: id.clone(),
                                recipients,
                            });
                            false
                        }
                    };
                    if merged && let Some(n) = st.in_flight.get_mut(&id) {
                        *n -= 1;
                    }
                    self.may_connect(&st, &destination.site)
                };
                if start {
                    self.start_connection(destination.site);
                }
            }
        }
    }

    /// A new connection to `site` is wanted and allowed.
    fn may_connect(&self, st: &State, site: &str) -> bool {
        let cfg = self.config();
        let Some(s) = st.sites.get(site) else {
            return false;
        };
        !s.jobs.is_empty()
            && s.connections < cfg.max_connections_per_site
            && st.connections < cfg.max_connections
            // One connection per waiting job at most.
            && s.connections < s.jobs.len()
    }

    fn start_connection(self: &Rc<Self>, site: String) {
        {
            let mut st = self.state.borrow_mut();
            st.connections += 1;
            if let Some(s) = st.sites.get_mut(&site) {
                s.connections += 1;
            }
        }
        let this = self.clone();
        monoio::spawn(async move { this.connection(site).await });
    }

    /// One connection to a site: connect, then send its jobs until none is left, the
    /// per-connection limit is reached, or the connection breaks.
    async fn connection(self: Rc<Self>, site_key: String) {
        let destination = match self.state.borrow().sites.get(&site_key) {
            Some(s) => s.destination.clone(),
            None => return,
        };
        let config = ClientConfig {
            tls: destination.tls,
            credentials: destination.credentials.clone(),
            ..self.outbound.client.clone()
        };
        self.busy.set(self.busy.get() + 1);
        let connected = self.connect(&destination, &config).await;
        self.busy.set(self.busy.get() - 1);
        match connected {
            Err(attempt) => {
                // Every job waiting for this site would meet the same wall: answer them all.
                let jobs: Vec<Job> = self
                    .state
                    .borrow_mut()
                    .sites
                    .get_mut(&site_key)
                    .map(|s| s.jobs.drain(..).collect())
                    .unwrap_or_default();
                for job in jobs {
                    let results = job
                        .recipients
                        .iter()
                        .map(|&i| (i, attempt.clone()))
                        .collect();
                    self.finish_job(&job.id, results).await;
                }
            }
            Ok((mut client, relay)) => {
                let mut sent = 0;
                loop {
                    let Some(job) = self.next_job(&site_key).await else {
                        break;
                    };
                    self.throttle(&site_key).await;
                    self.busy.set(self.busy.get() + 1);
                    let results = self.send_job(&mut client, &relay, &job).await;
                    self.busy.set(self.busy.get() - 1);
                    self.finish_job(&job.id, results).await;
                    sent += 1;
                    if sent >= self.config().max_messages_per_connection
                        || !client.is_reusable()
                        || self.shutdown.is_triggered()
                    {
                        break;
                    }
                }
                client.quit().await;
            }
        }
        let restart = {
            let mut st = self.state.borrow_mut();
            st.connections -= 1;
            if let Some(s) = st.sites.get_mut(&site_key) {
                s.connections -= 1;
            }
            let restart = self.may_connect(&st, &site_key);
            if let Some(s) = st.sites.get(&site_key)
                && s.connections == 0
                && s.jobs.is_empty()
            {
                st.sites.remove(&site_key);
            }
            restart && !self.shutdown.is_triggered()
        };
        if restart {
            self.start_connection(site_key);
        }
    }

    /// The site's next job, waiting briefly for one when there is none yet.
    async fn next_job(&self, site: &str) -> Option<Job> {
        let deadline = Instant::now() + CONNECTION_IDLE;
        loop {
            if let Some(job) = self
                .state
                .borrow_mut()
                .sites
                .get_mut(site)
                .and_then(|s| s.jobs.pop_front())
            {
                return Some(job);
            }
            if Instant::now() >= deadline || self.shutdown.is_triggered() {
                return None;
            }
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for the site's per-minute budget.
    async fn throttle(&self, site: &str) {
        let limit = self.config().max_messages_per_minute_per_site;
        if limit == 0 {
            return;
        }
        loop {
            let wait = {
                let mut st = self.state.borrow_mut();
                let Some(s) = st.sites.get_mut(site) else {
                    return;
                };
                let elapsed = s.window.0.elapsed();
                if elapsed >= Duration::from_secs(60) {
                    s.window = (Instant::now(), 0);
                }
                if s.window.1 < limit {
                    s.window.1 += 1;
                    return;
                }
                Duration::from_secs(60).saturating_sub(elapsed)
            };
            monoio::time::sleep(wait.min(Duration::from_secs(1))).await;
        }
    }

    /// Connects to the first host of the destination that answers.
    async fn connect(
        &self,
        destination: &Destination,
        config: &ClientConfig,
    ) -> Result<(SmtpClient, String), Attempt> {
        let mut last = Attempt::new(
            AttemptKind::Deferred,
            "451 4.4.1 no host to connect to",
            "none",
        );
        let mut looped = false;
        for host in &destination.hosts {
            let addrs = match host.ip {
                Some(ip) => vec![ip],
                None => match self.outbound.resolver.ips(&host.name).await {
                    crate::dns::IpLookup::Addrs(a) => a,
                    crate::dns::IpLookup::NotFound => {
                        last = Attempt::new(
                            AttemptKind::Deferred,
                            format!("451 4.4.4 host {} not found", host.name),
                            "none",
                        );
                        continue;
                    }
                    crate::dns::IpLookup::TempFail(why) => {
                        last = Attempt::new(
                            AttemptKind::Deferred,
                            format!("451 4.4.3 DNS lookup of {} failed: {why}", host.name),
                            "none",
                        );
                        continue;
                    }
                },
            };
            for ip in addrs {
                let addr = std::net::SocketAddr::new(ip, host.port);
                let relay = format!("{}[{}]:{}", host.name, ip, host.port);
                if self.outbound.is_self(addr) {
                    looped = true;
                    continue;
                }
                match SmtpClient::connect(addr, &host.name, config).await {
                    Ok(c) => return Ok((c, relay)),
                    Err(e) => {
                        tracing::debug!(relay, error = %e, "connection failed");
                        last = Attempt::of_error(&e, &relay);
                        // A 5xx greeting or EHLO is the host's answer for every message.
                        if e.is_permanent() {
                            return Err(last);
                        }
                    }
                }
            }
        }
        if looped && last.relay == "none" {
            // Every address found is this server: the mail would come back forever.
            return Err(Attempt::new(
                AttemptKind::Failed,
                format!(
                    "554 5.4.6 mail for {} loops back to myself",
                    destination.hosts.first().map_or("?", |h| h.name.as_str())
                ),
                "none",
            ));
        }
        // A host that could not be reached is a temporary failure, whatever it said last.
        if last.kind == AttemptKind::Failed {
            last.kind = AttemptKind::Deferred;
        }
        Err(last)
    }

    /// Sends one job over an open connection.
    async fn send_job(
        &self,
        client: &mut SmtpClient,
        relay: &str,
        job: &Job,
    ) -> Vec<(u32, Attempt)> {
        let fail_all = |attempt: Attempt| -> Vec<(u32, Attempt)> {
            job.recipients
                .iter()
                .map(|&i| (i, attempt.clone()))
                .collect()
        };
        let Some(m) = self.store.queued(self.shard, &job.id) else {
            return Vec::new(); // removed meanwhile
        };
        let body = match self.store.queue_bytes(self.shard, &job.id) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                return fail_all(Attempt::new(
                    AttemptKind::Deferred,
                    format!("451 4.3.0 queue file unreadable: {e}"),
                    "none",
                ));
            }
        };
        let notify: Vec<Option<String>> = job
            .recipients
            .iter()
            .map(|&i| m.recipients[i as usize].notify.param())
            .collect();
        let rcpts: Vec<OutboundRecipient<'_>> = job
            .recipients
            .iter()
            .zip(&notify)
            .map(|(&i, n)| {
                let r = &m.recipients[i as usize];
                OutboundRecipient {
                    address: &r.address,
                    notify: n.as_deref(),
                    orcpt: r.orcpt.as_deref(),
                }
            })
            .collect();
        let message = OutboundMessage {
            mail_from: &m.envelope.mail_from,
            recipients: &rcpts,
            ret: m.envelope.ret.map(|r| match r {
                Ret::Full => "FULL",
                Ret::Headers => "HDRS",
            }),
            envid: m.envelope.envid.as_deref(),
            body,
            needs_smtputf8: m.envelope.smtputf8,
            eight_bit: m.envelope.eight_bit,
        };
        match client.send(&message).await {
            Ok(result) => {
                let dsn = client.capabilities().dsn;
                job.recipients
                    .iter()
                    .copied()
                    .zip(Attempt::of_transaction(&result, relay, dsn))
                    .collect()
            }
            Err(e) => fail_all(Attempt::of_error(&e, relay)),
        }
    }

    /// Delivers recipients in local domains straight into their mailboxes.
    async fn deliver_locally(&self, id: &str, recipients: &[u32]) {
        let Some(m) = self.store.queued(self.shard, id) else {
            self.round_done(id);
            return;
        };
        let mut results = Vec::new();
        let mut appends = Vec::new();
        let mut targets = Vec::new();
        for &i in recipients {
            let address = &m.recipients[i as usize].address;
            match self.directory.resolve(address) {
                Recipient::Local(accounts) => {
                    targets.push((i, accounts.join(",")));
                    for a in accounts {
                        if !appends.iter().any(|n: &NewMessage| n.account == a) {
                            appends.push(local_copy(a, &m.envelope.mail_from));
                        }
                    }
                }
                _ => results.push((
                    i,
                    Attempt::new(
                        AttemptKind::Failed,
                        format!("550 5.1.1 <{address}>: no such local mailbox"),
                        "local",
                    ),
                )),
            }
        }
        if !appends.is_empty() {
            let outcome = match self.store.queue_bytes(self.shard, id) {
                Ok(bytes) => {
                    let body = Bytes::from(bytes);
                    for a in &mut appends {
                        a.bytes.body = body.clone();
                    }
                    self.store.append(appends).await.map(|_| ())
                }
                Err(e) => Err(e),
            };
            for (i, target) in targets {
                results.push((
                    i,
                    match &outcome {
                        Ok(()) => Attempt::new(
                            AttemptKind::Sent,
                            format!("250 2.0.0 delivered to {target}"),
                            "local",
                        ),
                        Err(e) => Attempt::new(
                            AttemptKind::Deferred,
                            format!("451 4.3.0 local delivery failed: {e}"),
                            "local",
                        ),
                    },
                ));
            }
        }
        self.finish_job(id, results).await;
    }

    /// Records a job's results durably (with any report for the sender), logs them, and ends
    /// the message's round when it was the last job.
    async fn finish_job(&self, id: &str, results: Vec<(u32, Attempt)>) {
        if let Some(m) = self.store.queued(self.shard, id)
            && !results.is_empty()
        {
            self.record(&m, &results).await;
        }
        self.round_done(id);
    }

    fn round_done(&self, id: &str) {
        let finished = {
            let mut st = self.state.borrow_mut();
            match st.in_flight.get_mut(id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    st.in_flight.remove(id);
                    true
                }
                None => false,
            }
        };
        if finished && let Some(m) = self.store.queued(self.shard, id) {
            self.schedule(&m);
        }
    }

    async fn record(&self, m: &QueuedMessage, results: &[(u32, Attempt)]) {
        let cfg = self.config();
        let now = unix_now() as i64;
        let mut update = QueueUpdate {
            id: m.id.clone(),
            ..Default::default()
        };
        let mut failed = Vec::new();
        let mut delayed = Vec::new();
        let mut relayed = Vec::new();
        for (i, attempt) in results {
            let Some(r) = m.recipients.get(*i as usize) else {
                continue;
            };
            let mut status = cfg.retry.next(&r.status, attempt, m.created, now);
            let label = match status.state {
                RecipientState::Delivered => "sent",
                RecipientState::Failed => "bounced",
                _ => "deferred",
            };
            tracing::info!(
                "{}: to=<{}>, relay={}, delay={}, dsn={}, status={} ({})",
                m.id,
                r.address,
                attempt.relay,
                now - m.created,
                dsn::status_of(&attempt.reply, status.state == RecipientState::Failed),
                label,
                attempt.reply
            );
            match status.state {
                RecipientState::Failed if r.notify.on_failure() => failed.push((*i, attempt)),
                RecipientState::Delivered
                    if r.notify.on_success()
                        && attempt.relay != "local"
                        && !attempt.next_hop_dsn =>
                {
                    relayed.push((*i, attempt))
                }
                RecipientState::Deferred
                    if r.notify.on_delay()
                        && cfg.retry.wants_delay_warning(&status, m.created, now) =>
                {
                    status.delay_warned = true;
                    delayed.push((*i, attempt));
                }
                _ => {}
            }
            update.recipients.push((*i, status));
        }
        let mut reports = Vec::new();
        if !m.envelope.mail_from.is_empty() {
            for (action, list) in [
                (dsn::Action::Failed, &failed),
                (dsn::Action::Delayed, &delayed),
                (dsn::Action::Relayed, &relayed),
            ] {
                if !list.is_empty()
                    && let Some(report) = self.report(m, action, list, now)
                {
                    tracing::info!(
                        "{}: sender {} notification: {}",
                        m.id,
                        match action {
                            dsn::Action::Failed => "non-delivery",
                            dsn::Action::Delayed => "delay",
                            _ => "delivery status",
                        },
                        report.id
                    );
                    reports.push(report);
                }
            }
        }
        if let Err(e) = self
            .store
            .deliver(Vec::new(), self.shard, reports, vec![update])
            .await
        {
            // Not recorded: the recipients stay as they were and are tried again (a
            // duplicate is better than a loss).
            tracing::error!("{}: could not record delivery results: {e}", m.id);
        }
    }

    fn report(
        &self,
        m: &QueuedMessage,
        action: dsn::Action,
        list: &[(u32, &Attempt)],
        now: i64,
    ) -> Option<crate::store::NewQueuedMessage> {
        let cfg = self.config();
        let original = self.store.queue_bytes(self.shard, &m.id).ok()?;
        let recipients = list
            .iter()
            .map(|(i, a)| {
                let r = &m.recipients[*i as usize];
                dsn::ReportedRecipient {
                    address: &r.address,
                    orcpt: r.orcpt.as_deref(),
                    action,
                    status: dsn::status_of(&a.reply, action == dsn::Action::Failed),
                    remote_mta: (a.relay != "none" && a.relay != "local").then(|| {
                        a.relay
                            .rsplit_once(':')
                            .map_or(a.relay.as_str(), |(h, _)| h)
                    }),
                    diagnostic: &a.reply,
                }
            })
            .collect();
        let report = dsn::Report {
            reporting_mta: &cfg.hostname,
            queue_id: &m.id,
            to: &m.envelope.mail_from,
            envid: m.envelope.envid.as_deref(),
            ret: m.envelope.ret,
            arrival: m.created,
            lifetime: Some(cfg.retry.lifetime),
            recipients,
            original: &original,
            return_limit: cfg.return_limit,
        };
        Some(report_message(&report, now))
    }
}

/// A local copy of a queued message for `account`; its body is filled in before the append.
fn local_copy(account: String, mail_from: &str) -> NewMessage {
    NewMessage {
        bytes: MessageBytes::new(delivery_headers(mail_from, &account), Bytes::new()),
        account,
        mailbox: "INBOX".into(),
        flags: Flags::default(),
        internal_date: unix_now() as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timetable_orders_and_replaces() {
        let mut t = Timetable::default();
        t.set("b", 20);
        t.set("a", 10);
        t.set("c", 30);
        t.set("c", 5);
        assert_eq!(t.next(), Some(5));
        assert_eq!(t.pop_due(10).as_deref(), Some("c"));
        assert_eq!(t.pop_due(10).as_deref(), Some("a"));
        assert_eq!(t.pop_due(10), None);
        t.remove("b");
        assert_eq!(t.next(), None);
        assert!(t.when.is_empty());
    }
}
