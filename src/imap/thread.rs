//! THREAD and UID THREAD (RFC 5256 §4): ORDEREDSUBJECT, REFERENCES, and REFS (Dovecot's
//! algorithm from draft-ietf-morg-inthread: REFERENCES without subject merging, threads
//! ordered by their latest message).
//!
//! The algorithms run over an arena of containers (a message, or a dummy standing for a
//! Message-ID that is referenced but not in the result). Every walk over the trees uses an
//! explicit stack: a hostile mailbox can chain 100 000 messages into one thread, and neither
//! the pruning nor the rendering may recurse that deep. Linking a parent first checks, by
//! walking up the parent chain, that no loop is made; that walk gives up after
//! [`MAX_ANCESTOR_WALK`] steps and then refuses the link, which keeps the pathological case
//! (every message replying to the previous one) from costing n² steps.
//!
//! "Sent date" is the Date: field, or the internal date when it is missing; ties go to the
//! lower message sequence number.

use std::collections::HashMap;
use std::rc::Rc;

use imap_codec::imap_types::{
    core::Charset, extensions::thread::ThreadingAlgorithm, search::SearchKey,
};

use super::message_fields::{MessageFields, fields_for};
use super::session::{ImapSession, Step};
use super::sort::check_charset;
use super::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::MailStore;

/// Longest parent chain walked when checking that a link makes no loop.
const MAX_ANCESTOR_WALK: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    OrderedSubject,
    References,
    Refs,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name.to_ascii_uppercase().as_str() {
            "ORDEREDSUBJECT" => Some(Algorithm::OrderedSubject),
            "REFERENCES" => Some(Algorithm::References),
            "REFS" => Some(Algorithm::Refs),
            _ => None,
        }
    }
}

/// Threads over messages given in mailbox order: `roots` in output order, each node's
/// `children` in output order. Nodes `0..messages` are the messages themselves.
#[derive(Debug, Default)]
pub struct Threads {
    /// The message of each node (None for a dummy).
    msg: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    pub roots: Vec<usize>,
}

impl Threads {
    fn with_messages(n: usize) -> Threads {
        Threads {
            msg: (0..n).map(Some).collect(),
            children: vec![Vec::new(); n],
            roots: Vec::new(),
        }
    }

    fn add_dummy(&mut self) -> usize {
        self.msg.push(None);
        self.children.push(Vec::new());
        self.msg.len() - 1
    }

    fn is_dummy(&self, node: usize) -> bool {
        self.msg[node].is_none()
    }

    /// `(3 6 (4 23)(44 7 96))`... with `number(message index)` printed for each message.
    pub fn render(&self, out: &mut Vec<u8>, number: impl Fn(usize) -> u32) {
        enum Item {
            Open,
            Node(usize),
            Close,
        }
        let mut stack = Vec::new();
        for &root in self.roots.iter().rev() {
            stack.push(Item::Close);
            stack.push(Item::Node(root));
            stack.push(Item::Open);
        }
        while let Some(item) = stack.pop() {
            match item {
                Item::Open => out.push(b'('),
                Item::Close => out.push(b')'),
                Item::Node(n) => {
                    if let Some(m) = self.msg[n] {
                        imap_w!(out, "{}", number(m));
                    }
                    let children = &self.children[n];
                    if !children.is_empty() && self.msg[n].is_some() {
                        out.push(b' ');
                    }
                    if let [only] = children.as_slice() {
                        // A single child continues the same list: "1 2 3".
                        stack.push(Item::Node(*only));
                    } else {
                        for &c in children.iter().rev() {
                            stack.push(Item::Close);
                            stack.push(Item::Node(c));
                            stack.push(Item::Open);
                        }
                    }
                }
            }
        }
    }
}

/// Thread the messages (in mailbox order) with the algorithm.
pub fn thread(algorithm: Algorithm, messages: &[Rc<MessageFields>]) -> Threads {
    match algorithm {
        Algorithm::OrderedSubject => ordered_subject(messages),
        Algorithm::References => references(messages, true),
        Algorithm::Refs => references(messages, false),
    }
}

/// The sort key of a message: sent date, then position in the mailbox.
fn date_key(messages: &[Rc<MessageFields>], m: usize) -> (i64, usize) {
    (messages[m].sent_date, m)
}

