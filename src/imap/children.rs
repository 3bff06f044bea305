//! CHILDREN (RFC 3348) and the hierarchy facts LIST/LSUB derive from the account's names.
//!
//! The store keeps mailboxes by full name; the hierarchy is implicit in the `/` delimiter. A
//! name can matter to LIST without being a mailbox: a level left behind when its mailbox was
//! deleted while children remained (`DELETE a` with `a/b` present, RFC 3501 §6.3.4), or a
//! subscription that outlived its mailbox (RFC 9051 §6.3.9). Both are computed here once per
//! command from the mailbox and subscription lists.

use std::collections::{BTreeMap, HashSet};

use crate::store::names::ancestors;

/// What LIST/LSUB know about one name of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameInfo {
    /// A mailbox of that name exists (otherwise `\NonExistent` / `\Noselect`).
    pub exists: bool,
    pub subscribed: bool,
}

/// Every name LIST may report, in LIST order (INBOX first, then by name), with the
/// parent/child relations CHILDREN, RECURSIVEMATCH and LSUB's `%` rule ask about.
pub struct Hierarchy {
    names: BTreeMap<String, NameInfo>,
    /// Names with at least one existing mailbox below them.
    parents: HashSet<String>,
    /// Names with at least one subscribed name below them.
    subscribed_parents: HashSet<String>,
}

impl Hierarchy {
    /// `mailboxes`: (name, subscribed) of every existing mailbox; `lost`: subscribed names with
    /// no mailbox.
    pub fn new<'a>(
        mailboxes: impl IntoIterator<Item = (&'a str, bool)>,
        lost: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut h = Hierarchy {
            names: BTreeMap::new(),
            parents: HashSet::new(),
            subscribed_parents: HashSet::new(),
        };
        for (name, subscribed) in mailboxes {
            h.names.insert(
                name.to_owned(),
                NameInfo {
                    exists: true,
                    subscribed,
                },
            );
        }
        for name in lost {
            h.names
                .entry(name.to_owned())
                .or_insert(NameInfo {
                    exists: false,
                    subscribed: true,
                })
                .subscribed = true;
        }
        let mut levels = Vec::new();
        for (name, info) in &h.names {
            for parent in ancestors(name) {
                if info.exists {
                    h.parents.insert(parent.to_owned());
                }
                if info.subscribed {
                    h.subscribed_parents.insert(parent.to_owned());
                }
                levels.push(parent.to_owned());
            }
        }
        // Levels are names LIST may report without a mailbox: above existing mailboxes
        // (`LIST "" %`), above subscribed names (LSUB's `%` rule, RECURSIVEMATCH).
        for level in levels {
            h.names.entry(level).or_insert(NameInfo {
                exists: false,
                subscribed: false,
            });
        }
        h
    }

    /// Every name in LIST order: INBOX first, then by name.
    pub fn names(&self) -> impl Iterator<Item = (&str, NameInfo)> {
        let inbox = self.names.get_key_value("INBOX");
        inbox
            .into_iter()
            .chain(self.names.iter().filter(|(n, _)| n.as_str() != "INBOX"))
            .map(|(n, i)| (n.as_str(), *i))
    }

    pub fn has_children(&self, name: &str) -> bool {
        self.parents.contains(name)
    }

    /// The RFC 3348 attribute for `name`.
    pub fn child_attr(&self, name: &str) -> &'static str {
        if self.has_children(name) {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        }
    }

    /// Some name below `name` is subscribed (CHILDINFO, LSUB's `%` levels).
    pub fn has_subscribed_descendant(&self, name: &str) -> bool {
        self.subscribed_parents.contains(name)
    }

    /// Subscribed names strictly below `name`.
    pub fn subscribed_descendants<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        let prefix = format!("{name}/");
        self.names
            .range(prefix.clone()..)
            .take_while(move |(n, _)| n.starts_with(&prefix))
            .filter(|(_, i)| i.subscribed)
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_levels_and_lost_subscriptions() {
        // `a` was deleted with `a/b` left; `gone` and `x/y` are subscriptions without mailbox.
        let h = Hierarchy::new(
            [
                ("INBOX", true),
                ("a/b", false),
                ("Archive", false),
                ("INBOX/sub", true),
            ],
            ["gone", "x/y"],
        );
        let names: Vec<(&str, bool, bool)> = h
            .names()
            .map(|(n, i)| (n, i.exists, i.subscribed))
            .collect();
        assert_eq!(
            names,
            [
                ("INBOX", true, true),
                ("Archive", true, false),
                ("INBOX/sub", true, true),
                ("a", false, false),
                ("a/b", true, false),
                ("gone", false, true),
                ("x", false, false),
                ("x/y", false, true),
            ]
        );
        assert_eq!(h.child_attr("INBOX"), "\\HasChildren");
        assert_eq!(h.child_attr("a"), "\\HasChildren");
        assert_eq!(h.child_attr("a/b"), "\\HasNoChildren");
        // A subscription alone does not make a child: `x` has no mailbox below it.
        assert_eq!(h.child_attr("x"), "\\HasNoChildren");
        assert!(h.has_subscribed_descendant("x"));
        assert!(!h.has_subscribed_descendant("a"));
        assert_eq!(h.subscribed_descendants("x").collect::<Vec<_>>(), ["x/y"]);
        assert_eq!(
            h.subscribed_descendants("INBOX").collect::<Vec<_>>(),
            ["INBOX/sub"]
        );
        assert_eq!(h.subscribed_descendants("a").count(), 0);
    }

    #[test]
    fn a_name_both_mailbox_and_lost_subscription_is_one_entry() {
        let h = Hierarchy::new([("a", false)], ["a"]);
        assert_eq!(
            h.names().collect::<Vec<_>>(),
            [(
                "a",
                NameInfo {
                    exists: true,
                    subscribed: true
                }
            )]
        );
    }
}
