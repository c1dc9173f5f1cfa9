//! Running a piece of a test inside a network namespace of its own, without a name: the
//! thread unshares its network namespace, so the code under test (netlink sockets, spawned
//! `iptables`) sees a fresh, empty network. The namespace dies with the thread.

use anyhow::{Context, Result};
use nix::sched::{unshare, CloneFlags};

/// Runs `f` on a new thread in a fresh network namespace (loopback up) and returns its result.
pub fn in_fresh_netns<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    on_own_thread(move || {
        unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
        crate::run(std::process::Command::new("ip").args(["link", "set", "lo", "up"]))?;
        f()
    })
}

/// Runs `f` on a thread of its own, so that the namespaces it unshares die with that thread;
/// a panic there becomes an error naming its message.
pub fn on_own_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    std::thread::spawn(f).join().map_err(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        anyhow::anyhow!("test thread panicked: {msg}")
    })?
}