/// RFC 5256 ORDEREDSUBJECT: group by base subject; the earliest message of a group is the
/// parent of all the others; threads ordered by their first message.
fn ordered_subject(messages: &[Rc<MessageFields>]) -> Threads {
    let mut t = Threads::with_messages(messages.len());
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        messages[a]
            .base_subject
            .cmp(&messages[b].base_subject)
            .then(date_key(messages, a).cmp(&date_key(messages, b)))
    });
    let mut i = 0;
    while i < order.len() {
        let root = order[i];
        let mut j = i + 1;
        while j < order.len() && messages[order[j]].base_subject == messages[root].base_subject {
            t.children[root].push(order[j]);
            j += 1;
        }
        t.roots.push(root);
        i = j;
    }
    t.roots.sort_unstable_by_key(|&r| date_key(messages, r));
    t
}

/// RFC 5256 REFERENCES (with `merge_subjects`), or REFS (without, roots ordered by their
/// latest message).
fn references(messages: &[Rc<MessageFields>], merge_subjects: bool) -> Threads {
    let n = messages.len();
    let mut t = Threads::with_messages(n);
    // Step 1: link by Message-ID / References, keeping parent pointers only; the children
    // lists are built afterwards (unlinking from a list would be quadratic).
    let mut parent: Vec<Option<usize>> = vec![None; n];
    // How many children each node has: a node without any is nobody's ancestor, which spares
    // the walk up in the common case (a reply that arrives after its parent).
    let mut child_count: Vec<u32> = vec![0; n];
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (m, fields) in messages.iter().enumerate() {
        // 1.A: the message's own container; a duplicate Message-ID gets a container of its
        // own (node m), and a dummy made earlier for a reference to it takes the message
        // (node m then stays an empty dummy, pruned below).
        let own = match fields.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&c) if t.is_dummy(c) => {
                    t.msg[c] = Some(m);
                    t.msg[m] = None;
                    c
                }
                Some(_) => m,
                None => {
                    by_id.insert(id, m);
                    m
                }
            },
            None => m,
        };
        // 1.B: link the references in order, where no link exists yet.
        let mut prev: Option<usize> = None;
        for r in fields.references.iter() {
            let c = match by_id.get(&**r) {
                Some(&c) => c,
                None => {
                    let c = t.add_dummy();
                    parent.push(None);
                    child_count.push(0);
                    by_id.insert(&**r, c);
                    c
                }
            };
            if c == own {
                continue;
            }
            if let Some(p) = prev
                && p != c
                && parent[c].is_none()
                && !is_ancestor(&parent, &child_count, c, p)
            {
                parent[c] = Some(p);
                child_count[p] += 1;
            }
            prev = Some(c);
        }
        // 1.C: the last reference is the parent, replacing any parent guessed so far.
        if let Some(old) = parent[own].take() {
            child_count[old] -= 1;
        }
        if let Some(p) = prev
            && !is_ancestor(&parent, &child_count, own, p)
        {
            parent[own] = Some(p);
            child_count[p] += 1;
        }
    }
    for (c, p) in parent.iter().enumerate() {
        match p {
            Some(p) => t.children[*p].push(c),
            None => t.roots.push(c),
        }
    }
    // Step 2 and 4: prune empty dummies, promote the children of the others (at the root
    // only when there is a single child).
    prune(&mut t);
    if merge_subjects {
        // Step 5: roots by date (a dummy by its first child), then step 6 merges by subject.
        sort_all_children(&mut t, messages);
        sort_roots(&mut t, messages);
        merge_by_subject(&mut t, messages);
        // Step 7: every set of siblings by date.
        sort_all_children(&mut t, messages);
        sort_roots(&mut t, messages);
    } else {
        sort_all_children(&mut t, messages);
        let latest = latest_in_threads(&t, messages);
        let mut keyed: Vec<((i64, usize), usize)> =
            t.roots.iter().zip(latest).map(|(&r, k)| (k, r)).collect();
        keyed.sort_unstable();
        t.roots = keyed.into_iter().map(|(_, r)| r).collect();
    }
    t
}

