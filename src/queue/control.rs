//! The operator's queue commands — `surel queue list|flush|remove|bounce|hold|release` — and
//! `surel store compact`, and the control socket that lets them work while the server runs.
//!
//! A running server listens on `<data_dir>/control.sock` (a Unix socket, mode 0600, served by
//! one small thread, never by a core). The CLI sends one request line and reads the answer:
//! `OK` or `ERR <why>` on the first line, then the output. When no server runs, the CLI opens
//! the store itself (the data directory's lock makes the two exclusive) and runs the same
//! [`execute`]; only `flush` needs a running server.
//!
//! Every change goes through the store's queue updates, so it is durable before it is
//! reported, and the owning core's scheduler hears of it like of any other change.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

use crate::delivery::dsn;
use crate::delivery::pipeline::report_message;
use crate::delivery::trace::{rfc5322_date, unix_now};
use crate::store::{
    LogStore, QueueStore, QueueUpdate, QueuedMessage, RecipientState, RecipientStatus,
};

pub const CONTROL_SOCKET: &str = "control.sock";

/// One queue command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    List {
        json: bool,
    },
    Flush,
    Remove(String),
    Bounce(String),
    Hold(String),
    Release(String),
    /// Compact the mailbox logs now (`None`: the configured threshold).
    StoreCompact {
        dead_pct: Option<u8>,
    },
}

impl Command {
    /// The request line sent over the control socket.
    pub fn to_line(&self) -> String {
        match self {
            Command::List { json: false } => "list".into(),
            Command::List { json: true } => "list --json".into(),
            Command::Flush => "flush".into(),
            Command::Remove(id) => format!("remove {id}"),
            Command::Bounce(id) => format!("bounce {id}"),
            Command::Hold(id) => format!("hold {id}"),
            Command::Release(id) => format!("release {id}"),
            Command::StoreCompact { dead_pct: None } => "store compact".into(),
            Command::StoreCompact { dead_pct: Some(p) } => format!("store compact {p}"),
        }
    }

    /// How long the CLI waits for the server's answer.
    fn answer_timeout(&self) -> std::time::Duration {
        match self {
            // A pass over a large store reads and rewrites gigabytes.
            Command::StoreCompact { .. } => std::time::Duration::from_secs(3600),
            _ => std::time::Duration::from_secs(60),
        }
    }

    pub fn parse(line: &str) -> Result<Command, String> {
        if let Some(rest) = line.strip_prefix("store ") {
            let mut words = rest.split_whitespace();
            return match (words.next(), words.next(), words.next()) {
                (Some("compact"), None, None) => Ok(Command::StoreCompact { dead_pct: None }),
                (Some("compact"), Some(p), None) => match p.parse::<u8>() {
                    Ok(p) if p <= 100 => Ok(Command::StoreCompact { dead_pct: Some(p) }),
                    _ => Err(format!("store compact: bad percentage {p:?}")),
                },
                _ => Err(format!("unknown store command {rest:?}")),
            };
        }
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        let arg = words.next();
        if words.next().is_some() {
            return Err(format!("{verb}: too many arguments"));
        }
        let id = |arg: Option<&str>| -> Result<String, String> {
            let id = arg.ok_or_else(|| format!("{verb}: a queue id is needed"))?;
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("{verb}: bad queue id {id:?}"));
            }
            Ok(id.to_string())
        };
        let cmd = match verb {
            "list" => Command::List {
                json: arg == Some("--json"),
            },
            "flush" => Command::Flush,
            "remove" => Command::Remove(id(arg)?),
            "bounce" => Command::Bounce(id(arg)?),
            "hold" => Command::Hold(id(arg)?),
            "release" => Command::Release(id(arg)?),
            other => return Err(format!("unknown queue command {other:?}")),
        };
        Ok(cmd)
    }
}

/// What a bounce by the operator needs besides the store.
#[derive(Clone, Debug)]
pub struct BounceSettings {
    pub hostname: String,
    pub return_limit: usize,
}

