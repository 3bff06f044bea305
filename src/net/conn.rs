//! The buffered connection every protocol shares, and the loop that feeds a sans-IO session.
//!
//! A protocol session ([`ProtocolSession`]) never touches a socket: it consumes bytes from the
//! connection's read buffer and appends replies to its write buffer. [`Connection::next_event`]
//! runs that loop — feed, flush, read — until the session asks the driver to do something
//! (authenticate, store a message, start TLS, close). Pipelined commands are therefore answered
//! from one pass over the buffer, and all replies produced by one read go out in one write.
//!
//! Slow clients are bounded three ways, so that trickling bytes cannot hold a connection and
//! its buffers forever: every unfinished unit of input (a command line, a whole message) must
//! arrive within [`Timeouts::line`] of its first byte plus the time [`Timeouts::min_rate`]
//! allows for its size, however the bytes are spread; every write must make progress within
//! [`Timeouts::write`]; and the memory held by all sessions' unfinished messages together is
//! bounded by a [`TransferBudget`].
//!
//! Once a session asks for it (IMAP COMPRESS), a [`DeflateLayer`] sits between the stream and
//! the two buffers: the read buffer receives inflated bytes, within its fixed capacity, and
//! every write is deflated and ends in a sync flush.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBuf;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split, Splitable};

use super::budget::TransferBudget;
use super::deflate::{DEFLATE_CHUNK, DeflateLayer, Deflater, Inflater};
use super::shutdown::ShutdownSignal;

/// A protocol state machine over bytes (SMTP, POP3, IMAP).
pub trait ProtocolSession {
    /// What the session asks its driver to do.
    type Event;
    /// Consumes what it can of `input`, appending replies to `out`. Returns the bytes consumed
    /// and `None` when it needs more input.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<Self::Event>);
    /// True between commands, when closing the connection loses nothing.
    fn is_idle(&self) -> bool;
    /// Writes the protocol's "timed out, closing" reply.
    fn on_timeout(&mut self, out: &mut Vec<u8>);
    /// Writes the protocol's "server shutting down" reply.
    fn on_shutdown(&mut self, out: &mut Vec<u8>);
    /// Memory held for input not yet handed to the driver (a message being received).
    fn held_bytes(&self) -> usize {
        0
    }
    /// The shared transfer budget is spent: drop what [`held_bytes`](Self::held_bytes) counts
    /// and refuse the transfer with a temporary failure when it ends.
    fn shed_transfer(&mut self) {}
}

/// Why [`Connection::next_event`] returned without an event.
#[derive(Debug)]
pub enum Ended {
    /// The peer closed the connection.
    PeerClosed,
    /// Idle or command timeout; the session's reply was sent.
    TimedOut,
    /// The server is shutting down; the session's reply was sent.
    Shutdown,
    Io(io::Error),
    /// A session consumed nothing from a full buffer: a protocol bug, not a client error.
    Stalled,
}

impl From<io::Error> for Ended {
    fn from(e: io::Error) -> Self {
        Ended::Io(e)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Between commands.
    pub idle: Duration,
    /// Inside a command or a message transfer, without progress.
    pub command: Duration,
    /// From the first byte of a command line or transfer: the time it may take on top of what
    /// [`min_rate`](Self::min_rate) allows for its size.
    pub line: Duration,
    /// Octets per second an unfinished transfer must average once `line` has passed.
    pub min_rate: u64,
    /// An end to the whole wait for an event, however much input keeps arriving meanwhile
    /// (IMAP's pre-login autologout: input the session answers by itself, such as NOOP, is
    /// no event, and each complete line would otherwise start the bounds above afresh).
    pub deadline: Option<Instant>,
}

/// Settings fixed for a connection's life.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    pub read_buffer: usize,
    /// A write that makes no progress for this long closes the connection.
    pub write_timeout: Duration,
    pub budget: Arc<TransferBudget>,
}

