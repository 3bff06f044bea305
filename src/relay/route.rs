//! Where a recipient domain's mail goes: a configured route for the domain, else the smarthost,
//! else DNS — MX hosts by preference, the domain's own address when it has no MX (RFC 5321
//! §5.1), nothing at all for a null MX (RFC 7505).
//!
//! The answer is a [`Destination`]: the hosts to try in order, with the TLS policy and
//! credentials for them, and a *site* key. Recipients — of every domain — whose destinations
//! have the same site key share connections and limits: for DNS destinations the key is the
//! set of MX host names, so all the domains one provider hosts form one site (KumoMTA's "MX
//! rollup").

use std::collections::HashMap;
use std::net::IpAddr;

use super::client::TlsPolicy;
use crate::config::{NextHopDetail, Relay};
use crate::dns::{MxLookup, Resolver};

/// One host to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The name used for TLS (SNI, certificate checks) and logs; an IP literal as text.
    pub name: String,
    pub port: u16,
    /// Set when the host is an IP literal: no DNS lookup.
    pub ip: Option<IpAddr>,
}

impl Host {
    fn new(name: &str, port: u16) -> Host {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let ip = name.parse::<IpAddr>().ok();
        Host { name, port, ip }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Groups connections and limits; see the module docs.
    pub site: String,
    /// In order of preference.
    pub hosts: Vec<Host>,
    pub tls: TlsPolicy,
    pub credentials: Option<(String, String)>,
}

/// Why a domain has no destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoRoute {
    /// True when retrying cannot help (no such domain, null MX).
    pub permanent: bool,
    /// The reply a log line and a DSN quote, `code enhanced-code text`.
    pub reply: String,
}

pub fn tls_policy(name: &str) -> TlsPolicy {
    match name {
        "none" => TlsPolicy::Disabled,
        "require" => TlsPolicy::Require,
        "verify" => TlsPolicy::Verify,
        _ => TlsPolicy::May,
    }
}

/// The routing table, built once from `[relay]`.
#[derive(Clone, Debug)]
pub struct Routes {
    routes: HashMap<String, NextHopDetail>,
    smarthost: Option<NextHopDetail>,
    mx_port: u16,
    mx_tls: TlsPolicy,
}

impl Routes {
    pub fn from_config(relay: &Relay) -> Routes {
        Routes {
            routes: relay
                .routes
                .iter()
                .filter_map(|(d, hop)| {
                    hop.detail()
                        .map(|h| (d.trim_end_matches('.').to_ascii_lowercase(), h))
                })
                .collect(),
            smarthost: relay.smarthost.detail(),
            mx_port: relay.smtp_port,
            mx_tls: tls_policy(&relay.tls),
        }
    }

    fn static_destination(hop: &NextHopDetail) -> Destination {
        let host = Host::new(&hop.host, hop.port.unwrap_or(25));
        let credentials =
            (!hop.username.is_empty()).then(|| (hop.username.clone(), hop.password.clone()));
        // Credentials only ever travel over TLS: with them, encryption is required.
        let tls = match (hop.tls.as_deref(), &credentials) {
            (Some(p), _) => tls_policy(p),
            (None, Some(_)) => TlsPolicy::Require,
            (None, None) => TlsPolicy::May,
        };
        Destination {
            site: format!("{}:{}", host.name, host.port),
            hosts: vec![host],
            tls,
            credentials,
        }
    }

    /// The destination of `domain` (lowercase; an address literal keeps its brackets).
    pub async fn destination(
        &self,
        resolver: &Resolver,
        domain: &str,
    ) -> Result<Destination, NoRoute> {
        if let Some(hop) = self.routes.get(domain) {
            return Ok(Self::static_destination(hop));
        }
        if let Some(hop) = &self.smarthost {
            return Ok(Self::static_destination(hop));
        }
        // user@[192.0.2.1] or user@[IPv6:2001:db8::1]: that host, no DNS.
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
            return match literal.parse::<IpAddr>() {
                Ok(ip) => {
                    let host = Host {
                        name: ip.to_string(),
                        port: self.mx_port,
                        ip: Some(ip),
                    };
                    Ok(Destination {
                        site: format!("{}:{}", host.name, host.port),
                        hosts: vec![host],
                        tls: self.mx_tls,
                        credentials: None,
                    })
                }
                Err(_) => Err(NoRoute {
                    permanent: true,
                    reply: format!("550 5.1.2 bad address literal {domain}"),
                }),
            };
        }
        let hosts = match resolver.mx(domain).await {
            MxLookup::Hosts(mx) => mx
                .iter()
                .map(|m| Host::new(&m.exchange, self.mx_port))
                .collect::<Vec<_>>(),
            MxLookup::NoMx => vec![Host::new(domain, self.mx_port)],
            MxLookup::NullMx => {
                return Err(NoRoute {
                    permanent: true,
                    reply: format!("556 5.1.10 {domain} does not accept mail (null MX)"),
                });
            }
            MxLookup::NoSuchDomain => {
                return Err(NoRoute {
                    permanent: true,
                    reply: format!("550 5.1.2 Host or domain name not found: {domain}"),
                });
            }
            MxLookup::TempFail(why) => {
                return Err(NoRoute {
                    permanent: false,
                    reply: format!("451 4.4.3 DNS lookup of {domain} failed: {why}"),
                });
            }
        };
        let mut names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        Ok(Destination {
            site: format!("mx:{}:{}", names.join(","), self.mx_port),
            hosts,
            tls: self.mx_tls,
            credentials: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn static_routes_and_smarthost() {
        let c = Config::from_toml(
            "[relay]\nsmarthost = { host = \"smtp.provider.test\", port = 587, username = \"u\", password = \"p\" }\n\
             [relay.routes]\n\"example.net\" = \"127.0.0.1:2525\"\n\"plain.test\" = { host = \"h.test\", tls = \"none\" }\n",
        )
        .unwrap();
        let r = Routes::from_config(&c.relay);
        let d = Routes::static_destination(&r.routes["example.net"]);
        assert_eq!(d.site, "127.0.0.1:2525");
        assert_eq!(d.hosts[0].ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(d.tls, TlsPolicy::May);
        let p = Routes::static_destination(&r.routes["plain.test"]);
        assert_eq!((p.tls, p.hosts[0].port), (TlsPolicy::Disabled, 25));
        let s = Routes::static_destination(r.smarthost.as_ref().unwrap());
        assert_eq!(s.tls, TlsPolicy::Require, "credentials imply TLS");
        assert_eq!(s.credentials, Some(("u".into(), "p".into())));
        assert_eq!(s.site, "smtp.provider.test:587");
    }
}
