//! What an attempt did for each recipient, and the durable status that follows from it:
//! delivered; deferred with the next attempt after a doubling back-off; or failed — refused
//! permanently, or still refused when the queue lifetime is over.

use crate::relay::client::{ClientError, TransactionResult};
use crate::relay::reply::Reply;
use crate::store::{RecipientState, RecipientStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptKind {
    Sent,
    Deferred,
    Failed,
}

/// One recipient's result of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub kind: AttemptKind,
    /// The next hop's reply, or why there was none (`code enhanced text`).
    pub reply: String,
    /// `host[ip]:port` of the server that answered, or `none`.
    pub relay: String,
    /// The next hop offered DSN, so it reports success itself (else we say "relayed").
    pub next_hop_dsn: bool,
}

impl Attempt {
    pub fn new(kind: AttemptKind, reply: impl Into<String>, relay: impl Into<String>) -> Attempt {
        Attempt {
            kind,
            reply: reply.into(),
            relay: relay.into(),
            next_hop_dsn: false,
        }
    }

    fn of_reply(reply: &Reply, relay: &str, dsn: bool) -> Attempt {
        let kind = if reply.is_positive() {
            AttemptKind::Sent
        } else if reply.is_permanent() {
            AttemptKind::Failed
        } else {
            AttemptKind::Deferred
        };
        Attempt {
            kind,
            reply: reply.text(),
            relay: relay.to_string(),
            next_hop_dsn: dsn,
        }
    }

    /// The same result for every recipient of a transaction that failed as a whole.
    pub fn of_error(error: &ClientError, relay: &str) -> Attempt {
        let (class, subject, detail) = error.status();
        let reply = match error.reply() {
            Some(r) => r.text(),
            None => format!(
                "{} {class}.{subject}.{detail} {error}",
                if error.is_permanent() { 550 } else { 451 }
            ),
        };
        Attempt::new(
            if error.is_permanent() {
                AttemptKind::Failed
            } else {
                AttemptKind::Deferred
            },
            reply,
            relay,
        )
    }

    /// One result per recipient of a completed transaction.
    pub fn of_transaction(result: &TransactionResult, relay: &str, dsn: bool) -> Vec<Attempt> {
        result
            .recipients
            .iter()
            .map(|rcpt| {
                if !result.mail.is_positive() {
                    return Attempt::of_reply(&result.mail, relay, dsn);
                }
                match rcpt {
                    None => Attempt::of_reply(&result.mail, relay, dsn),
                    Some(r) if !r.is_positive() => Attempt::of_reply(r, relay, dsn),
                    Some(_) => match &result.data {
                        Some(d) => Attempt::of_reply(d, relay, dsn),
                        None => Attempt::new(
                            AttemptKind::Deferred,
                            "451 4.4.2 no reply to the message content",
                            relay,
                        ),
                    },
                }
            })
            .collect()
    }
}

/// Retry timing, from `[relay]`.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub initial: i64,
    pub max: i64,
    /// Seconds after acceptance when a still-deferred recipient is returned.
    pub lifetime: i64,
    /// Seconds after acceptance when the sender is told of a delay (0: never).
    pub delay_warning: i64,
}

impl RetryPolicy {
    /// Delay before attempt number `attempts + 1`, after `attempts` failed ones.
    pub fn backoff(&self, attempts: u32) -> i64 {
        let shift = attempts.saturating_sub(1).min(30);
        self.initial
            .max(1)
            .saturating_mul(1i64 << shift)
            .min(self.max.max(self.initial).max(1))
    }

    /// The status a recipient has after `attempt`.
    pub fn next(
        &self,
        prev: &RecipientStatus,
        attempt: &Attempt,
        created: i64,
        now: i64,
    ) -> RecipientStatus {
        let attempts = prev.attempts.saturating_add(1);
        let (state, next_attempt, reply) = match attempt.kind {
            AttemptKind::Sent => (RecipientState::Delivered, 0, attempt.reply.clone()),
            AttemptKind::Failed => (RecipientState::Failed, 0, attempt.reply.clone()),
            AttemptKind::Deferred if now >= created.saturating_add(self.lifetime) => {
                (RecipientState::Failed, 0, attempt.reply.clone())
            }
            AttemptKind::Deferred => (
                RecipientState::Deferred,
                now + self.backoff(attempts),
                attempt.reply.clone(),
            ),
        };
        RecipientStatus {
            state,
            attempts,
            next_attempt,
            last_reply: reply,
            delay_warned: prev.delay_warned,
        }
    }

