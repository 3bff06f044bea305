//! [`LocalDirectory`]: RCPT TO resolution from memory (accounts snapshot + static config).
//!
//! Resolution of an address, in order:
//! 1. bare `postmaster` (no domain, RFC 5321 §4.5.1) → the postmaster account;
//! 2. an address that does not parse as `local@domain` → [`Recipient::UnknownLocal`] (reject
//!    rather than try to relay garbage);
//! 3. a domain that is not local → [`Recipient::Remote`]. Address literals (`[127.0.0.1]`) are
//!    never local: we do not accept mail for our IPs, only for our names;
//! 4. `postmaster@<local domain>` → the postmaster account (always, even if an alias or
//!    account of that name exists: every local domain has a working postmaster);
//! 5. alias of the full address (expanded recursively, depth ≤ 8, loops cut), else an account
//!    of that address, else, if the local part has a `+tag`, the same with the tag stripped
//!    (`bob+lists@x` → `bob@x`);
//! 6. nothing → [`Recipient::UnknownLocal`].
//!
//! Matching is case-insensitive on the whole address (domain per RFC; local part because
//! accounts are stored lowercased, see [`canonical_address`](super::canonical_address)).
//!
//! Local domains = configured ones ∪ `localhost` ∪ domains of existing accounts ∪ domains of
//! alias addresses. Account domains come from the live accounts snapshot, so `surel user add
//! bob@new.example` makes `new.example` local without a restart.
//!
//! Alias targets that are not in a local domain are dropped (with a warning): [`Recipient`]
//! cannot express "part local, part forwarded", and this server does not forward.
//! The postmaster is the configured `postmaster` (itself resolved like an alias target), or
//! if unset or unresolvable the first account of the users file.

use std::collections::{HashMap, HashSet};

use super::users::{AccountTable, UserDb, canonical_address, canonical_domain};
use super::{AuthError, Directory, Recipient};

/// Maximum alias nesting depth.
pub const MAX_ALIAS_DEPTH: usize = 8;

/// Static configuration of the directory.
#[derive(Clone, Debug, Default)]
pub struct DirectoryConfig {
    /// Domains we accept mail for, in addition to `localhost` and the domains of accounts.
    pub local_domains: Vec<String>,
    /// Alias address → target addresses (accounts, other aliases, `+tag` addresses).
    pub aliases: HashMap<String, Vec<String>>,
    /// Account (or alias) receiving postmaster mail; default: the first account.
    pub postmaster: Option<String>,
}

/// The [`Directory`] of this server.
#[derive(Debug)]
pub struct LocalDirectory {
    users: UserDb,
    /// Configured domains, `localhost` and alias domains (lowercase).
    static_domains: HashSet<String>,
    /// Canonical alias address → canonical targets.
    aliases: HashMap<String, Vec<String>>,
    postmaster: Option<String>,
}

impl LocalDirectory {
    /// Builds the directory; validates and canonicalizes the configuration
    /// (`BadAddress` for a malformed domain, alias or target).
    pub fn new(users: UserDb, config: DirectoryConfig) -> Result<LocalDirectory, AuthError> {
        let mut static_domains = HashSet::new();
        static_domains.insert("localhost".to_string());
        for d in &config.local_domains {
            let d = canonical_domain(d.trim_end_matches('.'))
                .ok_or_else(|| AuthError::BadAddress(d.clone()))?;
            static_domains.insert(d);
        }
        let mut aliases = HashMap::new();
        for (alias, targets) in &config.aliases {
            let alias = canonical_address(alias)?;
            let targets = targets
                .iter()
                .map(|t| canonical_address(t))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some((_, d)) = alias.rsplit_once('@') {
                static_domains.insert(d.to_string());
            }
            aliases.insert(alias, targets);
        }
        let postmaster = config
            .postmaster
            .as_deref()
            .map(canonical_address)
            .transpose()?;
        Ok(LocalDirectory {
            users,
            static_domains,
            aliases,
            postmaster,
        })
    }

    /// The accounts handle this directory reads.
    pub fn users(&self) -> &UserDb {
        &self.users
    }