/// An unfinished unit of input: when its first byte arrived and how many have arrived since.
#[derive(Clone, Copy, Debug)]
struct Unit {
    started: Instant,
    bytes: u64,
}

impl Unit {
    /// When the unit must be complete, given what has arrived so far.
    fn deadline(&self, timeouts: &Timeouts) -> Instant {
        let for_size =
            Duration::from_millis(self.bytes.saturating_mul(1000) / timeouts.min_rate.max(1));
        self.started + timeouts.line + for_size
    }
}

/// Read buffer used while a session idles (between commands, IMAP IDLE), where only a short
/// line is expected; it grows to the full read buffer when a read fills it.
const IDLE_READ_BUFFER: usize = 256;

/// What the reply buffer starts a command with; an idle session holds none.
const REPLY_BUFFER: usize = 1024;

/// Pushes server-initiated updates while the client is expected to talk next (IMAP IDLE).
#[allow(async_fn_in_trait)]
pub trait Pusher {
    /// Resolves when there is something to push. Must be cancel-safe.
    async fn ready(&mut self);
    /// Appends the update to `out`.
    fn push(&mut self, out: &mut Vec<u8>);
}

/// A stream with a reusable read buffer and write buffer.
pub struct Connection<S> {
    /// Only `None` inside [`Connection::read_while_pushing`], which always puts it back.
    stream: Option<S>,
    /// Received bytes; `input[consumed..]` is not yet processed. Small while the session idles,
    /// grown up to `capacity` when a read fills it, and reused while the session works.
    input: Vec<u8>,
    consumed: usize,
    output: Vec<u8>,
    /// The most `input` may hold.
    capacity: usize,
    write_timeout: Duration,
    /// The unit of input in progress, if any.
    unit: Option<Unit>,
    budget: Arc<TransferBudget>,
    /// What this connection holds of `budget`.
    reserved: usize,
    /// Set by [`Connection::start_compression`]; boxed, as most connections never compress.
    compression: Option<Box<DeflateLayer>>,
}

impl<S> Drop for Connection<S> {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> Connection<S> {
    pub fn new(stream: S, settings: &ConnectionSettings) -> Self {
        Connection {
            stream: Some(stream),
            input: Vec::with_capacity(IDLE_READ_BUFFER.min(settings.read_buffer)),
            consumed: 0,
            output: Vec::new(),
            capacity: settings.read_buffer,
            write_timeout: settings.write_timeout,
            unit: None,
            budget: settings.budget.clone(),
            reserved: 0,
            compression: None,
        }
    }

    /// From the next byte on, both directions are raw DEFLATE (RFC 4978). Whatever is queued
    /// for the client (the command's tagged OK) goes out uncompressed first; input already
    /// buffered after the command was compressed by the client and is inflated from here on.
    pub async fn start_compression(&mut self, level: u32) -> io::Result<()> {
        self.flush().await?;
        let mut layer = Box::new(DeflateLayer::new(self.capacity, level));
        layer.inflater.push_raw(&self.input[self.consumed..]);
        self.input.clear();
        self.consumed = 0;
        self.compression = Some(layer);
        Ok(())
    }

    pub fn is_compressed(&self) -> bool {
        self.compression.is_some()
    }

    /// Octets in and out so far, compressed and not, if compression is on.
    pub fn compression_totals(&self) -> Option<(u64, u64, u64, u64)> {
        self.compression.as_ref().map(|c| c.totals())
    }

    /// Unprocessed input.
    pub fn buffered(&self) -> &[u8] {
        &self.input[self.consumed..]
    }

    /// Lets the session process the buffered input once, replies going to the write buffer.
    pub fn feed<P: ProtocolSession>(&mut self, session: &mut P) -> Option<P::Event> {
        if self.output.capacity() == 0 {
            // Most replies fit: one allocation instead of the doubling steps from zero.
            self.output.reserve(REPLY_BUFFER);
        }
        let (used, event) = session.feed(&self.input[self.consumed..], &mut self.output);
        self.consumed += used;
        // An event ends the unit: the driver's work (a password check, a delivery) is not the
        // client's time. So does a session back between commands with nothing left over.
        if event.is_some() || (session.is_idle() && self.consumed == self.input.len()) {
            self.unit = None;
        }
        self.account_memory(session);
        event
    }