    /// A deferred recipient is old enough for a delay warning it has not had yet.
    pub fn wants_delay_warning(&self, status: &RecipientStatus, created: i64, now: i64) -> bool {
        self.delay_warning > 0
            && status.state == RecipientState::Deferred
            && !status.delay_warned
            && now >= created.saturating_add(self.delay_warning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as the reader produces it: the text lines without code and enhanced code.
    fn reply(code: u16, enhanced: Option<(u8, u16, u16)>, text: &str) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec![text.to_string()],
        }
    }

    #[test]
    fn transaction_results_per_recipient() {
        let ok = reply(250, Some((2, 1, 5)), "ok");
        let r = TransactionResult {
            mail: reply(250, Some((2, 1, 0)), "ok"),
            recipients: vec![
                Some(ok.clone()),
                Some(reply(450, Some((4, 2, 1)), "mailbox busy")),
                Some(reply(550, Some((5, 1, 1)), "no such user")),
            ],
            data: Some(reply(250, Some((2, 0, 0)), "queued as X")),
        };
        let a = Attempt::of_transaction(&r, "mx.test[192.0.2.1]:25", true);
        assert_eq!(
            a.iter().map(|a| a.kind).collect::<Vec<_>>(),
            vec![
                AttemptKind::Sent,
                AttemptKind::Deferred,
                AttemptKind::Failed
            ]
        );
        assert!(a[0].reply.starts_with("250 2.0.0 queued as X"));
        assert!(a[2].reply.starts_with("550 5.1.1"));
        assert!(a[0].next_hop_dsn);
        // MAIL refused: every recipient gets its reply.
        let r = TransactionResult {
            mail: reply(451, Some((4, 3, 0)), "try later"),
            recipients: vec![None, None],
            data: None,
        };
        let a = Attempt::of_transaction(&r, "x", false);
        assert!(
            a.iter()
                .all(|a| a.kind == AttemptKind::Deferred && a.reply.starts_with("451"))
        );
        // Content refused after an accepted RCPT.
        let r = TransactionResult {
            mail: reply(250, None, "ok"),
            recipients: vec![Some(ok)],
            data: Some(reply(554, Some((5, 6, 0)), "content rejected")),
        };
        assert_eq!(
            Attempt::of_transaction(&r, "x", false)[0].kind,
            AttemptKind::Failed
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_max_and_lifetime_ends_deferral() {
        let p = RetryPolicy {
            initial: 300,
            max: 3600,
            lifetime: 5 * 86400,
            delay_warning: 4 * 3600,
        };
        assert_eq!(
            (1..=6).map(|n| p.backoff(n)).collect::<Vec<_>>(),
            vec![300, 600, 1200, 2400, 3600, 3600]
        );
        let deferred = Attempt::new(AttemptKind::Deferred, "451 4.3.0 later", "h");
        let s = p.next(&RecipientStatus::default(), &deferred, 1000, 1000);
        assert_eq!(s.state, RecipientState::Deferred);
        assert_eq!((s.attempts, s.next_attempt), (1, 1300));
        let s2 = p.next(&s, &deferred, 1000, 1300);
        assert_eq!((s2.attempts, s2.next_attempt), (2, 1900));
        assert!(!p.wants_delay_warning(&s2, 1000, 1300));
        assert!(p.wants_delay_warning(&s2, 1000, 1000 + 4 * 3600));
        let expired = p.next(&s2, &deferred, 1000, 1000 + 5 * 86400);
        assert_eq!(expired.state, RecipientState::Failed);
        assert_eq!(expired.last_reply, "451 4.3.0 later");
        let sent = p.next(
            &s2,
            &Attempt::new(AttemptKind::Sent, "250 ok", "h"),
            1000,
            2000,
        );
        assert_eq!((sent.state, sent.attempts), (RecipientState::Delivered, 3));
    }
}