    fn domain_is_local(&self, table: &AccountTable, domain: &str) -> bool {
        self.static_domains.contains(domain) || table.has_domain(domain)
    }

    /// The postmaster account(s) for this snapshot (empty if there is no account at all).
    fn postmaster_accounts(&self, table: &AccountTable) -> Vec<String> {
        if let Some(pm) = &self.postmaster {
            let mut out = Vec::new();
            self.expand(table, pm, 0, &mut Vec::new(), &mut out);
            if !out.is_empty() {
                return out;
            }
            tracing::warn!(postmaster = %pm, "configured postmaster resolves to no account");
        }
        table
            .first()
            .map(|a| vec![a.to_string()])
            .unwrap_or_default()
    }

    /// Expands a canonical address into accounts, appending (de-duplicated) to `out`.
    /// `path` holds the aliases being expanded (loop protection).
    fn expand(
        &self,
        table: &AccountTable,
        address: &str,
        depth: usize,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) {
        let Some((local, domain)) = address.rsplit_once('@') else {
            return;
        };
        if !self.domain_is_local(table, domain) {
            tracing::warn!(target = %address, "alias target is not local; dropped");
            return;
        }
        if let Some(targets) = self.aliases.get(address) {
            if depth >= MAX_ALIAS_DEPTH {
                tracing::warn!(alias = %address, "alias nesting too deep; cut");
                return;
            }
            if path.iter().any(|p| p == address) {
                tracing::warn!(alias = %address, "alias loop; cut");
                return;
            }
            path.push(address.to_string());
            for t in targets {
                self.expand(table, t, depth + 1, path, out);
            }
            path.pop();
            return;
        }
        if table.contains(address) {
            if !out.iter().any(|a| a == address) {
                out.push(address.to_string());
            }
            return;
        }
        if let Some((base, _tag)) = local.split_once('+')
            && !base.is_empty()
        {
            self.expand(table, &format!("{base}@{domain}"), depth, path, out);
        }
    }
}

impl Directory for LocalDirectory {
    fn resolve(&self, address: &str) -> Recipient {
        let table = self.users.accounts();
        let postmaster = |table: &AccountTable| {
            let pm = self.postmaster_accounts(table);
            if pm.is_empty() {
                Recipient::UnknownLocal
            } else {
                Recipient::Local(pm)
            }
        };
        if address.eq_ignore_ascii_case("postmaster") {
            return postmaster(&table);
        }
        // Address literals are never local (see module docs).
        if let Some((_, domain)) = address.rsplit_once('@')
            && domain.starts_with('[')
        {
            return Recipient::Remote;
        }
        // A trailing dot on the domain (absolute name) is accepted and ignored.
        let address = address.strip_suffix('.').unwrap_or(address);
        let Ok(address) = canonical_address(address) else {
            return Recipient::UnknownLocal;
        };
        let (local, domain) = address.rsplit_once('@').expect("canonical has @");
        if !self.domain_is_local(&table, domain) {
            return Recipient::Remote;
        }
        if local == "postmaster" {
            return postmaster(&table);
        }
        let mut out = Vec::new();
        self.expand(&table, &address, 0, &mut Vec::new(), &mut out);
        if out.is_empty() {
            Recipient::UnknownLocal
        } else {
            Recipient::Local(out)
        }
    }