    /// Keeps this connection's share of the transfer budget equal to what its session holds,
    /// making the session shed its transfer when the budget is spent.
    fn account_memory<P: ProtocolSession>(&mut self, session: &mut P) {
        let mut held = session.held_bytes();
        if held > self.reserved {
            if self.budget.try_reserve(held - self.reserved) {
                self.reserved = held;
                return;
            }
            tracing::info!(
                held,
                budget_used = self.budget.used(),
                "transfer memory budget spent: refusing this message"
            );
            session.shed_transfer();
            super::budget::return_freed_memory();
            held = session.held_bytes().min(self.reserved);
        }
        if held < self.reserved {
            self.budget.release(self.reserved - held);
            self.reserved = held;
        }
    }

    /// The reply buffer; written out by [`flush`](Self::flush).
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    fn stream(&mut self) -> &mut S {
        self.stream
            .as_mut()
            .expect("stream is back after read_while_pushing")
    }

    /// Gives the stream back for a TLS upgrade. Unprocessed input is dropped on purpose: bytes a
    /// client pipelined after STARTTLS/STLS must not be read as if they came over TLS
    /// (CVE-2011-0411 and its kin).
    pub fn into_stream(mut self) -> S {
        self.stream.take().expect("stream present")
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.output);
        let limit = self.write_timeout;
        let stream = self.stream.as_mut().expect("stream present");
        let deflater = self.compression.as_deref_mut().map(|c| &mut c.deflater);
        let mut buf = write_out(stream, deflater, buf, limit).await?;
        buf.clear();
        self.output = buf;
        Ok(())
    }

    /// Writes `bytes` after whatever is queued, without copying them into the reply buffer
    /// (when compressing, the compressor reads them in place).
    pub async fn write_owned<B: IoBuf + AsRef<[u8]>>(&mut self, bytes: B) -> io::Result<B> {
        let limit = self.write_timeout;
        let stream = self.stream.as_mut().expect("stream present");
        if let Some(layer) = self.compression.as_deref_mut() {
            // One sync flush at the end: the queued replies and the body go out as one stream.
            write_deflated(stream, &mut layer.deflater, &self.output, false, limit).await?;
            self.output.clear();
            write_deflated(stream, &mut layer.deflater, bytes.as_ref(), true, limit).await?;
            return Ok(bytes);
        }
        self.flush().await?;
        write_all_timed(self.stream(), bytes, limit).await
    }

    /// Makes room at the end of the read buffer, dropping what was consumed.
    fn compact(&mut self) -> io::Result<()> {
        if self.consumed == self.input.len() {
            self.input.clear();
            self.consumed = 0;
        } else if self.consumed > 0 && self.input.len() == self.input.capacity() {
            self.input.drain(..self.consumed);
            self.consumed = 0;
        }
        if self.input.len() == self.input.capacity() {
            if self.input.capacity() >= self.capacity {
                return Err(io::Error::other("read buffer full"));
            }
            // A read filled the small idle buffer: more is likely on its way (a pipelined
            // burst, a message), so grow straight to the full size.
            self.input.reserve_exact(self.capacity - self.input.len());
        }
        Ok(())
    }

    /// Gives back what a silent session does not need. Between commands a client may stay
    /// silent for minutes (in IMAP IDLE, for hours): thousands of such connections should each
    /// keep a short-line buffer, and no reply buffer (it may have grown for an earlier large
    /// response). Only called with all input consumed.
    fn shrink_for_idle(&mut self) {
        if self.input.capacity() > IDLE_READ_BUFFER {
            self.input = Vec::with_capacity(IDLE_READ_BUFFER.min(self.capacity));
            self.consumed = 0;
        }
        if self.output.is_empty() {
            self.output = Vec::new();
        }
    }

