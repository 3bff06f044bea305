//! FETCH / UID FETCH: item selection, \Seen side effect, CHANGEDSINCE/VANISHED, and the
//! per-message response writer.
//!
//! A FETCH is a [`FetchJob`] that writes one message at a time straight into `out`; after
//! `flush_threshold` bytes it yields [`Step::Flush`] so a `FETCH 1:* BODY[]` over a big
//! mailbox never builds the whole response in memory. Literal bodies are copied once, from
//! the store's bytes into `out` (no intermediate encoder).
//!
//! ENVELOPE/BODY/BODYSTRUCTURE are rendered once per message and kept in a per-thread cache
//! keyed by (account, mailbox, UIDVALIDITY, UID), so repeated fetches do not re-parse.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use imap_codec::imap_types::{
    command::FetchModifier,
    fetch::{Macro, MacroOrMessageDataItemNames, MessageDataItemName},
    sequence::SequenceSet,
};

use super::bodystructure::RenderedStructure;
use super::codec::{write_internal_date, write_literal, write_string};
use super::mailbox::{SyncOutcome, write_flags};
use super::preview::PreviewRequest;
use super::section::{self, SectionKind, SectionSpec};
use super::sequence::{self, format_sorted};
use super::session::{ImapSession, State, Step};
use super::{ImapError, ImapResult, mime};
use crate::imap_w;
use crate::store::{FlagOp, Flags, MailStore, MessageMeta, SystemFlags};

/// How a body section is labelled in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Body,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Uid,
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    Body,
    BodyStructure,
    ModSeq,
    Section {
        spec: SectionSpec,
        partial: Option<(u32, u32)>,
        peek: bool,
        label: Label,
    },
    Binary {
        path: Vec<u32>,
        partial: Option<(u32, u32)>,
        peek: bool,
    },
    BinarySize {
        path: Vec<u32>,
    },
    /// RFC 8970, see [`super::preview`].
    Preview,
    /// RFC 8474, see [`super::objectid`].
    EmailId,
    ThreadId,
    /// RFC 8514, see [`super::savedate`].
    SaveDate,
}

impl FetchItem {
    fn sets_seen(&self) -> bool {
        matches!(
            self,
            FetchItem::Section { peek: false, .. } | FetchItem::Binary { peek: false, .. }
        )
    }
    fn needs_raw(&self) -> bool {
        matches!(
            self,
            FetchItem::Section { .. }
                | FetchItem::Binary { .. }
                | FetchItem::BinarySize { .. }
                | FetchItem::Preview
        )
    }
    fn needs_structure(&self) -> bool {
        matches!(
            self,
            FetchItem::Envelope | FetchItem::Body | FetchItem::BodyStructure
        )
    }
}

/// Convert imap-types' item names.
pub fn items_from(names: &MacroOrMessageDataItemNames<'_>) -> Vec<FetchItem> {
    let list: Vec<MessageDataItemName<'_>> = match names {
        MacroOrMessageDataItemNames::Macro(m) => match m {
            Macro::Fast => vec![
                MessageDataItemName::Flags,
                MessageDataItemName::InternalDate,
                MessageDataItemName::Rfc822Size,
            ],
            Macro::All => vec![
                MessageDataItemName::Flags,
                MessageDataItemName::InternalDate,
                MessageDataItemName::Rfc822Size,
                MessageDataItemName::Envelope,
            ],
            Macro::Full => vec![
                MessageDataItemName::Flags,
                MessageDataItemName::InternalDate,
                MessageDataItemName::Rfc822Size,
                MessageDataItemName::Envelope,
                MessageDataItemName::Body,
            ],
            #[allow(unreachable_patterns)]
            _ => vec![MessageDataItemName::Flags],
        },
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v.clone(),
    };
    let mut items = Vec::with_capacity(list.len());
    let partial = |p: &Option<(u32, std::num::NonZeroU32)>| p.map(|(s, l)| (s, l.get()));
    for n in &list {
        let item = match n {
            MessageDataItemName::Uid => FetchItem::Uid,
            MessageDataItemName::Flags => FetchItem::Flags,
            MessageDataItemName::InternalDate => FetchItem::InternalDate,
            MessageDataItemName::Rfc822Size => FetchItem::Rfc822Size,
            MessageDataItemName::Envelope => FetchItem::Envelope,
            MessageDataItemName::Body => FetchItem::Body,
            MessageDataItemName::BodyStructure => FetchItem::BodyStructure,
            MessageDataItemName::ModSeq => FetchItem::ModSeq,
            MessageDataItemName::BodyExt {
                section,
                partial: p,
                peek,
            } => FetchItem::Section {
                spec: SectionSpec::from_imap(section.as_ref()),
                partial: partial(p),
                peek: *peek,
                label: Label::Body,
            },
            MessageDataItemName::Rfc822 => FetchItem::Section {
                spec: SectionSpec {
                    path: vec![],
                    kind: SectionKind::Full,
                },
                partial: None,
                peek: false,
                label: Label::Rfc822,
            },
            MessageDataItemName::Rfc822Header => FetchItem::Section {
                spec: SectionSpec {
                    path: vec![],
                    kind: SectionKind::Header,
                },
                partial: None,
                peek: true,
                label: Label::Rfc822Header,
            },
            MessageDataItemName::Rfc822Text => FetchItem::Section {
                spec: SectionSpec {
                    path: vec![],
                    kind: SectionKind::Text,
                },
                partial: None,
                peek: false,
                label: Label::Rfc822Text,
            },
            MessageDataItemName::Binary {
                section,
                partial: p,
                peek,
            } => FetchItem::Binary {
                path: section.iter().map(|n| n.get()).collect(),
                partial: partial(p),
                peek: *peek,
            },
            MessageDataItemName::BinarySize { section } => FetchItem::BinarySize {
                path: section.iter().map(|n| n.get()).collect(),
            },
        };
        if !items.contains(&item) {
            items.push(item);
        }
    }
    items
}