/// Runs a future to completion on this thread (the store's futures only wait on a oneshot
/// answered by a writer thread, so parking is enough).
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Runs `cmd` against the store. `running`: a server's schedulers will see a flush.
pub fn execute(
    store: &LogStore,
    cmd: &Command,
    bounce: &BounceSettings,
    running: bool,
) -> Result<String, String> {
    let found = |id: &str| {
        store
            .find_queued(id)
            .ok_or_else(|| format!("{id}: no such message in the queue"))
    };
    let update = |shard: usize, u: QueueUpdate, reports| {
        block_on(store.deliver(Vec::new(), shard, reports, vec![u]))
            .map(|_| ())
            .map_err(|e| format!("{e}"))
    };
    match cmd {
        Command::StoreCompact { dead_pct } => {
            let r = block_on(store.compact(*dead_pct)).map_err(|e| e.to_string())?;
            Ok(format!(
                "compacted {} segment{}, reclaimed {} bytes\n",
                r.segments,
                if r.segments == 1 { "" } else { "s" },
                r.bytes_reclaimed
            ))
        }
        Command::List { json } => {
            let mut all: Vec<QueuedMessage> = (0..store.queue_shards())
                .flat_map(|s| store.queue_list(s))
                .collect();
            all.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
            Ok(if *json {
                list_json(&all)
            } else {
                list_text(&all)
            })
        }
        Command::Flush => {
            if !running {
                return Ok(
                    "the server is not running: queued mail is tried when it starts\n".into(),
                );
            }
            store.queue_flush();
            Ok("flush requested\n".into())
        }
        Command::Remove(id) => {
            let (shard, _) = found(id)?;
            update(
                shard,
                QueueUpdate {
                    id: id.clone(),
                    remove: true,
                    ..Default::default()
                },
                Vec::new(),
            )?;
            tracing::info!("{id}: removed by the administrator");
            Ok(format!("{id}: removed\n"))
        }
        Command::Hold(id) | Command::Release(id) => {
            let (shard, _) = found(id)?;
            let hold = matches!(cmd, Command::Hold(_));
            update(
                shard,
                QueueUpdate {
                    id: id.clone(),
                    held: Some(hold),
                    ..Default::default()
                },
                Vec::new(),
            )?;
            Ok(format!(
                "{id}: {}\n",
                if hold { "held" } else { "released" }
            ))
        }
        Command::Bounce(id) => {
            let (shard, m) = found(id)?;
            let now = unix_now() as i64;
            let reason = "550 5.0.0 message returned by the administrator";
            let open: Vec<u32> = m
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.status.state.is_final())
                .map(|(i, _)| i as u32)
                .collect();
            let mut reports = Vec::new();
            if !m.envelope.mail_from.is_empty() {
                let original = store.queue_bytes(shard, id).map_err(|e| e.to_string())?;
                let recipients: Vec<dsn::ReportedRecipient<'_>> = open
                    .iter()
                    .map(|&i| &m.recipients[i as usize])
                    .filter(|r| r.notify.on_failure())
                    .map(|r| dsn::ReportedRecipient {
                        address: &r.address,
                        orcpt: r.orcpt.as_deref(),
                        action: dsn::Action::Failed,
                        status: "5.0.0".into(),
                        remote_mta: None,
                        diagnostic: reason,
                    })
                    .collect();
                if !recipients.is_empty() {
                    reports.push(report_message(
                        &dsn::Report {
                            reporting_mta: &bounce.hostname,
                            queue_id: id,
                            to: &m.envelope.mail_from,
                            envid: m.envelope.envid.as_deref(),
                            ret: m.envelope.ret,
                            arrival: m.created,
                            lifetime: None,
                            recipients,
                            original: &original,
                            return_limit: bounce.return_limit,
                        },
                        now,
                    ));
                }
            }
            let u = QueueUpdate {
                id: id.clone(),
                recipients: open
                    .iter()
                    .map(|&i| {
                        let prev = &m.recipients[i as usize].status;
                        (
                            i,
                            RecipientStatus {
                                state: RecipientState::Failed,
                                attempts: prev.attempts,
                                next_attempt: 0,
                                last_reply: reason.into(),
                                delay_warned: prev.delay_warned,
                            },
                        )
                    })
                    .collect(),
                ..Default::default()
            };
            let report_id = reports.first().map(|r| r.id.clone());
            update(shard, u, reports)?;
            for &i in &open {
                tracing::info!(
                    "{id}: to=<{}>, relay=none, delay={}, dsn=5.0.0, status=bounced ({reason})",
                    m.recipients[i as usize].address,
                    now - m.created
                );
            }
            Ok(match report_id {
                Some(r) => format!("{id}: returned to <{}> as {r}\n", m.envelope.mail_from),
                None => format!("{id}: failed (no report wanted)\n"),
            })
        }
    }
}