/// Is `a` the node `b` or one of its ancestors? (Past [`MAX_ANCESTOR_WALK`] steps: assumed so.)
fn is_ancestor(parent: &[Option<usize>], child_count: &[u32], a: usize, b: usize) -> bool {
    if a != b && child_count[a] == 0 {
        return false;
    }
    let mut x = b;
    for _ in 0..MAX_ANCESTOR_WALK {
        if x == a {
            return true;
        }
        match parent[x] {
            Some(p) => x = p,
            None => return false,
        }
    }
    true
}

fn prune(t: &mut Threads) {
    // Post-order, so a node's children are pruned before the node itself.
    let mut post = Vec::with_capacity(t.msg.len());
    let mut stack: Vec<(usize, bool)> = t.roots.iter().map(|&r| (r, false)).collect();
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            post.push(node);
        } else {
            stack.push((node, true));
            stack.extend(t.children[node].iter().map(|&c| (c, false)));
        }
    }
    for node in post {
        let children = std::mem::take(&mut t.children[node]);
        let mut kept = Vec::with_capacity(children.len());
        for c in children {
            if t.is_dummy(c) {
                kept.append(&mut t.children[c]);
            } else {
                kept.push(c);
            }
        }
        t.children[node] = kept;
    }
    let roots = std::mem::take(&mut t.roots);
    for r in roots {
        if !t.is_dummy(r) || t.children[r].len() > 1 {
            t.roots.push(r);
        } else if let [only] = t.children[r].as_slice() {
            t.roots.push(*only);
        }
    }
}

/// The date key of a node: its message's, or a dummy's first child's.
fn node_key(t: &Threads, messages: &[Rc<MessageFields>], node: usize) -> (i64, usize) {
    match t.msg[node] {
        Some(m) => date_key(messages, m),
        None => t.children[node]
            .first()
            .map_or((i64::MAX, usize::MAX), |&c| node_key(t, messages, c)),
    }
}

fn sort_all_children(t: &mut Threads, messages: &[Rc<MessageFields>]) {
    // Children of dummies are messages (dummies only survive at the root), so one pass over
    // the message nodes first and the dummies second sorts every list by final keys.
    for node in 0..t.children.len() {
        if t.children[node].len() > 1 && !t.is_dummy(node) {
            let mut c = std::mem::take(&mut t.children[node]);
            c.sort_unstable_by_key(|&x| node_key(t, messages, x));
            t.children[node] = c;
        }
    }
    for node in 0..t.children.len() {
        if t.children[node].len() > 1 && t.is_dummy(node) {
            let mut c = std::mem::take(&mut t.children[node]);
            c.sort_unstable_by_key(|&x| node_key(t, messages, x));
            t.children[node] = c;
        }
    }
}

fn sort_roots(t: &mut Threads, messages: &[Rc<MessageFields>]) {
    let mut roots = std::mem::take(&mut t.roots);
    roots.sort_unstable_by_key(|&r| node_key(t, messages, r));
    t.roots = roots;
}

/// The subject of a root: its message's, or a dummy's first child's.
fn root_message(t: &Threads, node: usize) -> Option<usize> {
    t.msg[node].or_else(|| t.children[node].first().and_then(|&c| t.msg[c]))
}