    /// Reads more input. Returns the number of new bytes (0 = peer closed).
    async fn fill(&mut self) -> io::Result<usize> {
        self.compact()?;
        let buf = std::mem::take(&mut self.input);
        let stream = self.stream.as_mut().expect("stream present");
        let inflater = self.compression.as_deref_mut().map(|c| &mut c.inflater);
        let (res, buf) = read_input(stream, inflater, buf).await;
        self.input = buf;
        res
    }

    /// Flushes the replies, then ends the run with `flow` (or `Closed` if the flush failed).
    pub async fn finish(&mut self, flow: super::Flow) -> super::Flow {
        match self.flush().await {
            Ok(()) => flow,
            Err(_) => super::Flow::Closed,
        }
    }

    /// The event a driver left pending (a session's follow-up to an earlier event), else the
    /// next one from the input. `None`: the connection is over.
    pub async fn next_event_after<P: ProtocolSession>(
        &mut self,
        pending: &mut Option<P::Event>,
        session: &mut P,
        timeouts: Timeouts,
        shutdown: &ShutdownSignal,
    ) -> Option<P::Event> {
        match pending.take() {
            Some(event) => Some(event),
            None => self.next_event(session, timeouts, shutdown).await.ok(),
        }
    }

    /// Runs the session until it produces an event, the peer leaves, a timeout hits, or (while
    /// the session is idle) the server shuts down.
    pub async fn next_event<P: ProtocolSession>(
        &mut self,
        session: &mut P,
        timeouts: Timeouts,
        shutdown: &ShutdownSignal,
    ) -> Result<P::Event, Ended> {
        loop {
            if let Some(event) = self.feed(session) {
                return Ok(event);
            }
            self.flush().await?;
            if self.consumed == 0 && self.input.len() == self.capacity {
                return Err(Ended::Stalled);
            }
            let idle = session.is_idle();
            if idle && self.consumed == self.input.len() {
                self.shrink_for_idle();
            }
            let mut limit = if idle {
                timeouts.idle
            } else {
                timeouts.command
            };
            if let Some(unit) = &self.unit {
                limit = limit.min(
                    unit.deadline(&timeouts)
                        .saturating_duration_since(Instant::now()),
                );
            }
            if idle && shutdown.is_triggered() {
                return self.end_for_shutdown(session).await;
            }
            if let Some(deadline) = timeouts.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return self.end_for_timeout(session).await;
                }
                limit = limit.min(left);
            }
            // A cancelled read may lose bytes already received; that only happens here when the
            // connection is being closed anyway (timeout or shutdown).
            let read = monoio::time::timeout(limit, self.fill());
            let outcome = if idle {
                monoio::select! {
                    r = read => Some(r),
                    _ = shutdown.wait() => None,
                }
            } else {
                Some(read.await)
            };
            match outcome {
                None => {
                    self.input = Vec::new();
                    self.consumed = 0;
                    return self.end_for_shutdown(session).await;
                }
                Some(Err(_elapsed)) => {
                    if self.unit.is_some() {
                        tracing::debug!("closing a connection whose input is too slow");
                    }
                    return self.end_for_timeout(session).await;
                }
                Some(Ok(Ok(0))) => return Err(Ended::PeerClosed),
                Some(Ok(Ok(n))) => {
                    let unit = self.unit.get_or_insert(Unit {
                        started: Instant::now(),
                        bytes: 0,
                    });
                    unit.bytes += n as u64;
                }
                Some(Ok(Err(e))) => return Err(Ended::Io(e)),
            }
        }
    }

    /// The session's "goodbye" for a timeout. The timed-out read may have taken the input
    /// buffer with it, so a fresh one is put in place.
    async fn end_for_timeout<P: ProtocolSession>(
        &mut self,
        session: &mut P,
    ) -> Result<P::Event, Ended> {
        self.input = Vec::new();
        self.consumed = 0;
        session.on_timeout(&mut self.output);
        let _ = self.flush().await;
        Err(Ended::TimedOut)
    }

    /// The session's "goodbye" for a server shutdown.
    async fn end_for_shutdown<P: ProtocolSession>(
        &mut self,
        session: &mut P,
    ) -> Result<P::Event, Ended> {
        session.on_shutdown(&mut self.output);
        let _ = self.flush().await;
        Err(Ended::Shutdown)
    }
}

