//! Looking into CoreDNS's process as its own user, on a thread of our own.
//!
//! CoreDNS runs as another user (65532). Its `/proc/<pid>/fd` is mode 0500 and owned by that
//! user, and the kernel lets a process read the descriptor links, or duplicate a descriptor
//! (`pidfd_getfd`), only when it has that user's ids or `CAP_SYS_PTRACE`. A container with the
//! addon manifest's capabilities, or with upstream's (NET_ADMIN and the runtime's defaults),
//! has no `CAP_SYS_PTRACE`, but it has `CAP_SETUID`/`CAP_SETGID`: one of our threads takes the
//! owner's ids, does the work and ends. Credentials are per thread in the kernel; the raw
//! system calls below change only the calling thread's (glibc's wrappers would change every
//! thread of the process), and the thread never runs anything else afterwards.

use std::io;
use std::os::unix::fs::MetadataExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    uid: u32,
    gid: u32,
}

fn owner_of(pid: u32) -> io::Result<Owner> {
    let meta = std::fs::metadata(format!("/proc/{pid}"))?;
    Ok(Owner {
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

fn is_us(owner: Owner) -> bool {
    owner_of(std::process::id()).is_ok_and(|us| us == owner)
}

/// How a thread takes the owner's identity.
#[derive(Clone, Copy)]
enum Switch {
    /// fsuid/fsgid only: permission checks on files and `/proc` reads (PTRACE_MODE_*_FSCREDS)
    /// use them; our effective capabilities stay, minus the file-system ones.
    Filesystem,
    /// Real, effective and saved ids, keeping our permitted capabilities: what
    /// PTRACE_MODE_ATTACH_REALCREDS (`pidfd_getfd`) compares.
    Real,
}

fn syscall_result(ret: libc::c_long, what: &str) -> io::Result<()> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Changes the calling thread's ids to `owner`'s.
fn switch_thread(owner: Owner, how: Switch) -> io::Result<()> {
    let (uid, gid) = (owner.uid as libc::c_long, owner.gid as libc::c_long);
    #[allow(unsafe_code)]
    // SAFETY: these system calls take integers and change only the calling thread's
    // credentials; no memory is shared with the kernel.
    unsafe {
        match how {
            Switch::Filesystem => {
                // setfsuid/setfsgid report the previous id, never an error: read it back.
                libc::syscall(libc::SYS_setfsgid, gid);
                libc::syscall(libc::SYS_setfsuid, uid);
                if libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) != uid {
                    return Err(io::Error::from(io::ErrorKind::PermissionDenied));
                }
            }
            Switch::Real => {
                syscall_result(
                    libc::syscall(libc::SYS_setresgid, gid, gid, gid),
                    "setresgid",
                )?;
                syscall_result(
                    libc::syscall(libc::SYS_prctl, libc::PR_SET_KEEPCAPS, 1 as libc::c_long),
                    "prctl(PR_SET_KEEPCAPS)",
                )?;
                syscall_result(
                    libc::syscall(libc::SYS_setresuid, uid, uid, uid),
                    "setresuid",
                )?;
            }
        }
    }
    Ok(())
}

fn as_owner_of<T: Send>(
    pid: u32,
    how: Switch,
    work: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    as_identity(owner_of(pid)?, how, work)
}

fn as_identity<T: Send>(
    owner: Owner,
    how: Switch,
    work: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    if is_us(owner) {
        return work();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // Without CAP_SETUID/SETGID the switch fails; the work may still succeed with
                // CAP_SYS_PTRACE, and its own error is the one worth reporting.
                if let Err(e) = switch_thread(owner, how) {
                    tracing::debug!(uid = owner.uid, "cannot act as CoreDNS's user: {e}");
                }
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("thread acting as CoreDNS's user panicked")))
    })
}

/// Runs `work` with the file-system identity of process `pid`'s owner: reading its
/// `/proc/<pid>/fd` links.
pub(crate) fn reading_as_owner_of<T: Send>(
    pid: u32,
    work: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    as_owner_of(pid, Switch::Filesystem, work)
}

/// Whether `user` may open `path` for reading, every directory on the way included: a
/// Corefile CoreDNS cannot read makes it exit at once, and its own message does not say
/// which user it ran as.
pub fn readable_by(user: crate::ChildUser, path: &std::path::Path) -> io::Result<()> {
    let identity = Owner {
        uid: user.uid,
        gid: user.gid,
    };
    as_identity(identity, Switch::Filesystem, || {
        std::fs::File::open(path).map(drop)
    })
}

/// Runs `work` on a thread with the real ids of process `pid`'s owner: duplicating its
/// descriptors with `pidfd_getfd`. Descriptors obtained there are the whole process's.
pub(crate) fn attaching_as_owner_of<T: Send>(
    pid: u32,
    work: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    as_owner_of(pid, Switch::Real, work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_read_on_the_calling_thread() {
        let me = std::thread::current().id();
        let ran_on =
            reading_as_owner_of(std::process::id(), || Ok(std::thread::current().id())).unwrap();
        assert_eq!(ran_on, me);
    }

    #[test]
    fn a_directory_closed_to_the_user_makes_its_files_unreadable() {
        let dir = std::env::temp_dir().join(format!("readable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("Corefile");
        std::fs::write(&file, ".:53 {}\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let nobody = crate::ChildUser {
            uid: 65532,
            gid: 65532,
        };
        let running_as_root = owner_of(std::process::id()).is_ok_and(|us| us.uid == 0);
        readable_by(nobody, &file).expect("a world-readable file");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let closed = readable_by(nobody, &file);
        std::fs::remove_dir_all(&dir).unwrap();
        if running_as_root {
            assert_eq!(closed.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        }
    }

    #[test]
    fn a_missing_process_is_an_error_not_an_empty_answer() {
        let err = reading_as_owner_of(u32::MAX, || Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
