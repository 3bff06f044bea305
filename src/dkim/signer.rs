//! [`DkimSigner`]: signing off the event loops, on a small pool of threads.

use std::sync::Arc;

use bytes::Bytes;
use futures_channel::oneshot;

use super::{DkimError, DkimKey, DkimKeys, from_domain, sign};

/// Signatures waiting for a thread, per thread. An RSA-2048 signature takes about a
/// millisecond, so a full queue is about a second of work: past that, callers get an error
/// at once (and retry later) instead of latency and memory growing without bound.
const QUEUE_PER_THREAD: usize = 1024;

struct Job {
    key: Arc<DkimKey>,
    message: Bytes,
    reply: oneshot::Sender<Result<Vec<u8>, DkimError>>,
}

struct Shared {
    keys: DkimKeys,
    jobs: crossbeam_channel::Sender<Job>,
}

/// Signs outbound messages with the key of their From domain. Cheap to clone, `Send + Sync`,
/// usable from any async runtime (or none); the threads exit when the last clone is dropped.
#[derive(Clone)]
pub struct DkimSigner {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigner")
            .field("keys", &self.shared.keys.len())
            .finish_non_exhaustive()
    }
}

impl DkimSigner {
    /// Starts `threads` signer threads (at least one). Panics only if the OS refuses to start
    /// a thread, as `std::thread::spawn` does.
    pub fn start(keys: DkimKeys, threads: usize) -> DkimSigner {
        let threads = threads.max(1);
        Self::start_with_queue(keys, threads, threads * QUEUE_PER_THREAD)
    }

    /// [`Self::start`] with room for `queue_capacity` (at least one) signatures waiting for a
    /// thread; beyond it [`Self::sign`] fails at once with "queue full".
    pub fn start_with_queue(keys: DkimKeys, threads: usize, queue_capacity: usize) -> DkimSigner {
        let threads = threads.max(1);
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(queue_capacity.max(1));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("surel-dkim-{i}"))
                .spawn(move || {
                    while let Ok(job) = queue.recv() {
                        // The caller may have given up (its future dropped): nothing to tell.
                        let _ = job.reply.send(sign(&job.key, &job.message));
                    }
                })
                .expect("starting a DKIM signer thread");
        }
        DkimSigner {
            shared: Arc::new(Shared { keys, jobs }),
        }
    }

    /// The keys this signer signs with.
    pub fn keys(&self) -> &DkimKeys {
        &self.shared.keys
    }

    /// The `DKIM-Signature` field to prepend to `message`, or None when no key covers the
    /// domain of its From address (mail of other domains leaves unsigned). Finding that
    /// domain reads only the header, on the caller's thread; the signature itself is made on
    /// a signer thread.
    pub async fn sign(&self, message: Bytes) -> Result<Option<Vec<u8>>, DkimError> {
        let Some(domain) = from_domain(&message) else {
            return Ok(None);
        };
        let Some(key) = self.shared.keys.shared_for_domain(&domain) else {
            return Ok(None);
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            key: key.clone(),
            message,
            reply,
        };
        match self.shared.jobs.try_send(job) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                return Err(DkimError("DKIM signer queue full; try again later".into()));
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(DkimError("DKIM signer threads are gone".into()));
            }
        }
        match answer.await {
            Ok(signed) => signed.map(Some),
            Err(oneshot::Canceled) => Err(DkimError("a DKIM signer thread died".into())),
        }
    }
}
