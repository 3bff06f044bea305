//! DKIM signing of outbound mail (RFC 6376; Ed25519 per RFC 8463).
//!
//! What this module owns:
//! * [`DkimKeys`]: the signing keys, one PKCS#8 PEM file per key under `<data_dir>/dkim/`, named
//!   `<selector>._domainkey.<domain>.pem` (the DNS name its public half is published at). The
//!   algorithm is read from the key, so RSA and Ed25519 keys sit side by side; with several
//!   keys for one domain the newest file signs, which is how a key is rotated.
//! * [`generate`]: makes a key file and the TXT record to publish (`surel dkim generate`).
//! * [`sign`]: the `DKIM-Signature` header field for one message, relaxed/relaxed, computed by
//!   the `mail-auth` crate (its ring backend).
//! * [`DkimSigner`]: a small pool of signer threads behind a runtime-agnostic async API. An
//!   RSA-2048 signature costs about a millisecond of CPU: on a core's event loop that would
//!   stall every connection of the core, so jobs cross a crossbeam channel and the caller
//!   awaits a `futures_channel::oneshot` (the pattern of `auth::verifier`).
//!
//! It calls nothing else in surel: the outbound queue asks [`DkimSigner::sign`] for the header
//! to prepend, and decides itself what a signing error means for the message.
//!
//! mail-auth resolves DNS through hickory and tokio; signing never touches that side (no DNS,
//! no reactor), so it is safe on any thread.

mod key;
mod sign;
mod signer;

#[cfg(test)]
mod tests;

pub use key::{DkimKey, DkimKeys, generate, key_dir, txt_record, txt_record_value};
pub use sign::{SIGNED_HEADERS, from_address, from_domain, sign};
pub use signer::DkimSigner;

/// The signature algorithm of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DkimAlgorithm {
    /// rsa-sha256; generated keys are 2048-bit.
    Rsa,
    /// ed25519-sha256 (RFC 8463).
    Ed25519,
}

impl DkimAlgorithm {
    /// The `k=` tag value of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl std::str::FromStr for DkimAlgorithm {
    type Err = DkimError;

    fn from_str(s: &str) -> Result<Self, DkimError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" => Ok(DkimAlgorithm::Rsa),
            "ed25519" => Ok(DkimAlgorithm::Ed25519),
            _ => Err(DkimError(format!(
                "unknown DKIM algorithm {s:?} (expected rsa or ed25519)"
            ))),
        }
    }
}

impl std::fmt::Display for DkimAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key_type())
    }
}

/// Every DKIM failure: a bad key file, a message that cannot be signed, an overloaded or
/// stopped signer pool. The text is meant for a log line or a one-line CLI error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimError(pub String);

impl std::fmt::Display for DkimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DkimError {}