/// RFC 5256 §2.2 step 6: roots with the same base subject are gathered under one thread.
fn merge_by_subject(t: &mut Threads, messages: &[Rc<MessageFields>]) {
    let subject = |t: &Threads, node: usize| -> Option<usize> {
        root_message(t, node).filter(|&m| !messages[m].base_subject.is_empty())
    };
    let is_reply =
        |t: &Threads, node: usize| t.msg[node].is_some_and(|m| messages[m].subject_is_reply);
    // 6.B: per subject, the root that represents it: a dummy over a message, a message that
    // is not a reply over one that is.
    let mut table: HashMap<&str, usize> = HashMap::new();
    for &r in &t.roots {
        let Some(m) = subject(t, r) else { continue };
        let key: &str = &messages[m].base_subject;
        match table.get(key) {
            None => {
                table.insert(key, r);
            }
            Some(&old) => {
                if (t.is_dummy(r) && !t.is_dummy(old))
                    || (is_reply(t, old) && !is_reply(t, r) && !t.is_dummy(old))
                {
                    table.insert(key, r);
                }
            }
        }
    }
    // 6.C: merge every other root into the one in the table.
    let mut roots: Vec<Option<usize>> = t.roots.iter().map(|&r| Some(r)).collect();
    let mut position: HashMap<usize, usize> =
        t.roots.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    for i in 0..roots.len() {
        let Some(r) = roots[i] else { continue };
        let Some(m) = subject(t, r) else { continue };
        let key: &str = &messages[m].base_subject;
        let Some(&other) = table.get(key) else {
            continue;
        };
        if other == r {
            continue;
        }
        let (r_dummy, other_dummy) = (t.is_dummy(r), t.is_dummy(other));
        if r_dummy && other_dummy {
            let mut moved = std::mem::take(&mut t.children[r]);
            t.children[other].append(&mut moved);
            roots[i] = None;
        } else if other_dummy {
            t.children[other].push(r);
            roots[i] = None;
        } else if r_dummy {
            t.children[r].push(other);
            roots[position[&other]] = None;
            table.insert(key, r);
        } else if !is_reply(t, other) && is_reply(t, r) {
            t.children[other].push(r);
            roots[i] = None;
        } else if is_reply(t, other) && !is_reply(t, r) {
            t.children[r].push(other);
            roots[position[&other]] = None;
            table.insert(key, r);
        } else {
            // Both replies or neither: siblings under a new dummy, where `other` was.
            let dummy = t.add_dummy();
            t.children[dummy] = vec![other, r];
            let at = position[&other];
            roots[at] = Some(dummy);
            position.insert(dummy, at);
            roots[i] = None;
            table.insert(key, dummy);
        }
    }
    t.roots = roots.into_iter().flatten().collect();
}

/// For each root, the key of the latest message in its thread.
fn latest_in_threads(t: &Threads, messages: &[Rc<MessageFields>]) -> Vec<(i64, usize)> {
    let mut out = Vec::with_capacity(t.roots.len());
    let mut stack = Vec::new();
    for &r in &t.roots {
        let mut latest = (i64::MIN, 0);
        stack.push(r);
        while let Some(node) = stack.pop() {
            if let Some(m) = t.msg[node] {
                latest = latest.max(date_key(messages, m));
            }
            stack.extend_from_slice(&t.children[node]);
        }
        out.push(latest);
    }
    out
}

