//! NOTIFY (RFC 5465): which changes of which mailboxes the server reports unsolicited.
//!
//! imap-codec does not know the command, so [`parse_notify`] reads it from the raw line before
//! anything else parses it; the session then carries it to the store as a NOOP with
//! [`super::codec::CommandExtras::notify`] set, because `NOTIFY SET STATUS` and the
//! account-wide change subscription need the store.
//!
//! Supported events: MessageNew (without fetch attributes: `NO [CANNOT]`), MessageExpunge,
//! FlagChange, MailboxName and SubscriptionChange, for `selected`, `selected-delayed`,
//! `personal`, `inboxes`, `subscribed`, `subtree` and `mailboxes`. Changes of the selected
//! mailbox are reported as at a NOOP (EXISTS, EXPUNGE or VANISHED, FETCH FLAGS;
//! `selected-delayed` keeps expunges for the next command that allows them); message changes
//! of other mailboxes as `* STATUS name (MESSAGES n UIDNEXT n UNSEEN n)` (§5.2); names as
//! `* LIST` (`\NonExistent` after DELETE, `OLDNAME` after RENAME, `\Subscribed` or not after
//! SUBSCRIBE/UNSUBSCRIBE). The annotation and metadata events are refused with
//! `NO [BADEVENT]`, as §3.1 asks.
//!
//! The driver delivers the reports while the client is silent between commands and during
//! IDLE (`driver`'s notify pusher), from the store's account subscription — no polling.

use super::codec::{mutf7_decode, tag_of};
use super::commands::mailboxes::write_status;
use super::commands::write_mailbox;
use super::{ImapResult, ImapSession, Step};
use crate::imap_w;
use crate::store::{
    AccountChange, AccountChangeReceiver, MailStore, MailboxChange, MailboxInfo, NameChange,
};

/// The events this server can report, in `BADEVENT` order.
pub const SUPPORTED_EVENTS: &str =
    "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange";

/// Message events requested for a set of mailboxes. MessageNew and MessageExpunge always come
/// together (§5), so one flag stands for both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub messages: bool,
    pub flags: bool,
    /// MailboxName: created, deleted, renamed.
    pub names: bool,
    /// SubscriptionChange.
    pub subscriptions: bool,
}

impl Events {
    pub fn none(&self) -> bool {
        !self.messages && !self.flags && !self.names && !self.subscriptions
    }

    /// Whether a change of this kind is to be reported.
    pub fn wants(&self, change: &MailboxChange) -> bool {
        match change {
            MailboxChange::Appended { .. } | MailboxChange::Expunged { .. } => self.messages,
            MailboxChange::FlagsChanged { .. } => self.flags,
            MailboxChange::Named(NameChange::Subscription { .. }) => self.subscriptions,
            MailboxChange::Named(_) => self.names,
            MailboxChange::Gone => false,
        }
    }
}

/// The mailboxes of one filter other than the selected one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxSet {
    Personal,
    Inboxes,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

impl MailboxSet {
    fn contains(&self, name: &str, subscribed: bool) -> bool {
        match self {
            MailboxSet::Personal => true,
            // The only mailbox that mail delivery puts messages into.
            MailboxSet::Inboxes => name == "INBOX",
            MailboxSet::Subscribed => subscribed,
            MailboxSet::Subtree(roots) => roots.iter().any(|r| {
                name == r
                    || name
                        .strip_prefix(r.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }),
            MailboxSet::Mailboxes(names) => names.iter().any(|n| n == name),
        }
    }
}

/// What `NOTIFY SET` asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifySpec {
    /// `STATUS`: report the current state of the watched mailboxes at once.
    pub status: bool,
    /// The selected mailbox's events, and whether expunges wait (`selected-delayed`).
    pub selected: Option<(Events, bool)>,
    /// Filters for the other mailboxes, in the client's order: the first that names a
    /// mailbox decides its events (a later filter cannot widen or narrow it).
    pub others: Vec<(MailboxSet, Events)>,
}