impl<S: AsyncReadRent + AsyncWriteRent + Split> Connection<S> {
    /// Waits for more input while `pusher` may write updates (IMAP IDLE). The read is never
    /// cancelled to write an update — a cancelled io_uring read can lose the bytes it had
    /// already received, such as the client's `DONE` — so the stream is split and the
    /// updates go out through its write half while the read is pending. Returns the number
    /// of new bytes (0 = peer closed).
    pub async fn read_while_pushing<P: Pusher>(
        &mut self,
        pusher: &mut P,
        limit: Duration,
        shutdown: &ShutdownSignal,
    ) -> Result<usize, Ended> {
        self.compact()?;
        // Compressed input already received may hold the client's DONE: inflate it before
        // waiting for more.
        if let Some(layer) = self.compression.as_deref_mut() {
            let n = layer.inflater.inflate_into(&mut self.input)?;
            if n > 0 {
                return Ok(n);
            }
        }
        // An idle client sends a few bytes (`DONE`) after a long wait. (Inflated input that
        // fills the small buffer makes `compact` grow it back, as plain input does.)
        if self.consumed == self.input.len() {
            self.shrink_for_idle();
        }
        let buf = std::mem::take(&mut self.input);
        let (mut reader, mut writer) = self.stream.take().expect("stream present").into_split();
        let (inflater, mut deflater) = match self.compression.as_deref_mut() {
            Some(c) => (Some(&mut c.inflater), Some(&mut c.deflater)),
            None => (None, None),
        };
        let outcome = {
            let read = read_input(&mut reader, inflater, buf);
            let mut read = std::pin::pin!(read);
            let deadline = monoio::time::sleep(limit);
            let mut deadline = std::pin::pin!(deadline);
            loop {
                monoio::select! {
                    (res, buf) = &mut read => break Ok((res, buf)),
                    _ = pusher.ready() => {
                        pusher.push(&mut self.output);
                        let out = std::mem::take(&mut self.output);
                        let deflater = deflater.as_deref_mut();
                        match write_out(&mut writer, deflater, out, self.write_timeout).await {
                            Ok(mut out) => {
                                out.clear();
                                self.output = out;
                            }
                            Err(e) => break Err(Ended::Io(e)),
                        }
                    }
                    _ = &mut deadline => break Err(Ended::TimedOut),
                    _ = shutdown.wait() => break Err(Ended::Shutdown),
                }
            }
        };
        self.stream = Some(
            reader
                .reunite(writer)
                .map_err(|_| io::Error::other("split halves do not match"))?,
        );
        match outcome {
            Ok((res, buf)) => {
                self.input = buf;
                Ok(res?)
            }
            Err(ended) => {
                // The read was abandoned with its buffer; the connection is closing anyway.
                self.input = Vec::new();
                self.consumed = 0;
                Err(ended)
            }
        }
    }

    /// Says goodbye after [`read_while_pushing`](Self::read_while_pushing) ended in a timeout
    /// or a shutdown.
    pub async fn say_goodbye<P: ProtocolSession>(&mut self, session: &mut P, why: &Ended) {
        match why {
            Ended::TimedOut => session.on_timeout(&mut self.output),
            Ended::Shutdown => session.on_shutdown(&mut self.output),
            _ => return,
        }
        let _ = self.flush().await;
    }
}