impl ImapSession {
    /// THREAD / UID THREAD.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn thread<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        algorithm: &ThreadingAlgorithm<'_>,
        charset: &Charset<'_>,
        keys: Vec<SearchKey<'_>>,
        uid: bool,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let algorithm = Algorithm::from_name(&algorithm.to_string())
            .ok_or_else(|| ImapError::bad("Unknown threading algorithm"))?;
        check_charset(charset)?;
        let found = self.matching(store, keys)?;
        let account = self.account.clone().unwrap_or_default();
        let mb = self
            .selected
            .as_ref()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        let fields = fields_for(
            store,
            &account,
            &mb.name,
            mb.uidvalidity,
            &mb.messages,
            &found.indices,
        );
        let threads = thread(algorithm, &fields);
        out.extend_from_slice(b"* THREAD");
        if !threads.roots.is_empty() {
            out.push(b' ');
        }
        threads.render(out, |k| {
            let i = found.indices[k];
            if uid {
                mb.messages[i].uid
            } else {
                i as u32 + 1
            }
        });
        out.extend_from_slice(b"\r\n");
        self.sync_selected(store, uid, out);
        imap_w!(out, "{tag} OK THREAD completed\r\n");
        Ok(Step::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message: (Message-ID, References, Subject, sent date).
    fn m(id: &str, refs: &[&str], subject: &str, date: i64) -> Rc<MessageFields> {
        let (base, reply) = super::super::message_fields::base_subject(subject);
        Rc::new(MessageFields {
            sent_date: date,
            base_subject: super::super::message_fields::casemap(&base).into(),
            subject_is_reply: reply,
            message_id: (!id.is_empty()).then(|| id.into()),
            references: refs.iter().map(|r| (*r).into()).collect(),
            ..Default::default()
        })
    }

    fn render(alg: Algorithm, msgs: &[Rc<MessageFields>]) -> String {
        let mut out = Vec::new();
        thread(alg, msgs).render(&mut out, |k| k as u32 + 1);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ordered_subject() {
        let msgs = [
            m("1", &[], "Hello", 10),
            m("2", &[], "Other", 5),
            m("3", &[], "Re: hello", 30),
            m("4", &[], "Re: Hello", 20),
            m("5", &[], "other", 50),
            m("6", &[], "third", 1),
        ];
        assert_eq!(
            render(Algorithm::OrderedSubject, &msgs),
            "(6)(2 5)(1 (4)(3))"
        );
    }

    #[test]
    fn references_links_and_dummies() {
        // 2 and 3 reply to 1; 4 replies to 3; 5 references a message not in the mailbox,
        // as does 6 (siblings under a dummy at the root); 7 stands alone.
        let msgs = [
            m("a", &[], "Start", 1),
            m("b", &["a"], "Re: Start", 2),
            m("c", &["a"], "Re: Start", 3),
            m("d", &["a", "c"], "Re: Start", 4),
            m("e", &["gone"], "Lost child", 5),
            m("f", &["gone"], "Re: Lost child", 6),
            m("g", &[], "Alone", 7),
        ];
        assert_eq!(
            render(Algorithm::References, &msgs),
            "(1 (2)(3 4))((5)(6))(7)"
        );
        // A dummy with one child at the root is replaced by that child.
        let msgs = [m("x", &["gone"], "X", 1), m("y", &[], "Y", 2)];
        assert_eq!(render(Algorithm::References, &msgs), "(1)(2)");
    }

    #[test]
    fn references_merges_subjects() {
        // No references at all: same base subject threads together, the original first.
        let msgs = [
            m("1", &[], "Re: Plans", 3),
            m("2", &[], "Plans", 1),
            m("3", &[], "Fwd: plans", 2),
            m("4", &[], "Other", 4),
        ];
        assert_eq!(render(Algorithm::References, &msgs), "(2 (3)(1))(4)");
        // Two replies: siblings under a dummy.
        let msgs = [m("1", &[], "Re: x", 1), m("2", &[], "Re: x", 2)];
        assert_eq!(render(Algorithm::References, &msgs), "((1)(2))");
        // REFS does not merge by subject, and orders threads by their latest message.
        let msgs = [
            m("1", &[], "Plans", 1),
            m("2", &[], "Re: Plans", 2),
            m("3", &[], "Other", 3),
            m("4", &["1"], "Re: Plans", 9),
        ];
        assert_eq!(render(Algorithm::Refs, &msgs), "(2)(3)(1 4)");
        assert_eq!(render(Algorithm::References, &msgs), "(1 (2)(4))(3)");
    }

    #[test]
    fn references_refuses_loops_and_duplicates() {
        // a references b and b references a; a message references itself; two messages
        // share a Message-ID.
        let msgs = [
            m("a", &["b"], "A", 1),
            m("b", &["a"], "B", 2),
            m("c", &["c"], "C", 3),
            m("d", &[], "D", 4),
            m("d", &["d"], "E", 5),
        ];
        // a is processed first and names b its parent; b's claim on a would make a loop.
        assert_eq!(render(Algorithm::References, &msgs), "(2 1)(3)(4 5)");
        assert_eq!(render(Algorithm::Refs, &[]), "");
    }

    #[test]
    fn deep_chains_neither_overflow_nor_take_quadratic_time() {
        let n = 100_000;
        let msgs: Vec<_> = (0..n)
            .map(|i| {
                let prev = (i.max(1) - 1).to_string();
                let refs: Vec<&str> = if i == 0 { vec![] } else { vec![&prev] };
                m(&format!("{i}"), &refs, "Re: deep", i as i64)
            })
            .collect();
        let start = std::time::Instant::now();
        for alg in [Algorithm::References, Algorithm::Refs] {
            let out = render(alg, &msgs);
            assert!(out.starts_with("(1 2 3 "), "{}", &out[..20]);
            assert!(out.ends_with(" 100000)"));
        }
        assert!(render(Algorithm::OrderedSubject, &msgs).starts_with("(1 (2)(3)"));
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
    }
}
