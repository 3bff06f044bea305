//! Where the server's log lines go: a buffer that a writer thread empties into stderr.
//!
//! A core formats a line and appends it to the buffer under a short lock; it never makes a
//! system call for it and never waits on whatever reads stderr (a terminal, a pipe to a log
//! collector, a file on a busy disk). The writer thread wakes every few milliseconds, or at
//! once when the buffer grows large, and writes everything in one call — at thousands of
//! deliveries per second that is one write per few hundred lines instead of one per line, and
//! no wake-up per line. Nothing is dropped: past [`MAX_PENDING`] bytes a logging thread waits
//! for the writer (a log that cannot keep up slows the server rather than losing lines).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a line may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// Past this many pending bytes the writer is woken at once.
const WAKE_AT: usize = 64 << 10;
/// Past this many pending bytes, loggers wait for the writer.
const MAX_PENDING: usize = 16 << 20;

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer (buffer large, or closing).
    wake: Condvar,
    /// Wakes loggers waiting for room.
    room: Condvar,
}

/// The `MakeWriter` for tracing-subscriber.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

/// Flushes and stops the writer thread when dropped (at the end of `main`).
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BufferedStderr {
    /// Starts the writer thread, writing to stderr.
    pub fn start() -> std::io::Result<(BufferedStderr, FlushGuard)> {
        Self::start_to(std::io::stderr())
    }

    /// Starts the writer thread, writing to `out`.
    pub fn start_to(
        out: impl Write + Send + 'static,
    ) -> std::io::Result<(BufferedStderr, FlushGuard)> {
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_loop(&writer, out))?;
        Ok((
            BufferedStderr {
                shared: shared.clone(),
            },
            FlushGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

fn write_loop(shared: &Shared, mut target: impl Write) {
    let mut out = Vec::new();
    loop {
        let closed = {
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.pending.is_empty() && !st.closed {
                st = shared
                    .wake
                    .wait_timeout(st, FLUSH_EVERY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            std::mem::swap(&mut out, &mut st.pending);
            st.closed
        };
        shared.room.notify_all();
        if !out.is_empty() {
            // Nothing sensible to do if stderr is gone.
            let _ = target.write_all(&out);
            let _ = target.flush();
            out.clear();
        }
        if closed {
            let st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.pending.is_empty() {
                return;
            }
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One event's line, collected then appended to the buffer in one piece.
pub struct LineWriter {
    shared: Arc<Shared>,
    line: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.pending.len() > MAX_PENDING && !st.closed {
            st = self.shared.room.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.pending.extend_from_slice(&self.line);
        if st.pending.len() >= WAKE_AT {
            self.shared.wake.notify_one();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            shared: self.shared.clone(),
            line: Vec::with_capacity(256),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// A `Write` whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_whole_in_order_and_all_written() {
        let sink = Sink::default();
        let (w, guard) = BufferedStderr::start_to(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        writeln!(w.make_writer(), "thread {t} line {i}").unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4000);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..1000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected);
        }
    }

    #[test]
    fn a_line_is_out_within_the_flush_interval() {
        let sink = Sink::default();
        let (w, _guard) = BufferedStderr::start_to(sink.clone()).unwrap();
        writeln!(w.make_writer(), "hello").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while sink.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "not flushed");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hello\n");
    }
}
