//! The envelope of an accepted message: who sent it, each recipient with its route, and the
//! RFC 3461 DSN parameters. The message bytes travel beside it as one shared [`bytes::Bytes`].

pub use crate::store::{Notify, Ret};

/// Where one recipient's copy goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Into these local accounts (an alias may expand to several).
    Local(Vec<String>),
    /// To another server, through the outbound queue.
    Remote {
        /// The recipient's domain, lowercased (an address literal keeps its brackets).
        domain: String,
    },
}

/// Why a recipient is refused at RCPT time. The SMTP layer maps each to its reply
/// (`smtp::reply::rejection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The domain is ours but the mailbox does not exist (`550 5.1.1`).
    UnknownUser,
    /// Not ours, and this client may not relay (`554 5.7.1`).
    RelayDenied,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeRecipient {
    /// The address as given in RCPT TO.
    pub address: String,
    pub route: Route,
    pub notify: Notify,
    /// RFC 3461 `ORCPT`, xtext as received (`rfc822;bob@example.org`).
    pub orcpt: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Queue id: in the `Received` header, the `250` reply and every log line of the message.
    pub id: String,
    /// Reverse path; `""` for the null sender `<>`.
    pub mail_from: String,
    pub ret: Option<Ret>,
    /// RFC 3461 `ENVID`, xtext as received.
    pub envid: Option<String>,
    /// `SMTPUTF8` was given: addresses may be non-ASCII.
    pub smtputf8: bool,
    /// `BODY=8BITMIME` was given.
    pub eight_bit: bool,
    /// The account the client authenticated as, if any.
    pub authenticated_as: Option<String>,
    pub recipients: Vec<EnvelopeRecipient>,
}

impl Envelope {
    /// Local accounts to deliver to, each once, in first-seen order.
    pub fn local_accounts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.recipients {
            if let Route::Local(accounts) = &r.route {
                for a in accounts {
                    if !out.contains(&a.as_str()) {
                        out.push(a);
                    }
                }
            }
        }
        out
    }

    /// The recipients that leave through the outbound queue.
    pub fn remote_recipients(&self) -> impl Iterator<Item = &EnvelopeRecipient> {
        self.recipients
            .iter()
            .filter(|r| matches!(r.route, Route::Remote { .. }))
    }
}