/// Writes all of `buf`, failing with `TimedOut` when one write makes no progress for `limit`:
/// a client that stops reading cannot pin our replies (and their memory) for ever.
/// On failure the buffer is gone with the connection.
async fn write_all_timed<W: AsyncWriteRent, B: IoBuf>(
    writer: &mut W,
    mut buf: B,
    limit: Duration,
) -> io::Result<B> {
    let len = buf.bytes_init();
    let mut written = 0;
    while written < len {
        let write = writer.write(buf.slice(written..));
        match monoio::time::timeout(limit, write).await {
            Ok((Ok(0), _)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok((Ok(n), slice)) => {
                written += n;
                buf = slice.into_inner();
            }
            Ok((Err(e), _)) => return Err(e),
            Err(_elapsed) => {
                tracing::debug!("closing a connection that does not read its replies");
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
    }
    Ok(buf)
}

/// Writes `buf`, deflated and sync-flushed when compressing. Gives `buf` back for reuse.
async fn write_out<W: AsyncWriteRent>(
    writer: &mut W,
    deflater: Option<&mut Deflater>,
    buf: Vec<u8>,
    limit: Duration,
) -> io::Result<Vec<u8>> {
    match deflater {
        Some(deflater) => {
            write_deflated(writer, deflater, &buf, true, limit).await?;
            Ok(buf)
        }
        None => write_all_timed(writer, buf, limit).await,
    }
}

/// Deflates `data` a chunk at a time, writing the compressed output as it reaches a chunk's
/// size, so that the compressed buffer stays small however long `data` is. `sync`: end with
/// a sync flush and write everything out; otherwise some output may stay queued for the next
/// write.
async fn write_deflated<W: AsyncWriteRent>(
    writer: &mut W,
    deflater: &mut Deflater,
    data: &[u8],
    sync: bool,
    limit: Duration,
) -> io::Result<()> {
    let mut chunks = data.chunks(DEFLATE_CHUNK).peekable();
    if data.is_empty() && !sync {
        return Ok(());
    }
    loop {
        let chunk = chunks.next().unwrap_or(&[]);
        let last = chunks.peek().is_none();
        deflater.deflate(chunk, sync && last)?;
        if (sync && last) || deflater.pending() >= DEFLATE_CHUNK {
            let z = deflater.take_output();
            let z = write_all_timed(writer, z, limit).await?;
            deflater.restore_output(z, 2 * DEFLATE_CHUNK);
        }
        if last {
            return Ok(());
        }
    }
}

/// Reads more input into the spare capacity of `input`: straight from the stream, or through
/// the inflater (reading compressed bytes until at least one plain byte comes out). Returns
/// the number of new bytes, 0 when the peer closed.
async fn read_input<R: AsyncReadRent>(
    reader: &mut R,
    inflater: Option<&mut Inflater>,
    mut input: Vec<u8>,
) -> (io::Result<usize>, Vec<u8>) {
    let Some(inflater) = inflater else {
        return read_more(reader, input).await;
    };
    loop {
        match inflater.inflate_into(&mut input) {
            Ok(0) => {}
            Ok(n) => return (Ok(n), input),
            Err(e) => return (Err(e), input),
        }
        let raw = inflater.take_raw();
        if raw.len() == raw.capacity() {
            // A whole buffer of compressed input that yields nothing: no honest compressor
            // sends that.
            inflater.restore_raw(raw);
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                "compressed input makes no progress",
            );
            return (Err(e), input);
        }
        let (res, raw) = read_more(reader, raw).await;
        inflater.restore_raw(raw);
        match res {
            Ok(0) => return (Ok(0), input),
            Ok(_) => {}
            Err(e) => return (Err(e), input),
        }
    }
}

/// Reads into the spare capacity of `buf`, keeping what it holds.
async fn read_more<R: AsyncReadRent>(
    reader: &mut R,
    mut buf: Vec<u8>,
) -> (io::Result<usize>, Vec<u8>) {
    let start = buf.len();
    let end = buf.bytes_total();
    let (res, slice) = reader.read(buf.slice_mut(start..end)).await;
    (res, slice.into_inner())
}
