//! Reading message bodies without stalling a core.
//!
//! A `pread` of a body that is not in the page cache waits for the disk, and on a core thread
//! that wait stalls every session of the core. So bodies read for FETCH and RETR go:
//! - with io_uring, through an io_uring read (monoio's file API): the kernel serves cached pages
//!   at once and hands a cold read to its own workers;
//! - with epoll, first through `preadv2(RWF_NOWAIT)`, which copies what is cached and refuses to
//!   wait for the disk; whatever is left is read by a small pool of reader threads shared by all
//!   cores, and the session's task awaits the result.
//!
//! Either way the body is read once, into the `Vec` the caller gets.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::{StoreError, StoreResult};

/// Reader threads for the epoll driver. Cold reads queue for them; the cores never wait.
const READER_THREADS: usize = 4;

/// Reads `len` bytes at `offset` of `file` without blocking the calling core's event loop.
/// `account` only matters to the test hook.
pub async fn read_at(
    file: Arc<File>,
    offset: u64,
    len: u32,
    account: &str,
) -> StoreResult<Vec<u8>> {
    let len = len as usize;
    let hook = test_hook_for(account);
    if monoio::utils::is_legacy() {
        let mut buf = Vec::with_capacity(len);
        if hook.is_none() {
            read_cached(&file, offset, len, &mut buf)?;
            if buf.len() == len {
                return Ok(buf);
            }
        }
        return read_on_pool(file, offset, len, buf, hook).await;
    }
    if let Some(release) = hook {
        wait_for_release_async(&release).await;
    }
    // A descriptor of its own: monoio closes what it wraps, and the store keeps its `File`.
    let own = monoio::fs::File::from_std(file.try_clone()?)?;
    let buf = Vec::with_capacity(len);
    let (res, buf) = own
        .read_exact_at(monoio::buf::IoBufMut::slice_mut(buf, 0..len), offset)
        .await;
    res?;
    Ok(buf.into_inner())
}

/// Appends to `buf` what the page cache holds of the range, up to `len` bytes, stopping at the
/// first byte that would need the disk.
fn read_cached(file: &File, offset: u64, len: usize, buf: &mut Vec<u8>) -> StoreResult<()> {
    while buf.len() < len {
        let want = len - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..want];
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        };
        // SAFETY: the iovec covers the spare capacity of `buf`, which outlives the call.
        let n = unsafe {
            libc::preadv2(
                file.as_raw_fd(),
                &iov,
                1,
                (offset + buf.len() as u64) as libc::off_t,
                libc::RWF_NOWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // Not cached, or a kernel or file system without RWF_NOWAIT: the pool reads it.
                _ if e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::EOPNOTSUPP)
                    || e.raw_os_error() == Some(libc::EINVAL) =>
                {
                    Ok(())
                }
                _ => Err(e.into()),
            };
        }
        if n == 0 {
            return Err(short_read());
        }
        // SAFETY: the kernel initialised `n` more bytes.
        unsafe { buf.set_len(buf.len() + n as usize) };
    }
    Ok(())
}

fn short_read() -> StoreError {
    StoreError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "message body extends past the end of its segment",
    ))
}

struct ReadJob {
    file: Arc<File>,
    offset: u64,
    len: usize,
    buf: Vec<u8>,
    hook: Option<PathBuf>,
    reply: futures_channel::oneshot::Sender<io::Result<Vec<u8>>>,
}

/// Reads the rest of the range (from `buf.len()`) on a reader thread.
async fn read_on_pool(
    file: Arc<File>,
    offset: u64,
    len: usize,
    buf: Vec<u8>,
    hook: Option<PathBuf>,
) -> StoreResult<Vec<u8>> {
    let (reply, result) = futures_channel::oneshot::channel();
    let job = ReadJob {
        file,
        offset,
        len,
        buf,
        hook,
        reply,
    };
    pool()
        .send(job)
        .map_err(|_| StoreError::Io(io::Error::other("body reader threads are gone")))?;
    match result.await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StoreError::Io(io::Error::other(
            "body reader dropped a read",
        ))),
    }
}

fn pool() -> &'static crossbeam_channel::Sender<ReadJob> {
    static POOL: OnceLock<crossbeam_channel::Sender<ReadJob>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<ReadJob>();
        for i in 0..READER_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("surel-body-read-{i}"))
                .spawn(move || {
                    for job in rx {
                        let result = read_job(job.file, job.offset, job.len, job.buf, job.hook);
                        let _ = job.reply.send(result);
                    }
                });
            if let Err(e) = spawned {
                // Fewer readers only slow cold reads down; none at all fails them (see above).
                tracing::error!(error = %e, "could not start a body reader thread");
            }
        }
        tx
    })
}

fn read_job(
    file: Arc<File>,
    offset: u64,
    len: usize,
    mut buf: Vec<u8>,
    hook: Option<PathBuf>,
) -> io::Result<Vec<u8>> {
    if let Some(release) = hook {
        while !release.exists() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let start = buf.len();
    buf.resize(len, 0);
    file.read_exact_at(&mut buf[start..], offset + start as u64)?;
    Ok(buf)
}

/// Test hook (debug builds started with `SUREL_TEST_HOOKS=1`): body reads for
/// [`TEST_SLOW_READ_ACCOUNT`] wait, off the event loop, until the file set here exists, as a
/// read from a very slow disk would. Lets a test hold a read pending for as long as it likes.
static TEST_HOOK: OnceLock<PathBuf> = OnceLock::new();

/// The account whose body reads the test hook holds back.
pub const TEST_SLOW_READ_ACCOUNT: &str = "slow-read@test-hook.invalid";

/// Arms the test hook: reads for [`TEST_SLOW_READ_ACCOUNT`] wait until `release` exists.
pub fn enable_test_hook(release: PathBuf) {
    let _ = TEST_HOOK.set(release);
}

fn test_hook_for(account: &str) -> Option<PathBuf> {
    TEST_HOOK
        .get()
        .filter(|_| account.eq_ignore_ascii_case(TEST_SLOW_READ_ACCOUNT))
        .cloned()
}

async fn wait_for_release_async(release: &std::path::Path) {
    while !release.exists() {
        monoio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