impl NotifySpec {
    /// Events for a mailbox other than the selected one.
    pub fn events_for(&self, info: &MailboxInfo) -> Events {
        self.events_for_name(&info.name, info.subscribed)
    }

    /// Events for a mailbox name (one that may no longer, or not yet, exist).
    pub fn events_for_name(&self, name: &str, subscribed: bool) -> Events {
        self.others
            .iter()
            .find(|(set, _)| set.contains(name, subscribed))
            .map(|(_, ev)| *ev)
            .unwrap_or_default()
    }

    /// Whether any mailbox besides the selected one is watched.
    pub fn watches_others(&self) -> bool {
        self.others.iter().any(|(_, ev)| !ev.none())
    }

    /// Whether the selected mailbox's changes are pushed, and if expunges wait.
    pub fn selected_events(&self) -> Option<(Events, bool)> {
        self.selected.filter(|(ev, _)| !ev.none())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyRequest {
    None,
    Set(NotifySpec),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyError {
    /// Malformed command: tagged BAD.
    Syntax(&'static str),
    /// An event this server does not report: `NO [BADEVENT (...)]`.
    BadEvent,
    /// MessageNew with fetch attributes: understood, not offered.
    FetchAtt,
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Atom(String),
    Str(String),
}

/// Splits the arguments into parentheses, atoms and strings (quoted or literal).
fn tokenize(mut s: &[u8]) -> Result<Vec<Token>, NotifyError> {
    let mut out = Vec::new();
    const BAD: NotifyError = NotifyError::Syntax("Invalid NOTIFY arguments");
    while let Some(&c) = s.first() {
        match c {
            b' ' => s = &s[1..],
            b'(' => {
                out.push(Token::Open);
                s = &s[1..];
            }
            b')' => {
                out.push(Token::Close);
                s = &s[1..];
            }
            b'"' => {
                let mut v = Vec::new();
                let mut i = 1;
                loop {
                    match s.get(i) {
                        None | Some(b'\r' | b'\n') => return Err(BAD),
                        Some(b'\\') => {
                            v.push(*s.get(i + 1).ok_or(BAD)?);
                            i += 2;
                        }
                        Some(b'"') => break,
                        Some(&b) => {
                            v.push(b);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(String::from_utf8(v).map_err(|_| BAD)?));
                s = &s[i + 1..];
            }
            b'{' => {
                let end = s.iter().position(|&b| b == b'}').ok_or(BAD)?;
                let n = std::str::from_utf8(&s[1..end]).map_err(|_| BAD)?;
                let n: usize = n.trim_end_matches('+').parse().map_err(|_| BAD)?;
                let rest = s[end + 1..].strip_prefix(b"\r\n").ok_or(BAD)?;
                let body = rest.get(..n).ok_or(BAD)?;
                out.push(Token::Str(
                    String::from_utf8(body.to_vec()).map_err(|_| BAD)?,
                ));
                s = &rest[n..];
            }
            _ => {
                let end = s
                    .iter()
                    .position(|&b| matches!(b, b' ' | b'(' | b')' | b'"' | b'\r' | b'\n'))
                    .unwrap_or(s.len());
                if end == 0 {
                    return Err(BAD);
                }
                let atom = std::str::from_utf8(&s[..end]).map_err(|_| BAD)?;
                out.push(Token::Atom(atom.to_string()));
                s = &s[end..];
            }
        }
    }
    Ok(out)
}

/// `tag NOTIFY ...`: `None` if the command is another one; otherwise the request or its error.
/// `rev2`: mailbox names are UTF-8 (else modified UTF-7).
pub fn parse_notify(line: &[u8], rev2: bool) -> Option<Result<NotifyRequest, NotifyError>> {
    let tag = tag_of(line);
    let rest = line.get(tag.len() + 1..)?;
    let verb = rest.get(..6)?;
    if !verb.eq_ignore_ascii_case(b"NOTIFY") || !matches!(rest.get(6), None | Some(b' ' | b'\r')) {
        return None;
    }
    let args = &rest[6..];
    let args = args.strip_suffix(b"\r\n").unwrap_or(args);
    Some(tokenize(args).and_then(|t| parse_tokens(&t, rev2)))
}

fn parse_tokens(t: &[Token], rev2: bool) -> Result<NotifyRequest, NotifyError> {
    let atom = |i: usize| match t.get(i) {
        Some(Token::Atom(a)) => Some(a.to_ascii_lowercase()),
        _ => None,
    };
    match atom(0).as_deref() {
        Some("none") if t.len() == 1 => return Ok(NotifyRequest::None),
        Some("set") => {}
        _ => return Err(NotifyError::Syntax("Expected NOTIFY SET or NOTIFY NONE")),
    }
    let mut spec = NotifySpec::default();
    let mut i = 1;
    if atom(1).as_deref() == Some("status") {
        spec.status = true;
        i = 2;
    }
    if i >= t.len() {
        return Err(NotifyError::Syntax(
            "NOTIFY SET needs at least one event group",
        ));
    }
    // Unsupported events are reported only once the whole command parses: a BAD has priority.
    let mut unsupported = false;
    let mut fetch_att = false;
    while i < t.len() {
        if t[i] != Token::Open {
            return Err(NotifyError::Syntax("Expected ( to start an event group"));
        }
        i += 1;
        let filter = atom(i).ok_or(NotifyError::Syntax("Expected a mailbox filter"))?;
        i += 1;
        let set = match filter.as_str() {
            "selected" | "selected-delayed" => None,
            "personal" => Some(MailboxSet::Personal),
            "inboxes" => Some(MailboxSet::Inboxes),
            "subscribed" => Some(MailboxSet::Subscribed),
            "subtree" | "mailboxes" => {
                let names = mailbox_list(t, &mut i, rev2)?;
                Some(if filter == "subtree" {
                    MailboxSet::Subtree(names)
                } else {
                    MailboxSet::Mailboxes(names)
                })
            }
            _ => return Err(NotifyError::Syntax("Unknown mailbox filter")),
        };
        let (events, unknown, fa) = events(t, &mut i, set.is_none())?;
        unsupported |= unknown;
        fetch_att |= fa;
        if t.get(i) != Some(&Token::Close) {
            return Err(NotifyError::Syntax("Expected ) to end an event group"));
        }
        i += 1;
        match set {
            None => {
                if spec.selected.is_some() {
                    return Err(NotifyError::Syntax("The selected mailbox is named twice"));
                }
                spec.selected = Some((events, filter == "selected-delayed"));
            }
            Some(set) => spec.others.push((set, events)),
        }
    }
    if unsupported {
        return Err(NotifyError::BadEvent);
    }
    if fetch_att {
        return Err(NotifyError::FetchAtt);
    }
    Ok(NotifyRequest::Set(spec))
}

fn mailbox_name(tok: Option<&Token>, rev2: bool) -> Result<String, NotifyError> {
    let raw = match tok {
        Some(Token::Atom(a) | Token::Str(a)) => a,
        _ => return Err(NotifyError::Syntax("Expected a mailbox name")),
    };
    if raw.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    if rev2 {
        Ok(raw.clone())
    } else {
        mutf7_decode(raw).ok_or(NotifyError::Syntax("Invalid modified UTF-7 mailbox name"))
    }
}

fn mailbox_list(t: &[Token], i: &mut usize, rev2: bool) -> Result<Vec<String>, NotifyError> {
    if t.get(*i) != Some(&Token::Open) {
        let name = mailbox_name(t.get(*i), rev2)?;
        *i += 1;
        return Ok(vec![name]);
    }
    *i += 1;
    let mut names = Vec::new();
    while t.get(*i) != Some(&Token::Close) {
        names.push(mailbox_name(t.get(*i), rev2)?);
        *i += 1;
    }
    *i += 1;
    if names.is_empty() {
        return Err(NotifyError::Syntax("Empty mailbox list"));
    }
    Ok(names)
}

/// `NONE` or `(event ...)`: the events, whether an unsupported one was named, and whether
/// MessageNew came with fetch attributes.
fn events(t: &[Token], i: &mut usize, selected: bool) -> Result<(Events, bool, bool), NotifyError> {
    match t.get(*i) {
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case("NONE") => {
            *i += 1;
            return Ok((Events::default(), false, false));
        }
        Some(Token::Open) => *i += 1,
        _ => return Err(NotifyError::Syntax("Expected NONE or a list of events")),
    }
    let (mut new, mut expunge, mut flags, mut unsupported, mut fetch_att) =
        (false, false, false, false, false);
    let (mut names, mut subscriptions) = (false, false);
    loop {
        let name = match t.get(*i) {
            Some(Token::Close) => break,
            Some(Token::Atom(a)) => a.to_ascii_lowercase(),
            _ => return Err(NotifyError::Syntax("Expected an event")),
        };
        *i += 1;
        match name.as_str() {
            "messagenew" => {
                new = true;
                if t.get(*i) == Some(&Token::Open) {
                    if !selected {
                        return Err(NotifyError::Syntax(
                            "Fetch attributes are only for the selected mailbox",
                        ));
                    }
                    fetch_att = true;
                    let mut depth = 0usize;
                    loop {
                        match t.get(*i) {
                            None => return Err(NotifyError::Syntax("Unbalanced parentheses")),
                            Some(Token::Open) => depth += 1,
                            Some(Token::Close) => depth -= 1,
                            _ => {}
                        }
                        *i += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                }
            }
            "messageexpunge" => expunge = true,
            "flagchange" => flags = true,
            "mailboxname" => names = true,
            "subscriptionchange" => subscriptions = true,
            _ => unsupported = true,
        }
    }
    *i += 1;
    if new != expunge {
        return Err(NotifyError::Syntax(
            "MessageNew and MessageExpunge must be requested together",
        ));
    }
    if flags && !new {
        return Err(NotifyError::Syntax(
            "FlagChange needs MessageNew and MessageExpunge",
        ));
    }
    let events = Events {
        messages: new,
        flags,
        names,
        subscriptions,
    };
    Ok((events, unsupported, fetch_att))
}

/// The mailbox ids to report, each once, in the order of their first change, with whether
/// any of its changes is one the spec asks for (decided later against the mailbox's filter).
pub fn changed_mailboxes(changes: &[AccountChange]) -> Vec<(u64, Vec<&MailboxChange>)> {
    let mut out: Vec<(u64, Vec<&MailboxChange>)> = Vec::new();
    for c in changes {
        match out.iter_mut().find(|(id, _)| *id == c.mailbox) {
            Some((_, list)) => list.push(&c.change),
            None => out.push((c.mailbox, vec![&c.change])),
        }
    }
    out
}

impl ImapSession {
    /// `NOTIFY SET` / `NOTIFY NONE`, carried to the store as a NOOP.
    pub(crate) fn notify_command<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        request: NotifyRequest,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        self.sync_selected(store, true, out);
        match request {
            NotifyRequest::None => {
                self.notify = None;
                self.account_changes = None;
            }
            NotifyRequest::Set(spec) => {
                let account = self.account.clone().unwrap_or_default();
                // Subscribed before STATUS reads the mailboxes, so no change can fall between
                // the two unreported.
                self.account_changes = spec
                    .watches_others()
                    .then(|| store.subscribe_account(&account));
                if spec.status {
                    let selected = self.selected.as_ref().map(|m| m.id);
                    for info in store.list_mailboxes(&account) {
                        if Some(info.id) != selected && !spec.events_for(&info).none() {
                            self.write_notify_status(&info, out);
                        }
                    }
                }
                self.notify = Some(spec);
            }
        }
        imap_w!(out, "{tag} OK NOTIFY completed\r\n");
        Ok(Step::Done)
    }

    /// §5.2: a watched mailbox other than the selected one changed.
    fn write_notify_status(&self, info: &MailboxInfo, out: &mut Vec<u8>) {
        let mut items = vec!["MESSAGES", "UIDNEXT", "UNSEEN"];
        if self.reporting.condstore {
            items.push("HIGHESTMODSEQ");
        }
        write_status(out, info, self.rev2, 0, items.into_iter());
    }

    /// §5.4/§5.5: `* LIST (attrs) "/" name`, with OLDNAME after a rename (RFC 5258 §3.5).
    fn write_list(&self, name: &str, attrs: &str, old: Option<&str>, out: &mut Vec<u8>) {
        imap_w!(out, "* LIST ({attrs}) \"/\" ");
        write_mailbox(out, name, self.rev2);
        if let Some(old) = old {
            out.extend_from_slice(b" (\"OLDNAME\" (");
            write_mailbox(out, old, self.rev2);
            out.extend_from_slice(b"))");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// NOTIFY is in force: the driver pushes [`Self::notify_update`] between commands.
    pub fn notifying(&self) -> bool {
        self.notify.is_some()
    }

    /// The account-wide change receiver, for a driver that waits on it beside the socket
    /// (give it back with [`Self::restore_account_changes`]).
    pub fn take_account_changes(&mut self) -> Option<AccountChangeReceiver> {
        self.account_changes.take()
    }

    /// Gives back a receiver from [`Self::take_account_changes`]; dropped if NOTIFY was
    /// changed meanwhile.
    pub fn restore_account_changes(&mut self, rx: AccountChangeReceiver) {
        if self.notify.as_ref().is_some_and(NotifySpec::watches_others)
            && self.account_changes.is_none()
        {
            self.account_changes = Some(rx);
        }
    }

    /// Reports what NOTIFY asks for: the selected mailbox's changes if `selected_changed`
    /// (its change receiver fired), and a STATUS for each other watched mailbox in `changes`.
    pub fn notify_update<S: MailStore>(
        &mut self,
        store: &S,
        selected_changed: bool,
        changes: &[AccountChange],
        out: &mut Vec<u8>,
    ) {
        let Some(spec) = self.notify.clone() else {
            return;
        };
        if selected_changed {
            if let Some(mb) = self.selected.as_mut() {
                mb.mark_dirty();
            }
            if let Some((_, delayed)) = spec.selected_events() {
                self.sync_selected(store, !delayed, out);
            }
        }
        if changes.is_empty() {
            return;
        }
        let account = self.account.clone().unwrap_or_default();
        let selected = self.selected.as_ref().map(|m| m.id);
        let infos = store.list_mailboxes(&account);
        let subscribed = |name: &str| infos.iter().any(|i| i.name == name && i.subscribed);
        for change in changes {
            let MailboxChange::Named(named) = &change.change else {
                continue;
            };
            let wanted = |name: &str, subscribed: bool| {
                spec.events_for_name(name, subscribed).wants(&change.change)
            };
            match named {
                NameChange::Created(name) if wanted(name, subscribed(name)) => {
                    self.write_list(name, "", None, out)
                }
                NameChange::Deleted(name) if wanted(name, subscribed(name)) => {
                    self.write_list(name, "\\NonExistent", None, out)
                }
                NameChange::Renamed { from, to }
                    if wanted(to, subscribed(to)) || wanted(from, false) =>
                {
                    self.write_list(to, "", Some(from), out)
                }
                // The name was subscribed before or after, so `subscribed` watches it.
                NameChange::Subscription { name, subscribed } if wanted(name, true) => {
                    let attr = if *subscribed { "\\Subscribed" } else { "" };
                    self.write_list(name, attr, None, out)
                }
                _ => {}
            }
        }
        for (id, kinds) in changed_mailboxes(changes) {
            if Some(id) == selected {
                continue;
            }
            // A mailbox deleted since is reported by nothing: MailboxName is not offered.
            let Some(info) = infos.iter().find(|i| i.id == id) else {
                continue;
            };
            let events = spec.events_for(info);
            // Name events were reported above, as LIST.
            let reported = |c: &MailboxChange| !matches!(c, MailboxChange::Named(_));
            if kinds.iter().any(|c| reported(c) && events.wants(c)) {
                self.write_notify_status(info, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NotifyRequest, NotifyError> {
        parse_notify(s.as_bytes(), true).expect("a NOTIFY command")
    }

    const BOTH: Events = Events {
        messages: true,
        flags: false,
        names: false,
        subscriptions: false,
    };
    const ALL: Events = Events {
        messages: true,
        flags: true,
        names: false,
        subscriptions: false,
    };

    #[test]
    fn parses_set_and_none() {
        assert_eq!(parse("a NOTIFY NONE\r\n"), Ok(NotifyRequest::None));
        assert_eq!(
            parse(
                "a notify set status (selected (MessageNew MessageExpunge FlagChange)) \
                 (subtree (Lists \"Work Stuff\") (MessageNew MessageExpunge)) \
                 (mailboxes {5}\r\nSpam! NONE) (personal (MessageExpunge MessageNew))\r\n"
            ),
            Ok(NotifyRequest::Set(NotifySpec {
                status: true,
                selected: Some((ALL, false)),
                others: vec![
                    (
                        MailboxSet::Subtree(vec!["Lists".into(), "Work Stuff".into()]),
                        BOTH
                    ),
                    (
                        MailboxSet::Mailboxes(vec!["Spam!".into()]),
                        Events::default()
                    ),
                    (MailboxSet::Personal, BOTH),
                ],
            }))
        );
        assert_eq!(
            parse("a NOTIFY SET (selected-delayed (MessageNew MessageExpunge)) (inboxes NONE)"),
            Ok(NotifyRequest::Set(NotifySpec {
                status: false,
                selected: Some((BOTH, true)),
                others: vec![(MailboxSet::Inboxes, Events::default())],
            }))
        );
        assert_eq!(parse_notify(b"a NOOP\r\n", true), None);
        assert_eq!(parse_notify(b"a NOTIFYX SET\r\n", true), None);
    }

    #[test]
    fn modified_utf7_names_for_rev1() {
        assert_eq!(
            parse_notify(
                b"a NOTIFY SET (mailboxes (inbox Entw&APw-rfe) (MessageNew MessageExpunge))",
                false
            ),
            Some(Ok(NotifyRequest::Set(NotifySpec {
                status: false,
                selected: None,
                others: vec![(
                    MailboxSet::Mailboxes(vec!["INBOX".into(), "Entwürfe".into()]),
                    BOTH
                )],
            })))
        );
    }

    #[test]
    fn errors() {
        let bad = |s: &str| matches!(parse(s), Err(NotifyError::Syntax(_)));
        assert!(bad("a NOTIFY"));
        assert!(bad("a NOTIFY SET"));
        assert!(bad("a NOTIFY SET STATUS"));
        assert!(bad("a NOTIFY NONE (selected NONE)"));
        assert!(bad("a NOTIFY SET (selected (MessageNew))"));
        assert!(bad(
            "a NOTIFY SET (selected (MessageExpunge FlagChange MessageNew) extra)"
        ));
        assert!(bad("a NOTIFY SET (personal (FlagChange))"));
        assert!(bad("a NOTIFY SET (selected NONE) (selected-delayed NONE)"));
        assert!(bad("a NOTIFY SET (elsewhere NONE)"));
        assert!(bad("a NOTIFY SET (mailboxes () NONE)"));
        assert!(bad("a NOTIFY SET (selected (MessageNew MessageExpunge)"));
        assert!(bad(
            "a NOTIFY SET (personal (MessageNew (UID) MessageExpunge))"
        ));
        // A syntax error wins over an unsupported event.
        assert!(bad(
            "a NOTIFY SET (personal (ServerMetadata)) (nowhere NONE)"
        ));
        assert_eq!(
            parse("a NOTIFY SET (personal (MailboxName AnnotationChange))"),
            Err(NotifyError::BadEvent)
        );
        assert_eq!(
            parse("a NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER]) MessageExpunge))"),
            Err(NotifyError::FetchAtt)
        );
    }
}