/// A FETCH in progress.
#[derive(Debug)]
pub struct FetchJob {
    pub tag: String,
    pub items: Vec<FetchItem>,
    /// View indices still to write (ascending), and the position reached.
    pub indices: Vec<usize>,
    pub next: usize,
    pub uid: bool,
    /// Messages whose \Seen was just set: add FLAGS to their response.
    pub flags_for: HashSet<usize>,
    /// Messages that could not be read (expunged meanwhile).
    pub missing: bool,
}

/// Rendered structures of one mailbox (one UIDVALIDITY), by UID.
pub type MailboxCache = Rc<RefCell<HashMap<u32, Rc<RenderedStructure>>>>;

/// Entries kept per thread before the cache is emptied.
const CACHE_MAX: usize = 20_000;

thread_local! {
    /// (account, mailbox, UIDVALIDITY) → that mailbox's structures; the total number of
    /// structures across mailboxes is in `CACHED`.
    static STRUCTURE_CACHE: RefCell<HashMap<(String, String, u32), MailboxCache>> =
        RefCell::new(HashMap::new());
    static CACHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The structure cache of one mailbox (looked up once per FETCH chunk, not per message).
pub fn mailbox_cache(account: &str, mailbox: &str, uidvalidity: u32) -> MailboxCache {
    STRUCTURE_CACHE.with(|c| {
        c.borrow_mut()
            .entry((account.to_string(), mailbox.to_string(), uidvalidity))
            .or_default()
            .clone()
    })
}

/// ENVELOPE/BODY/BODYSTRUCTURE of a message, rendered at most once per thread (while it
/// stays cached). Without `raw`, only a cache hit is returned.
pub fn cached_structure(
    cache: &MailboxCache,
    uid: u32,
    raw: Option<&[u8]>,
) -> Option<Rc<RenderedStructure>> {
    if let Some(hit) = cache.borrow().get(&uid).cloned() {
        return Some(hit);
    }
    let rendered = Rc::new(RenderedStructure::render(raw?));
    if CACHED.with(|n| n.get()) >= CACHE_MAX {
        // Crude but bounded: forget everything (running jobs keep their mailbox handle).
        STRUCTURE_CACHE.with(|c| {
            for m in c.borrow().values() {
                m.borrow_mut().clear();
            }
            c.borrow_mut().clear();
        });
        CACHED.with(|n| n.set(0));
    }
    if cache.borrow_mut().insert(uid, rendered.clone()).is_none() {
        CACHED.with(|n| n.set(n.get() + 1));
    }
    Some(rendered)
}

/// A BODY[] / RFC822 literal. A plain literal must not hold NUL (RFC 3501 §4.3 and RFC 9051
/// §4.3: CHAR8 excludes it), and literal8 is only allowed for BINARY[] (RFC 3516 §4.2), so a
/// message or part sent in `Content-Transfer-Encoding: binary` with NUL bytes has them
/// replaced by 0x80, as Dovecot does: the octet count stays the same (RFC822.SIZE and
/// partial fetches still add up), and a client that wants the exact bytes asks BINARY[].
fn write_text_literal(out: &mut Vec<u8>, data: &[u8]) {
    if !data.contains(&0) {
        write_literal(out, data);
        return;
    }
    let replaced: Vec<u8> = data
        .iter()
        .map(|&b| if b == 0 { 0x80 } else { b })
        .collect();
    write_literal(out, &replaced);
}

/// Write one `* n FETCH (...)` response. `raw` must be given when an item needs it.
#[allow(clippy::too_many_arguments)]
pub fn write_fetch_response(
    out: &mut Vec<u8>,
    msn: usize,
    meta: &MessageMeta,
    items: &[FetchItem],
    raw: Option<&[u8]>,
    structure: Option<&RenderedStructure>,
    with_flags: bool,
    recent: bool,
) {
    imap_w!(out, "* {msn} FETCH (");
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    let mut tree: Option<mime::MimePart> = None;
    for item in items {
        match item {
            FetchItem::Uid => {
                sep(out);
                imap_w!(out, "UID {}", meta.uid);
            }
            FetchItem::Flags => {
                sep(out);
                out.extend_from_slice(b"FLAGS ");
                write_flags(out, &meta.flags, recent);
            }
            FetchItem::InternalDate => {
                sep(out);
                out.extend_from_slice(b"INTERNALDATE ");
                write_internal_date(out, meta.internal_date);
            }
            FetchItem::Rfc822Size => {
                sep(out);
                imap_w!(out, "RFC822.SIZE {}", meta.size);
            }
            FetchItem::ModSeq => {
                sep(out);
                imap_w!(out, "MODSEQ ({})", meta.modseq);
            }
            FetchItem::Envelope | FetchItem::Body | FetchItem::BodyStructure => {
                let Some(st) = structure else { continue };
                sep(out);
                let (name, data): (&[u8], &[u8]) = match item {
                    FetchItem::Envelope => (b"ENVELOPE ", &st.envelope),
                    FetchItem::Body => (b"BODY ", &st.body),
                    _ => (b"BODYSTRUCTURE ", &st.bodystructure),
                };
                out.extend_from_slice(name);
                out.extend_from_slice(data);
            }
            FetchItem::Section {
                spec,
                partial,
                label,
                ..
            } => {
                let Some(raw) = raw else { continue };
                sep(out);
                match label {
                    Label::Body => {
                        imap_w!(out, "BODY[{}]", spec.name());
                        if let Some((start, _)) = partial {
                            imap_w!(out, "<{start}>");
                        }
                        out.push(b' ');
                    }
                    Label::Rfc822 => out.extend_from_slice(b"RFC822 "),
                    Label::Rfc822Header => out.extend_from_slice(b"RFC822.HEADER "),
                    Label::Rfc822Text => out.extend_from_slice(b"RFC822.TEXT "),
                }
                let data = if spec.header_only() {
                    Some(section::extract_header(raw, spec))
                } else if spec.path.is_empty() && spec.kind == SectionKind::Full {
                    Some(raw.into())
                } else {
                    let root = tree.get_or_insert_with(|| mime::parse(raw));
                    section::extract(raw, root, spec)
                };
                let data = data.unwrap_or_default();
                write_text_literal(out, section::partial(&data, *partial));
            }
            FetchItem::Binary { path, partial, .. } => {
                let Some(raw) = raw else { continue };
                let root = tree.get_or_insert_with(|| mime::parse(raw));
                sep(out);
                imap_w!(out, "BINARY[{}]", path_name(path));
                if let Some((start, _)) = partial {
                    imap_w!(out, "<{start}>");
                }
                match section::binary(raw, root, path) {
                    Ok(data) => {
                        let data = section::partial(&data, *partial);
                        if data.contains(&0) {
                            out.extend_from_slice(b" ~");
                        } else {
                            out.push(b' ');
                        }
                        write_literal(out, data);
                    }
                    Err(_) => out.extend_from_slice(b" NIL"),
                }
            }
            FetchItem::BinarySize { path } => {
                let Some(raw) = raw else { continue };
                let root = tree.get_or_insert_with(|| mime::parse(raw));
                sep(out);
                let n = section::binary(raw, root, path)
                    .map(|d| d.len())
                    .unwrap_or(0);
                imap_w!(out, "BINARY.SIZE[{}] {n}", path_name(path));
            }
            FetchItem::Preview => {
                let Some(raw) = raw else { continue };
                sep(out);
                out.extend_from_slice(b"PREVIEW ");
                write_string(out, super::preview::preview(raw).as_bytes());
            }
            FetchItem::EmailId => {
                sep(out);
                imap_w!(
                    out,
                    "EMAILID ({})",
                    super::objectid::email_id(meta.email_id)
                );
            }
            FetchItem::ThreadId => {
                sep(out);
                out.extend_from_slice(b"THREADID NIL");
            }
            FetchItem::SaveDate => {
                sep(out);
                super::savedate::write_save_date(out, meta);
            }
        }
    }
    if with_flags && !items.contains(&FetchItem::Flags) {
        sep(out);
        out.extend_from_slice(b"FLAGS ");
        write_flags(out, &meta.flags, recent);
    }
    out.extend_from_slice(b")\r\n");
}

fn path_name(path: &[u32]) -> String {
    path.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

impl ImapSession {
    /// Start a FETCH / UID FETCH.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start_fetch<S: MailStore>(
        &mut self,
        store: &S,
        tag: String,
        set: &SequenceSet,
        names: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
        preview: Option<PreviewRequest>,
        extra: Option<super::objectid::ExtraFetchItems>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let account = self.account.clone().unwrap_or_default();
        let rep = self.reporting;
        let mb = self
            .selected
            .as_mut()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        let mut items = items_from(names);
        if let Some(request) = preview {
            if request.alone {
                // UID only stood in for PREVIEW in the command imap-codec parsed.
                items.retain(|i| *i != FetchItem::Uid);
            }
            items.push(FetchItem::Preview);
        }
        if let Some(extra) = extra {
            if extra.alone {
                // UID only stood in for these items in the command imap-codec parsed.
                items.retain(|i| *i != FetchItem::Uid);
            }
            for (wanted, item) in [
                (extra.email_id, FetchItem::EmailId),
                (extra.thread_id, FetchItem::ThreadId),
                (extra.save_date, FetchItem::SaveDate),
            ] {
                if wanted {
                    items.push(item);
                }
            }
        }
        // UID FETCH, and every FETCH once QRESYNC is on (RFC 7162 §3.2.4), carries the UID.
        if (uid || rep.qresync) && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid);
        }
        let mut indices = if uid {
            mb.resolve_uid(set)
        } else {
            sequence::resolve_msn(set, mb.exists())?
        };
        let mut changed_since = None;
        let mut vanished = false;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(v) => changed_since = Some(v.get()),
                FetchModifier::Vanished => vanished = true,
            }
        }
        if vanished && (!uid || !rep.qresync || changed_since.is_none()) {
            return Err(ImapError::bad(
                "VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE",
            ));
        }
        if (items.contains(&FetchItem::ModSeq) || changed_since.is_some())
            && !self.reporting.condstore
        {
            // As `enable_condstore`, with the mailbox already borrowed.
            self.reporting.condstore = true;
            imap_w!(
                out,
                "* OK [HIGHESTMODSEQ {}] Highest\r\n",
                mb.highest_modseq.max(1)
            );
        }
        if let Some(cs) = changed_since {
            if !items.contains(&FetchItem::ModSeq) {
                items.push(FetchItem::ModSeq);
            }
            indices.retain(|&i| mb.messages[i].modseq > cs);
            if vanished {
                let gone: Vec<u32> = store
                    .expunged_since(&account, &mb.name, cs)?
                    .into_iter()
                    .filter(|&u| sequence::contains(set, u, mb.max_uid().max(u)))
                    .collect();
                if !gone.is_empty() {
                    let mut gone = gone;
                    gone.sort_unstable();
                    gone.dedup();
                    imap_w!(out, "* VANISHED (EARLIER) {}\r\n", format_sorted(&gone));
                }
            }
        }
        let mut flags_for = HashSet::new();
        if !mb.read_only && items.iter().any(FetchItem::sets_seen) {
            let unseen: Vec<u32> = indices
                .iter()
                .map(|&i| &mb.messages[i])
                .filter(|m| m.flags.system.0 & SystemFlags::SEEN == 0)
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                let seen = Flags {
                    system: SystemFlags(SystemFlags::SEEN),
                    keywords: vec![],
                };
                let changed = store
                    .store_flags(&account, &mb.name, &unseen, FlagOp::Add, seen, None)
                    .await?;
                flags_for.extend(mb.apply_flags(&changed));
            }
        }
        self.fetch_job = Some(FetchJob {
            tag,
            items,
            indices,
            next: 0,
            uid,
            flags_for,
            missing: false,
        });
        Ok(self.continue_fetch(store, out).await)
    }

    /// Write the next chunk of the FETCH in progress.
    pub(crate) async fn continue_fetch<S: MailStore>(
        &mut self,
        store: &S,
        out: &mut Vec<u8>,
    ) -> Step {
        let Some(mut job) = self.fetch_job.take() else {
            return Step::Done;
        };
        let account = self.account.clone().unwrap_or_default();
        let threshold = self.config.flush_threshold;
        let condstore = self.reporting.condstore;
        let Some(mb) = self.selected.as_ref() else {
            ImapError::bad("No mailbox selected").write_tagged(&job.tag, out);
            return Step::Done;
        };
        let needs_raw = job.items.iter().any(FetchItem::needs_raw);
        let needs_structure = job.items.iter().any(FetchItem::needs_structure);
        let cache = needs_structure.then(|| mailbox_cache(&account, &mb.name, mb.uidvalidity));
        while job.next < job.indices.len() {
            let idx = job.indices[job.next];
            job.next += 1;
            let meta = &mb.messages[idx];
            let mut structure = None;
            let mut raw = None;
            if let Some(cache) = &cache {
                structure = cached_structure(cache, meta.uid, None);
            }
            if needs_raw || (needs_structure && structure.is_none()) {
                // Awaited: a cold body read must not hold up the core's other sessions. The
                // selected mailbox cannot change meanwhile: this session runs one command at a
                // time.
                match store.read_body(&account, &mb.name, meta.uid).await {
                    Ok(bytes) => raw = Some(bytes),
                    Err(e) => {
                        tracing::debug!(uid = meta.uid, error = %e, "imap: fetch of a vanished message");
                        job.missing = true;
                        continue;
                    }
                }
                if let Some(cache) = cache.as_ref().filter(|_| structure.is_none()) {
                    structure = cached_structure(cache, meta.uid, raw.as_deref());
                }
            }
            let with_flags = job.flags_for.contains(&idx);
            let mut items_buf;
            let items: &[FetchItem] =
                if with_flags && condstore && !job.items.contains(&FetchItem::ModSeq) {
                    items_buf = job.items.clone();
                    items_buf.push(FetchItem::ModSeq);
                    &items_buf
                } else {
                    &job.items
                };
            write_fetch_response(
                out,
                idx + 1,
                meta,
                items,
                raw.as_deref(),
                structure.as_deref(),
                with_flags,
                mb.is_recent(meta.uid, self.reporting),
            );
            if out.len() >= threshold && job.next < job.indices.len() {
                self.fetch_job = Some(job);
                return Step::Flush;
            }
        }
        // Done: updates (no EXPUNGE during FETCH; allowed during UID FETCH).
        self.sync_selected(store, job.uid, out);
        if job.missing {
            // RFC 5530: the client may want to NOOP soon; the data it asked for is gone.
            imap_w!(
                out,
                "{} OK [EXPUNGEISSUED] Some messages were expunged meanwhile\r\n",
                job.tag
            );
        } else {
            imap_w!(out, "{} OK FETCH completed\r\n", job.tag);
        }
        Step::Done
    }

    /// A command turned CONDSTORE on (RFC 7162 §3.1): the first time, with a mailbox
    /// selected, the client learns its HIGHESTMODSEQ before the command's own responses.
    pub(crate) fn enable_condstore(&mut self, out: &mut Vec<u8>) {
        if self.reporting.condstore {
            return;
        }
        self.reporting.condstore = true;
        if let Some(mb) = &self.selected {
            imap_w!(
                out,
                "* OK [HIGHESTMODSEQ {}] Highest\r\n",
                mb.highest_modseq.max(1)
            );
        }
    }

    /// Sync the selected mailbox with the store at a command boundary.
    pub(crate) fn sync_selected<S: MailStore>(
        &mut self,
        store: &S,
        allow_expunge: bool,
        out: &mut Vec<u8>,
    ) {
        let account = self.account.clone().unwrap_or_default();
        let rep = self.reporting;
        let Some(mb) = self.selected.as_mut() else {
            return;
        };
        // Expunges wait until the live results have said REMOVEFROM (RFC 5267 §4.3.4).
        if mb.sync(store, &account, false, rep, out) == SyncOutcome::Gone {
            self.selected = None;
            self.state = State::Authenticated;
            out.extend_from_slice(b"* OK [CLOSED] The selected mailbox was deleted\r\n");
            return;
        }
        self.update_contexts(store, out);
        if let Some(mb) = self.selected.as_mut()
            && allow_expunge
            && !mb.pending_expunge.is_empty()
        {
            mb.announce_expunges(rep, out);
            // Criteria on message numbers now mean other messages.
            self.update_contexts(store, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::mime::tests::NESTED;

    fn meta() -> MessageMeta {
        MessageMeta {
            uid: 42,
            size: NESTED.len() as u32,
            internal_date: 1_700_000_000,
            flags: Flags {
                system: SystemFlags(SystemFlags::SEEN),
                keywords: vec!["$Label1".into()],
            },
            modseq: 9,
            needs_dot_stuffing: false,
            email_id: Default::default(),
            saved: None,
        }
    }

    fn items(s: &str) -> Vec<FetchItem> {
        use imap_codec::{CommandCodec, decode::Decoder, imap_types::command::CommandBody};
        let line = format!("a FETCH 1 {s}\r\n");
        let (_, cmd) = CommandCodec::default().decode(line.as_bytes()).unwrap();
        match cmd.body {
            CommandBody::Fetch {
                macro_or_item_names,
                ..
            } => items_from(&macro_or_item_names),
            _ => panic!(),
        }
    }

    fn render(spec: &str) -> String {
        let st = RenderedStructure::render(NESTED);
        let mut out = Vec::new();
        write_fetch_response(
            &mut out,
            3,
            &meta(),
            &items(spec),
            Some(NESTED),
            Some(&st),
            false,
            false,
        );
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn structure_cache_hits_without_the_message() {
        let cache = mailbox_cache("cache-test", "INBOX", 7);
        assert!(cached_structure(&cache, 1, None).is_none());
        let first = cached_structure(&cache, 1, Some(NESTED)).unwrap();
        // Second lookup: no bytes needed, same rendering.
        let again = cached_structure(&mailbox_cache("cache-test", "INBOX", 7), 1, None).unwrap();
        assert!(Rc::ptr_eq(&first, &again));
        // Another UIDVALIDITY is another mailbox.
        assert!(cached_structure(&mailbox_cache("cache-test", "INBOX", 8), 1, None).is_none());
    }

    #[test]
    fn simple_items() {
        assert_eq!(
            render("(UID FLAGS RFC822.SIZE INTERNALDATE MODSEQ)"),
            format!(
                "* 3 FETCH (UID 42 FLAGS (\\Seen $Label1) RFC822.SIZE {} INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" MODSEQ (9))\r\n",
                NESTED.len()
            )
        );
        assert!(
            render("ALL")
                .contains("ENVELOPE (NIL \"nested\" ((\"Alice\" NIL \"alice\" \"example.org\"))")
        );
        assert!(render("FULL").contains(" BODY (("));
    }

    #[test]
    fn sections_and_partial() {
        let r = render("(BODY.PEEK[1.1] BODY[2.HEADER.FIELDS (SUBJECT)] BODY[]<0.4>)");
        assert_eq!(
            r,
            "* 3 FETCH (BODY[1.1] {10}\r\nplain text BODY[2.HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: inner\r\n\r\n BODY[]<0> {4}\r\nFrom)\r\n"
        );
        let r = render("(BINARY.PEEK[2.2] BINARY.SIZE[2.2])");
        assert_eq!(
            r,
            "* 3 FETCH (BINARY[2.2] {5}\r\nhello BINARY.SIZE[2.2] 5)\r\n"
        );
        let r = render("(RFC822.HEADER)");
        assert!(r.starts_with("* 3 FETCH (RFC822.HEADER {"), "{r}");
        assert!(items("BODY[TEXT]")[0].sets_seen());
        assert!(!items("BODY.PEEK[TEXT]")[0].sets_seen());
        assert!(items("RFC822")[0].sets_seen());
    }
}