    fn is_local_domain(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.domain_is_local(&self.users.accounts(), &domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::users::test_params;

    fn setup(accounts: &[&str], config: DirectoryConfig) -> (tempfile::TempDir, LocalDirectory) {
        let dir = tempfile::tempdir().unwrap();
        let users = UserDb::open_with_params(dir.path(), test_params()).unwrap();
        for a in accounts {
            users.add(a, "pw").unwrap();
        }
        let d = LocalDirectory::new(users, config).unwrap();
        (dir, d)
    }

    fn local(v: &[&str]) -> Recipient {
        Recipient::Local(v.iter().map(|s| s.to_string()).collect())
    }

    fn aliases(pairs: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(a, t)| (a.to_string(), t.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn local_unknown_remote_and_case() {
        let (_d, dir) = setup(
            &["alice@example.com", "bob@example.com"],
            DirectoryConfig {
                local_domains: vec!["Extra.ORG".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            dir.resolve("alice@example.com"),
            local(&["alice@example.com"])
        );
        assert_eq!(
            dir.resolve("Alice@EXAMPLE.com"),
            local(&["alice@example.com"])
        );
        assert_eq!(dir.resolve("nobody@example.com"), Recipient::UnknownLocal);
        assert_eq!(dir.resolve("nobody@extra.org"), Recipient::UnknownLocal);
        assert_eq!(dir.resolve("nobody@localhost"), Recipient::UnknownLocal);
        assert_eq!(dir.resolve("alice@elsewhere.net"), Recipient::Remote);
        assert_eq!(dir.resolve("alice@[127.0.0.1]"), Recipient::Remote);
        assert_eq!(dir.resolve("garbage"), Recipient::UnknownLocal);
        assert_eq!(dir.resolve("a b@example.com"), Recipient::UnknownLocal);
        assert!(dir.is_local_domain("EXAMPLE.com"));
        assert!(dir.is_local_domain("extra.org"));
        assert!(dir.is_local_domain("localhost"));
        assert!(dir.is_local_domain("example.com."));
        assert!(!dir.is_local_domain("elsewhere.net"));
    }

    #[test]
    fn new_account_domain_becomes_local_on_reload() {
        let (_d, dir) = setup(&["alice@example.com"], DirectoryConfig::default());
        assert!(!dir.is_local_domain("new.example"));
        let cli =
            UserDb::open_with_params(dir.users().path().parent().unwrap(), test_params()).unwrap();
        cli.add("carol@new.example", "pw").unwrap();
        dir.users().force_refresh();
        assert!(dir.is_local_domain("new.example"));
        assert_eq!(
            dir.resolve("carol@new.example"),
            local(&["carol@new.example"])
        );
    }

    #[test]
    fn aliases_multi_target_nested_and_loops() {
        let config = DirectoryConfig {
            aliases: aliases(&[
                (
                    "team@example.com",
                    &["alice@example.com", "Bob@Example.com"],
                ),
                (
                    "all@example.com",
                    &[
                        "team@example.com",
                        "alice@example.com",
                        "carol+x@example.com",
                    ],
                ),
                ("loop1@example.com", &["loop2@example.com"]),
                (
                    "loop2@example.com",
                    &["loop1@example.com", "bob@example.com"],
                ),
                ("self@example.com", &["self@example.com"]),
                (
                    "ext@example.com",
                    &["someone@remote.net", "alice@example.com"],
                ),
                ("onlyext@example.com", &["someone@remote.net"]),
                ("ghost@example.com", &["nobody@example.com"]),
                ("info@aliasonly.net", &["bob@example.com"]),
                ("alice@example.com", &["carol@example.com"]),
            ]),
            ..Default::default()
        };
        let (_d, dir) = setup(
            &["alice@example.com", "bob@example.com", "carol@example.com"],
            config,
        );
        assert_eq!(
            dir.resolve("team@example.com"),
            local(&["carol@example.com", "bob@example.com"])
        );
        // Nested, de-duplicated, +tag in a target.
        assert_eq!(
            dir.resolve("ALL@example.com"),
            local(&["carol@example.com", "bob@example.com"])
        );
        assert_eq!(
            dir.resolve("loop1@example.com"),
            local(&["bob@example.com"])
        );
        assert_eq!(dir.resolve("self@example.com"), Recipient::UnknownLocal);
        assert_eq!(
            dir.resolve("ext@example.com"),
            local(&["carol@example.com"])
        );
        assert_eq!(dir.resolve("onlyext@example.com"), Recipient::UnknownLocal);
        assert_eq!(dir.resolve("ghost@example.com"), Recipient::UnknownLocal);
        // An alias's domain is local.
        assert!(dir.is_local_domain("aliasonly.net"));
        assert_eq!(
            dir.resolve("info@aliasonly.net"),
            local(&["bob@example.com"])
        );
        assert_eq!(dir.resolve("other@aliasonly.net"), Recipient::UnknownLocal);
    }

    #[test]
    fn alias_depth_limit() {
        // a0 -> a1 -> ... -> a9 -> bob: deeper than 8 levels is cut.
        let mut pairs: Vec<(String, Vec<String>)> = (0..9)
            .map(|i| {
                (
                    format!("a{i}@example.com"),
                    vec![format!("a{}@example.com", i + 1)],
                )
            })
            .collect();
        pairs.push(("a9@example.com".into(), vec!["bob@example.com".into()]));
        let config = DirectoryConfig {
            aliases: pairs.into_iter().collect(),
            ..Default::default()
        };
        let (_d, dir) = setup(&["bob@example.com"], config);
        assert_eq!(dir.resolve("a2@example.com"), local(&["bob@example.com"]));
        assert_eq!(dir.resolve("a0@example.com"), Recipient::UnknownLocal);
    }

    #[test]
    fn plus_tag_subaddressing() {
        let config = DirectoryConfig {
            aliases: aliases(&[
                ("sales@example.com", &["alice@example.com"]),
                ("bob+special@example.com", &["alice@example.com"]),
            ]),
            ..Default::default()
        };
        let (_d, dir) = setup(&["alice@example.com", "bob@example.com"], config);
        assert_eq!(
            dir.resolve("bob+lists@example.com"),
            local(&["bob@example.com"])
        );
        assert_eq!(
            dir.resolve("BOB+Lists@Example.COM"),
            local(&["bob@example.com"])
        );
        assert_eq!(
            dir.resolve("bob+a+b@example.com"),
            local(&["bob@example.com"])
        );
        // Alias of the full address wins over tag stripping.
        assert_eq!(
            dir.resolve("bob+special@example.com"),
            local(&["alice@example.com"])
        );
        // Tag stripping then alias.
        assert_eq!(
            dir.resolve("sales+eu@example.com"),
            local(&["alice@example.com"])
        );
        assert_eq!(dir.resolve("nobody+x@example.com"), Recipient::UnknownLocal);
        assert_eq!(dir.resolve("+x@example.com"), Recipient::UnknownLocal);
    }

    #[test]
    fn postmaster_variants() {
        let (_d, dir) = setup(
            &["admin@example.com", "bob@example.com"],
            DirectoryConfig {
                local_domains: vec!["other.org".into()],
                ..Default::default()
            },
        );
        let pm = local(&["admin@example.com"]);
        assert_eq!(dir.resolve("postmaster"), pm);
        assert_eq!(dir.resolve("PostMaster"), pm);
        assert_eq!(dir.resolve("postmaster@example.com"), pm);
        assert_eq!(dir.resolve("POSTMASTER@Other.Org"), pm);
        assert_eq!(dir.resolve("postmaster@localhost"), pm);
        assert_eq!(dir.resolve("postmaster@remote.net"), Recipient::Remote);

        let (_d2, configured) = setup(
            &["admin@example.com", "bob@example.com"],
            DirectoryConfig {
                postmaster: Some("Bob@example.com".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            configured.resolve("postmaster"),
            local(&["bob@example.com"])
        );
        assert_eq!(
            configured.resolve("postmaster@example.com"),
            local(&["bob@example.com"])
        );

        let (_d3, empty) = setup(&[], DirectoryConfig::default());
        assert_eq!(empty.resolve("postmaster"), Recipient::UnknownLocal);
        assert_eq!(
            empty.resolve("postmaster@localhost"),
            Recipient::UnknownLocal
        );
    }

    #[test]
    fn bad_config_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let users = UserDb::open_with_params(dir.path(), test_params()).unwrap();
        let bad_domain = DirectoryConfig {
            local_domains: vec!["bad domain".into()],
            ..Default::default()
        };
        assert!(matches!(
            LocalDirectory::new(users.clone(), bad_domain),
            Err(AuthError::BadAddress(_))
        ));
        let bad_alias = DirectoryConfig {
            aliases: aliases(&[("x@example.com", &["not an address"])]),
            ..Default::default()
        };
        assert!(matches!(
            LocalDirectory::new(users, bad_alias),
            Err(AuthError::BadAddress(_))
        ));
    }
}
