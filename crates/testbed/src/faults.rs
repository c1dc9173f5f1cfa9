//! Faults to inject around a node-cache run: a PATH of the agent's own (legacy iptables, or
//! none), a port already taken, a held xtables lock, a tiny filesystem, a memory cgroup.
//!
//! Every fault is confined to what the test made (its namespaces, its scratch directory, a
//! mount namespace of its own thread, a cgroup of its own) and undone in `Drop`.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::Netns;

/// A directory for the agent's PATH in which `iptables`, `iptables-save` and
/// `iptables-restore` are the *legacy* (xtables) variants: only those take the xtables lock
/// (the nf_tables variants ignore `-w`). Returns the PATH value to give the agent.
pub fn legacy_iptables_path(dir: &Path) -> Result<String> {
    let multi = [
        "/usr/sbin/xtables-legacy-multi",
        "/sbin/xtables-legacy-multi",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .context("xtables-legacy-multi is not installed")?;
    std::fs::create_dir_all(dir)?;
    for name in ["iptables", "iptables-save", "iptables-restore"] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&multi, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        dir.display()
    ))
}

/// The legacy (xtables) `raw` and `filter` lines carrying node-cache's comments in `ns`.
pub fn legacy_rule_lines(ns: &Netns) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for table in ["raw", "filter"] {
        let saved = ns.exec("iptables-legacy-save", &["-t", table])?;
        lines.extend(
            saved
                .lines()
                .filter(|l| l.contains("NodeLocal DNS Cache"))
                .map(str::to_string),
        );
    }
    Ok(lines)
}

/// An xtables lock file of the test's own (the agent gets it as `XTABLES_LOCKFILE`), so
/// holding it never blocks the machine's `/run/xtables.lock`.
pub struct XtablesLock {
    path: PathBuf,
}

/// The lock, held until dropped.
pub struct HeldLock {
    _flock: Flock<File>,
}

impl XtablesLock {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock exclusively, as iptables does; fails at once if someone holds it.
    pub fn hold(&self) -> Result<HeldLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map(|flock| HeldLock { _flock: flock })
            .map_err(|(_, errno)| anyhow::anyhow!("flock {}: {errno}", self.path.display()))
    }
}

/// A TCP listener on `addr` inside `ns`, without SO_REUSEPORT: while it listens, whoever binds
/// the same port there afterwards gets EADDRINUSE (SO_REUSEADDR does not help against a
/// listening socket). Closed on drop.
pub fn listen_tcp_in(ns: &Netns, addr: SocketAddr) -> Result<TcpListener> {
    let path = format!("/run/netns/{}", ns.name());
    crate::isolated::on_own_thread(move || {
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns({path})"))?;
        TcpListener::bind(addr).with_context(|| format!("binding {addr}"))
    })
}

/// Runs `f` on a new thread in a mount namespace of its own, with every mount private, so
/// mounts it makes (a tiny tmpfs, say) reach only the processes it starts and vanish with
/// them. Processes it starts inherit the namespace.
pub fn in_private_mounts<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    crate::isolated::on_own_thread(move || {
        unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .context("making / private in the test's mount namespace")?;
        f()
    })
}

/// A tmpfs mounted by [`mount_tmpfs`], unmounted on drop (so the scratch directory holding
/// its mount point can be removed).
pub struct Tmpfs {
    dir: PathBuf,
}

/// Mounts a tmpfs of `size_kib` on `dir` (call inside [`in_private_mounts`]).
pub fn mount_tmpfs(dir: &Path, size_kib: u32) -> Result<Tmpfs> {
    std::fs::create_dir_all(dir)?;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("size={size_kib}k,mode=0755").as_str()),
    )
    .with_context(|| format!("mounting a tmpfs on {}", dir.display()))?;
    Ok(Tmpfs {
        dir: dir.to_path_buf(),
    })
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.dir, MntFlags::MNT_DETACH);
    }
}

/// Makes the tmpfs on `dir` read-only or writable again, for every mount of it (the
/// superblock's flag, so processes in namespaces copied from ours see it too).
pub fn set_read_only(dir: &Path, read_only: bool) -> Result<()> {
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(None::<&str>, dir, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("remounting {} (read-only: {read_only})", dir.display()))
}

/// A cgroup (v1 `memory` hierarchy) of the test's own under the test process's, removed on
/// drop after moving anything still in it back to the test's cgroup.
pub struct MemoryCgroup {
    dir: PathBuf,
    parent: PathBuf,
}

const MEMORY_HIERARCHY: &str = "/sys/fs/cgroup/memory";

impl MemoryCgroup {
    /// Creates the cgroup, or says why this machine does not allow it.
    pub fn create(name: &str) -> Result<Self> {
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        // Lines are "id:controllers:path"; v1's memory line names "memory" among them.
        let Some(rel) = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let controllers = parts.nth(1)?;
            let path = parts.next()?;
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.trim_start_matches('/').to_string())
        }) else {
            bail!("no cgroup v1 memory controller for this process");
        };
        let parent = Path::new(MEMORY_HIERARCHY).join(rel);
        let dir = parent.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir, parent })
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        std::fs::write(self.dir.join(file), value)
            .with_context(|| format!("writing {value} to {}/{file}", self.dir.display()))
    }

    pub fn set_limit_bytes(&self, bytes: u64) -> Result<()> {
        self.write("memory.limit_in_bytes", &bytes.to_string())
    }

    pub fn add(&self, pid: u32) -> Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// The kernel's count of OOM kills in this cgroup (`memory.oom_control`'s `oom_kill`).
    pub fn oom_kills(&self) -> Result<u64> {
        let text = std::fs::read_to_string(self.dir.join("memory.oom_control"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .context("no oom_kill in memory.oom_control")?
            .trim()
            .parse()
            .context("oom_kill is not a number")
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(self.parent.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Runs `program args` and returns its exit code and stderr, without failing on a non-zero
/// exit.
pub fn status_and_stderr(cmd: &mut Command) -> Result<(Option<i32>, String)> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
