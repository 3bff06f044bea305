//! The ordered stages an accepted message goes through, and its two sinks.
//!
//! Stages, in order:
//! 1. *trace*: each local account's copy gets `Return-Path` and `Delivered-To` on top.
//! 2. *sign*: the copy that leaves through the outbound queue gets a `DKIM-Signature` when its
//!    `From:` domain has a key (signed once, on a signer thread, never on the event loop).
//!
//! Sinks: the local copies (mailbox store) and the queued copy (outbound queue) go to the store
//! in one call, which sends one request per shard; the queue entry is written on the shard of
//! the core that accepted the message (its scheduler then relays it), beside any local copies
//! that live there, in the same group commit. The call returns once everything is on disk.
//!
//! After a durable delivery, recipients that asked for `NOTIFY=SUCCESS` and were delivered
//! locally get a success report queued for the sender (RFC 3461 §5.2.2).

use bytes::Bytes;

use super::dsn;
use super::envelope::{Envelope, Route};
use super::trace::{delivery_headers, queue_id, unix_now};
use crate::store::{
    Flags, MailStore, MessageBytes, NewMessage, NewQueuedMessage, QueueStore, QueuedEnvelope,
    QueuedRecipient, RecipientStatus, StoreError,
};

/// Why a message could not be taken; the SMTP layer maps each to its reply
/// (`smtp::reply::delivery_error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// The store failed (I/O error, a poisoned shard): try again later.
    Temporary(String),
    /// The disk is full.
    InsufficientStorage,
    /// The server is shutting down.
    ShuttingDown,
    /// Larger than the store takes.
    TooLarge,
    /// The From: header names a local address the authenticated account does not own.
    SenderNotOwned,
}

/// What a client is told about a store failure; the failure itself (paths, errno) is logged.
const STORE_FAILURE: &str = "Temporary local problem, try again later";

impl From<StoreError> for DeliveryError {
    fn from(e: StoreError) -> Self {
        match e {
            e if e.is_out_of_space() => {
                tracing::warn!(error = %e, "delivery: store out of space");
                DeliveryError::InsufficientStorage
            }
            StoreError::Closed => DeliveryError::ShuttingDown,
            StoreError::NotAllowed("message too large") => DeliveryError::TooLarge,
            other => {
                tracing::warn!(error = %other, "delivery: store failure");
                DeliveryError::Temporary(STORE_FAILURE.into())
            }
        }
    }
}

/// Signs what leaves (stage 2). Implemented by the DKIM signer pool.
#[allow(async_fn_in_trait)]
pub trait Signer {
    /// The header to prepend, `None` when no key covers the message, `Err` when signing is
    /// not possible now (the message is then refused temporarily rather than sent unsigned).
    async fn sign(&self, message: &Bytes) -> Result<Option<Vec<u8>>, String>;
}

/// No signing.
pub struct NoSigner;

impl Signer for NoSigner {
    async fn sign(&self, _: &Bytes) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
}

impl Signer for crate::dkim::DkimSigner {
    async fn sign(&self, message: &Bytes) -> Result<Option<Vec<u8>>, String> {
        if self.keys().is_empty() {
            return Ok(None);
        }
        crate::dkim::DkimSigner::sign(self, message.clone())
            .await
            .map_err(|e| format!("DKIM signing: {e}"))
    }
}

/// The pipeline, shared by all cores.
pub struct Pipeline<S, G = NoSigner> {
    store: S,
    signer: G,
    /// This host's name, for reports.
    hostname: String,
    /// Set when authenticated clients may only use their own local addresses in From:.
    sender_check: Option<std::sync::Arc<dyn crate::auth::Directory>>,
}

impl<S: MailStore + QueueStore, G: Signer> Pipeline<S, G> {
    pub fn new(store: S, signer: G, hostname: String) -> Self {
        Pipeline {
            store,
            signer,
            hostname,
            sender_check: None,
        }
    }

    /// Enforces that an authenticated client's From: address, when it is in a local domain,
    /// belongs to its account.
    pub fn with_sender_check(
        mut self,
        directory: std::sync::Arc<dyn crate::auth::Directory>,
    ) -> Self {
        self.sender_check = Some(directory);
        self
    }

