//! Dropping root after the listeners are bound (`run_as`), as Postfix and Dovecot do: the
//! ports below 1024 need root, nothing after them does.

use std::ffi::CString;
use std::path::Path;

use super::ServerError;

/// The account to run as.
struct Account {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

fn lookup(name: &str) -> Result<Account, ServerError> {
    let c_name =
        CString::new(name).map_err(|_| ServerError(format!("run_as: bad user {name:?}")))?;
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let mut scratch = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: every pointer is valid for the call; `scratch` outlives `entry`'s use here.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut entry,
            scratch.as_mut_ptr(),
            scratch.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(ServerError(format!("run_as: no such user {name:?}")));
    }
    Ok(Account {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    })
}

/// Becomes `user` (its uid, its primary group, no supplementary groups) for good. Called by
/// the main thread after binding and before the store is opened, so every file the server
/// creates belongs to `user`. A data directory that does not exist yet is created for it.
pub fn drop_to(user: &str, data_dir: &Path) -> Result<(), ServerError> {
    let account = lookup(user)?;
    // SAFETY: plain system calls without pointers, or with pointers to locals.
    unsafe {
        let euid = libc::geteuid();
        if euid == account.uid {
            return Ok(());
        }
        if euid != 0 {
            return Err(ServerError(format!(
                "run_as = {user:?} needs the server to be started as root"
            )));
        }
        if !data_dir.exists() {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| ServerError(format!("{}: {e}", data_dir.display())))?;
            std::os::unix::fs::chown(data_dir, Some(account.uid), Some(account.gid))
                .map_err(|e| ServerError(format!("{}: {e}", data_dir.display())))?;
        }
        // Group first: once the uid is dropped, the groups can no longer be changed.
        let groups = [account.gid];
        if libc::setgroups(1, groups.as_ptr()) != 0
            || libc::setgid(account.gid) != 0
            || libc::setuid(account.uid) != 0
        {
            return Err(ServerError(format!(
                "run_as {user:?}: {}",
                std::io::Error::last_os_error()
            )));
        }
        // Dropped for good: getting root back must fail.
        if libc::setuid(0) == 0 || libc::geteuid() != account.uid {
            return Err(ServerError(format!(
                "run_as {user:?}: root could be regained"
            )));
        }
    }
    tracing::info!(
        user,
        uid = account.uid,
        gid = account.gid,
        "dropped privileges"
    );
    Ok(())
}
