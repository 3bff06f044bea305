//! What the sink received, counted across cores with relaxed atomics (each core adds a whole
//! reply batch at a time, a few adds per message), plus the JSON snapshot that `--stats-file`
//! and the summary print.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::session::Tally;

#[derive(Debug, Default)]
pub struct Counters {
    connections: AtomicU64,
    connections_open: AtomicU64,
    tls_sessions: AtomicU64,
    messages: AtomicU64,
    messages_rejected: AtomicU64,
    recipients_accepted: AtomicU64,
    recipients_tempfailed: AtomicU64,
    recipients_permfailed: AtomicU64,
    recipients_delivered: AtomicU64,
    bytes: AtomicU64,
    command_errors: AtomicU64,
    dump_numbers: AtomicU64,
    dumped: AtomicU64,
    dump_errors: AtomicU64,
    /// 0 = none yet.
    first_connection_unix_ms: AtomicU64,
    last_message_unix_ms: AtomicU64,
}

/// The counters at one instant (`--stats-file`, the summary). Field names are the JSON keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Connections accepted.
    pub connections: u64,
    /// Connections open right now.
    pub connections_open: u64,
    /// Successful STARTTLS handshakes.
    pub tls_sessions: u64,
    /// Messages accepted (250 after DATA / `BDAT … LAST`) with at least one accepted recipient.
    pub messages: u64,
    /// Transactions refused at DATA/BDAT: no accepted recipient, or too big.
    pub messages_rejected: u64,
    /// RCPT answered 250 / 451 / 550.
    pub recipients_accepted: u64,
    pub recipients_tempfailed: u64,
    pub recipients_permfailed: u64,
    /// Accepted recipients of accepted messages: what a relay has delivered (`--expect`).
    pub recipients_delivered: u64,
    /// Content octets of accepted messages, after dot-unstuffing.
    pub bytes: u64,
    /// Commands answered 500/501.
    pub command_errors: u64,
    /// Files written to `--dump-dir`, and writes that failed (the message was still answered 250).
    pub dumped: u64,
    pub dump_errors: u64,
    pub first_connection_unix_ms: Option<u64>,
    pub last_message_unix_ms: Option<u64>,
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Relaxed);
    }
}

impl Counters {
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
        if self.first_connection_unix_ms.load(Relaxed) == 0 {
            let _ = self
                .first_connection_unix_ms
                .compare_exchange(0, unix_ms(), Relaxed, Relaxed);
        }
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub fn tls_session(&self) {
        self.tls_sessions.fetch_add(1, Relaxed);
    }

    /// Number (1-based) for the next `--dump-dir` file.
    pub fn next_dump_number(&self) -> u64 {
        self.dump_numbers.fetch_add(1, Relaxed) + 1
    }

    pub fn dump_written(&self, ok: bool) {
        if ok {
            self.dumped.fetch_add(1, Relaxed);
        } else {
            self.dump_errors.fetch_add(1, Relaxed);
        }
    }

    pub fn recipients_delivered(&self) -> u64 {
        self.recipients_delivered.load(Relaxed)
    }

    /// Adds what a session did in one reply batch.
    pub fn add(&self, t: &Tally) {
        add(&self.recipients_accepted, t.recipients_accepted);
        add(&self.recipients_tempfailed, t.recipients_tempfailed);
        add(&self.recipients_permfailed, t.recipients_permfailed);
        add(&self.messages_rejected, t.messages_rejected);
        add(&self.command_errors, t.command_errors);
        add(&self.bytes, t.bytes);
        if t.messages > 0 {
            self.last_message_unix_ms.fetch_max(unix_ms(), Relaxed);
            add(&self.messages, t.messages);
            // Last: a reader polling this counter (--expect) sees the rest already added.
            add(&self.recipients_delivered, t.recipients_delivered);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let ms = |a: &AtomicU64| Some(a.load(Relaxed)).filter(|v| *v != 0);
        Snapshot {
            connections: self.connections.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            tls_sessions: self.tls_sessions.load(Relaxed),
            messages: self.messages.load(Relaxed),
            messages_rejected: self.messages_rejected.load(Relaxed),
            recipients_accepted: self.recipients_accepted.load(Relaxed),
            recipients_tempfailed: self.recipients_tempfailed.load(Relaxed),
            recipients_permfailed: self.recipients_permfailed.load(Relaxed),
            recipients_delivered: self.recipients_delivered.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            command_errors: self.command_errors.load(Relaxed),
            dumped: self.dumped.load(Relaxed),
            dump_errors: self.dump_errors.load(Relaxed),
            first_connection_unix_ms: ms(&self.first_connection_unix_ms),
            last_message_unix_ms: ms(&self.last_message_unix_ms),
        }
    }
}

/// Replaces `path` with `json` atomically (write `path.tmp`, then rename), so a script polling
/// the file never reads half of it.
pub fn write_atomically(path: &Path, json: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_add_up_and_timestamps_appear() {
        let c = Counters::default();
        assert_eq!(c.snapshot(), Snapshot::default());
        c.connection_opened();
        c.add(&Tally {
            recipients_accepted: 3,
            recipients_tempfailed: 1,
            messages: 1,
            recipients_delivered: 3,
            bytes: 100,
            ..Tally::default()
        });
        c.add(&Tally {
            recipients_permfailed: 2,
            command_errors: 1,
            ..Tally::default()
        });
        c.connection_closed();
        let s = c.snapshot();
        assert_eq!(
            (s.connections, s.connections_open, s.messages, s.bytes),
            (1, 0, 1, 100)
        );
        assert_eq!(
            (
                s.recipients_accepted,
                s.recipients_tempfailed,
                s.recipients_permfailed,
                s.recipients_delivered,
                s.command_errors
            ),
            (3, 1, 2, 3, 1)
        );
        assert!(s.first_connection_unix_ms.is_some());
        assert!(s.last_message_unix_ms >= s.first_connection_unix_ms);
    }

    #[test]
    fn stats_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("sink-counters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stats.json");
        write_atomically(&path, b"{\"a\":1}").unwrap();
        write_atomically(&path, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":2}");
        assert!(!dir.join("stats.json.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
