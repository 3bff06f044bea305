//! Recipient routing: an address becomes a [`Route`] (local accounts or a remote domain) or a
//! [`Rejection`]. The directory answers from memory (the accounts file is reloaded by a
//! background thread), so routing never touches a file on an event loop.
//!
//! Relay policy lives here, in one place: a non-local recipient is accepted only from a
//! client that may relay — authenticated, or connecting from `relay.allowed_networks` — so
//! surel is never an open relay.

use super::envelope::{Rejection, Route};
use crate::auth::{Directory, Recipient};

/// Routes `address` (as given in RCPT TO; a bare `postmaster` is understood).
pub fn route(
    directory: &dyn Directory,
    address: &str,
    may_relay: bool,
) -> Result<Route, Rejection> {
    // `postmaster` without a domain (RFC 5321 §4.5.1) is resolved by the directory.
    let lookup = if address.eq_ignore_ascii_case("postmaster") {
        "postmaster"
    } else {
        address
    };
    match directory.resolve(lookup) {
        Recipient::Local(accounts) => Ok(Route::Local(accounts)),
        Recipient::UnknownLocal => Err(Rejection::UnknownUser),
        Recipient::Remote if may_relay => Ok(Route::Remote {
            domain: domain_of(address),
        }),
        Recipient::Remote => Err(Rejection::RelayDenied),
    }
}

/// May `account` send as `address` (MAIL FROM, or the From: header)? The null sender is
/// anyone's (reports, auto-replies); otherwise the address must lead to the account: itself, a
/// `+tag` form of it, or an alias that expands to it.
pub fn sender_allowed(directory: &dyn Directory, address: &str, account: &str) -> bool {
    if address.is_empty() {
        return true;
    }
    match directory.resolve(address) {
        Recipient::Local(accounts) => accounts.iter().any(|a| a.eq_ignore_ascii_case(account)),
        _ => false,
    }
}

/// The domain part of an address, lowercased, without a trailing dot.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_lowercase())
        .unwrap_or_default()
}

/// An IPv4/IPv6 network in CIDR form, for `relay.allowed_networks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("bad network address {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("bad prefix length in {s:?}"))?,
        };
        Ok(Network { addr, prefix })
    }
}

impl Network {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir;
    impl Directory for Dir {
        fn resolve(&self, address: &str) -> Recipient {
            match address {
                "postmaster" | "alice@example.org" => {
                    Recipient::Local(vec!["alice@example.org".into()])
                }
                a if a.ends_with("@example.org") => Recipient::UnknownLocal,
                _ => Recipient::Remote,
            }
        }
        fn is_local_domain(&self, d: &str) -> bool {
            d == "example.org"
        }
    }

    #[test]
    fn routes_and_relay_policy() {
        let local = Ok(Route::Local(vec!["alice@example.org".into()]));
        assert_eq!(route(&Dir, "alice@example.org", false), local);
        assert_eq!(route(&Dir, "PostMaster", false), local);
        assert_eq!(
            route(&Dir, "nobody@example.org", true),
            Err(Rejection::UnknownUser)
        );
        assert_eq!(
            route(&Dir, "bob@Remote.Test.", false),
            Err(Rejection::RelayDenied)
        );
        assert_eq!(
            route(&Dir, "bob@Remote.Test.", true),
            Ok(Route::Remote {
                domain: "remote.test".into()
            })
        );
        assert_eq!(
            route(&Dir, "bob@[192.0.2.1]", true),
            Ok(Route::Remote {
                domain: "[192.0.2.1]".into()
            })
        );
    }

    #[test]
    fn senders_belong_to_their_account() {
        assert!(sender_allowed(
            &Dir,
            "alice@example.org",
            "alice@example.org"
        ));
        assert!(sender_allowed(&Dir, "", "alice@example.org"));
        assert!(!sender_allowed(
            &Dir,
            "alice@example.org",
            "bob@example.org"
        ));
        assert!(!sender_allowed(
            &Dir,
            "nobody@example.org",
            "alice@example.org"
        ));
        assert!(!sender_allowed(
            &Dir,
            "alice@elsewhere.test",
            "alice@example.org"
        ));
    }

    #[test]
    fn networks() {
        let n: Network = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let host: Network = "127.0.0.1".parse().unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("10.1.0.1".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x/8", "10.0.0.0/", "::/129"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