fn when(t: i64, now: i64) -> String {
    if t <= now {
        "now".into()
    } else {
        rfc5322_date(t as u64)
    }
}

fn list_text(all: &[QueuedMessage]) -> String {
    let now = unix_now() as i64;
    let mut out = String::new();
    let mut rcpts = 0;
    for m in all {
        out.push_str(&format!(
            "{:<14} {:>9} {}  <{}>{}\n",
            m.id,
            m.size,
            rfc5322_date(m.created.max(0) as u64),
            m.envelope.mail_from,
            if m.held { "  (held)" } else { "" }
        ));
        for r in &m.recipients {
            rcpts += 1;
            out.push_str(&format!(
                "    {:<9} attempts={:<3} next={}  <{}>\n",
                r.status.state.name(),
                r.status.attempts,
                if r.status.state.is_final() {
                    "-".into()
                } else {
                    when(r.status.next_attempt, now)
                },
                r.address
            ));
            if !r.status.last_reply.is_empty() {
                out.push_str(&format!("        ({})\n", r.status.last_reply));
            }
        }
    }
    out.push_str(&format!(
        "-- {} message{}, {} recipient{}\n",
        all.len(),
        if all.len() == 1 { "" } else { "s" },
        rcpts,
        if rcpts == 1 { "" } else { "s" }
    ));
    out
}

fn list_json(all: &[QueuedMessage]) -> String {
    let mut out = String::new();
    for m in all {
        let v = serde_json::json!({
            "id": m.id,
            "size": m.size,
            "arrival": m.created,
            "sender": m.envelope.mail_from,
            "held": m.held,
            "recipients": m.recipients.iter().map(|r| serde_json::json!({
                "address": r.address,
                "state": r.status.state.name(),
                "attempts": r.status.attempts,
                "next_attempt": r.status.next_attempt,
                "last_reply": r.status.last_reply,
            })).collect::<Vec<_>>(),
        });
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Serves the control socket until the process ends. Returns the socket path.
pub fn serve(data_dir: &Path, store: LogStore, bounce: BounceSettings) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(CONTROL_SOCKET);
    // A socket left by a killed server; the data directory lock says nobody else uses it.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let mut reader = BufReader::new(&conn);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.len() > 256 {
                    continue;
                }
                let answer = Command::parse(line.trim())
                    .and_then(|cmd| execute(&store, &cmd, &bounce, true));
                let mut w = &conn;
                let _ = match answer {
                    Ok(text) => write!(w, "OK\n{text}"),
                    Err(why) => writeln!(w, "ERR {why}"),
                };
            }
        })?;
    Ok(path)
}

/// Sends `cmd` to a running server. `Ok(None)`: no server listens.
pub fn send(data_dir: &Path, cmd: &Command) -> Result<Option<Result<String, String>>, String> {
    let path = data_dir.join(CONTROL_SOCKET);
    let mut conn = match UnixStream::connect(&path) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let _ = conn.set_read_timeout(Some(cmd.answer_timeout()));
    writeln!(conn, "{}", cmd.to_line()).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(match status.trim_end().strip_prefix("ERR ") {
        Some(why) => Err(why.to_string()),
        None if status.trim_end() == "OK" => Ok(rest),
        None => Err(format!("unexpected answer from the server: {status:?}")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_refuse_garbage() {
        for c in [
            Command::List { json: false },
            Command::List { json: true },
            Command::Flush,
            Command::Remove("1PJaCPHDY0001".into()),
            Command::Bounce("A1".into()),
            Command::Hold("A1".into()),
            Command::Release("A1".into()),
            Command::StoreCompact { dead_pct: None },
            Command::StoreCompact { dead_pct: Some(80) },
        ] {
            assert_eq!(Command::parse(&c.to_line()), Ok(c));
        }
        for bad in [
            "",
            "remove",
            "remove ../x",
            "hold a b",
            "explode",
            "bounce a;b",
            "store",
            "store check",
            "store compact 101",
            "store compact x",
            "store compact 5 6",
        ] {
            assert!(Command::parse(bad).is_err(), "{bad}");
        }
    }
}
