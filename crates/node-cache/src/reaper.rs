//! PID 1 duties. In the container node-cache is PID 1, so any process orphaned inside it (a
//! shell left by `kubectl exec`, say) is reparented to us and stays a zombie unless we reap it.
//! Our own children (CoreDNS, iptables) are waited for by the code that spawned them; reaping
//! them here would steal their exit status, so only zombies that are not ours are reaped.

use std::fs;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

/// Starts reaping orphans on every SIGCHLD when we are PID 1; does nothing otherwise.
pub fn start_if_pid1() {
    if std::process::id() != 1 {
        return;
    }
    match signal(SignalKind::child()) {
        Ok(mut sigchld) => {
            tracing::info!("running as PID 1: reaping orphaned processes");
            tokio::spawn(async move {
                while sigchld.recv().await.is_some() {
                    reap_orphans();
                }
            });
        }
        Err(e) => tracing::error!("running as PID 1 but cannot watch SIGCHLD: {e}"),
    }
}

/// Commands we spawn and wait for ourselves (by `comm`, the executable's name).
fn spawned_by_us(comm: &str) -> bool {
    comm.starts_with("coredns") || comm.contains("tables")
}

/// `(comm, state)` from `/proc/<pid>/stat`; comm may contain spaces and parentheses.
fn comm_and_state(stat: &str) -> Option<(&str, char)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let state = stat[close + 1..].trim_start().chars().next()?;
    Some((&stat[open + 1..close], state))
}

fn reap_orphans() {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(children) = fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            if let Some((comm, 'Z')) = comm_and_state(&stat) {
                if !spawned_by_us(comm) {
                    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                    tracing::debug!(pid, comm, "reaped an orphaned process");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_names() {
        assert_eq!(comm_and_state("42 (sh) Z 1 42"), Some(("sh", 'Z')));
        assert_eq!(comm_and_state("7 (a) b (c)) S 1"), Some(("a) b (c)", 'S')));
        assert_eq!(comm_and_state("garbage"), None);
    }

    #[test]
    fn our_own_children_are_left_to_their_waiters() {
        for comm in ["coredns", "iptables", "ip6tables-save", "iptables-restor"] {
            assert!(spawned_by_us(comm), "{comm}");
        }
        assert!(!spawned_by_us("sh"));
    }
}