    /// Stage 0: an authenticated client may not put someone else's local address in From:.
    fn check_from_header(&self, envelope: &Envelope, message: &[u8]) -> Result<(), DeliveryError> {
        let (Some(directory), Some(account)) = (&self.sender_check, &envelope.authenticated_as)
        else {
            return Ok(());
        };
        let Some(from) = crate::dkim::from_address(message) else {
            return Ok(());
        };
        let domain = super::router::domain_of(&from);
        if directory.is_local_domain(&domain)
            && !super::router::sender_allowed(directory.as_ref(), &from, account)
        {
            return Err(DeliveryError::SenderNotOwned);
        }
        Ok(())
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Runs the stages and commits to both sinks; returns once everything is durable.
    /// `queue_shard`: the calling core's shard, whose scheduler will relay the queued copy.
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        message: Bytes,
        queue_shard: usize,
    ) -> Result<(), DeliveryError> {
        self.check_from_header(envelope, &message)?;
        let now = unix_now() as i64;
        let appends: Vec<NewMessage> = envelope
            .local_accounts()
            .into_iter()
            .map(|account| NewMessage {
                account: account.to_string(),
                mailbox: "INBOX".to_string(),
                bytes: MessageBytes::new(
                    delivery_headers(&envelope.mail_from, account),
                    message.clone(),
                ),
                flags: Flags::default(),
                internal_date: now,
            })
            .collect();
        let remote: Vec<QueuedRecipient> = envelope
            .remote_recipients()
            .map(|r| QueuedRecipient {
                address: r.address.clone(),
                orcpt: r.orcpt.clone(),
                notify: r.notify,
                status: RecipientStatus::default(),
            })
            .collect();
        let mut enqueue = Vec::new();
        if !remote.is_empty() {
            let signature = self
                .signer
                .sign(&message)
                .await
                .map_err(DeliveryError::Temporary)?
                .unwrap_or_default();
            enqueue.push(NewQueuedMessage {
                id: envelope.id.clone(),
                created: now,
                envelope: QueuedEnvelope {
                    mail_from: envelope.mail_from.clone(),
                    ret: envelope.ret,
                    envid: envelope.envid.clone(),
                    smtputf8: envelope.smtputf8,
                    eight_bit: envelope.eight_bit || !message.is_ascii(),
                },
                recipients: remote,
                bytes: MessageBytes::new(signature, message.clone()),
            });
        }
        let local_count = appends.len();
        self.store
            .deliver(appends, queue_shard, enqueue, Vec::new())
            .await?;
        for r in &envelope.recipients {
            if let Route::Local(accounts) = &r.route {
                tracing::info!(
                    "{}: to=<{}>, relay=local, delay=0, dsn=2.0.0, status=sent (delivered to {})",
                    envelope.id,
                    r.address,
                    accounts.join(",")
                );
            }
        }
        if local_count > 0 {
            self.report_local_success(envelope, &message, queue_shard, now)
                .await;
        }
        Ok(())
    }

    /// Queues a success report for the local recipients that asked for one.
    async fn report_local_success(
        &self,
        envelope: &Envelope,
        message: &[u8],
        queue_shard: usize,
        now: i64,
    ) {
        if envelope.mail_from.is_empty() {
            return;
        }
        let recipients: Vec<dsn::ReportedRecipient<'_>> = envelope
            .recipients
            .iter()
            .filter(|r| matches!(r.route, Route::Local(_)) && r.notify.on_success())
            .map(|r| dsn::ReportedRecipient {
                address: &r.address,
                orcpt: r.orcpt.as_deref(),
                action: dsn::Action::Delivered,
                status: "2.0.0".into(),
                remote_mta: None,
                diagnostic: "delivered to mailbox",
            })
            .collect();
        if recipients.is_empty() {
            return;
        }
        let report = dsn::Report {
            reporting_mta: &self.hostname,
            queue_id: &envelope.id,
            to: &envelope.mail_from,
            envid: envelope.envid.as_deref(),
            ret: envelope.ret,
            arrival: now,
            lifetime: None,
            recipients,
            original: message,
            return_limit: 0,
        };
        let dsn = report_message(&report, now);
        let id = dsn.id.clone();
        match self
            .store
            .deliver(Vec::new(), queue_shard, vec![dsn], Vec::new())
            .await
        {
            Ok(_) => tracing::info!("{}: sender delivery status notification: {id}", envelope.id),
            Err(e) => tracing::warn!("{}: success report not queued: {e}", envelope.id),
        }
    }
}

/// A delivery status notification, ready for the queue: from `<>` to the report's addressee.
pub fn report_message(report: &dsn::Report<'_>, now: i64) -> NewQueuedMessage {
    let bytes = dsn::build(report, now);
    NewQueuedMessage {
        id: queue_id(),
        created: now,
        envelope: QueuedEnvelope {
            mail_from: String::new(),
            smtputf8: !report.to.is_ascii(),
            eight_bit: !bytes.is_ascii(),
            ..Default::default()
        },
        recipients: vec![QueuedRecipient::new(report.to)],
        bytes: Bytes::from(bytes).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_keep_their_details_out_of_the_reply() {
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let e = StoreError::Io(std::io::Error::from_raw_os_error(errno));
            assert_eq!(DeliveryError::from(e), DeliveryError::InsufficientStorage);
        }
        let e = StoreError::Io(std::io::Error::other("/srv/mail/shard-0/seg-7.log: EIO"));
        assert_eq!(
            DeliveryError::from(e),
            DeliveryError::Temporary(STORE_FAILURE.into())
        );
        let e = StoreError::Corrupt("segment 3: bad crc".into());
        assert_eq!(
            DeliveryError::from(e),
            DeliveryError::Temporary(STORE_FAILURE.into())
        );
        assert_eq!(
            DeliveryError::from(StoreError::Closed),
            DeliveryError::ShuttingDown
        );
    }
}
