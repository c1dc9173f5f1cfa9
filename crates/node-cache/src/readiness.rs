//! Readiness for the kubelet: `-readyfile` exists exactly while this instance's own CoreDNS
//! answers on the local IPs and the rules are in place; `-checkready` is the exec probe that
//! reads it.
//!
//! An HTTP probe cannot tell two instances on one node apart: with hostNetwork both share
//! every port (SO_REUSEPORT), so either may answer. The file lives in the pod's own volume.
//! It names the agent's pid and start time, so a file left by a killed container (an
//! `emptyDir` outlives container restarts) never makes its successor look ready.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The agent's side: keeps the file in step with its state.
pub struct ReadyFile {
    path: Option<PathBuf>,
    ready: bool,
}

impl ReadyFile {
    /// Removes a stale file left by an earlier container.
    pub fn new(path: Option<PathBuf>) -> Self {
        if let Some(path) = &path {
            remove(path);
        }
        Self { path, ready: false }
    }

    /// Writes or removes the file when readiness changes.
    pub fn set(&mut self, ready: bool) {
        if ready == self.ready {
            return;
        }
        self.ready = ready;
        let Some(path) = &self.path else {
            return;
        };
        if ready {
            let me = std::process::id();
            let content = match start_time(me) {
                Some(start) => format!("{me} {start}\n"),
                None => format!("{me}\n"),
            };
            match corefile::write_atomic(path, &content) {
                Ok(()) => tracing::info!(path = %path.display(), "ready"),
                Err(e) => tracing::error!(path = %path.display(), "cannot write -readyfile: {e}"),
            }
        } else {
            remove(path);
            tracing::info!(path = %path.display(), "not ready");
        }
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::error!(path = %path.display(), "cannot remove -readyfile: {e}");
        }
    }
}

/// Field 22 of `/proc/<pid>/stat`, counted after the command name (which may hold spaces).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Why a ready file does not name a live, ready instance; None when it does.
fn not_ready_reason(content: Result<String, std::io::Error>) -> Option<String> {
    let content = match content {
        Ok(c) => c,
        Err(e) => return Some(format!("not ready: {e}")),
    };
    let mut fields = content.split_whitespace();
    let Some(pid) = fields.next().and_then(|p| p.parse::<u32>().ok()) else {
        return Some(format!("not ready: unreadable content {content:?}"));
    };
    let written = fields.next().and_then(|s| s.parse::<u64>().ok());
    match (start_time(pid), written) {
        (Some(now), Some(then)) if now == then => None,
        (Some(_), None) => None,
        _ => Some(format!(
            "not ready: the agent that wrote it (pid {pid}) is gone"
        )),
    }
}

/// The exec probe: exit 0 when `path` names a running, ready agent, else 1 with one line why.
pub fn check(path: &Path) -> ExitCode {
    match not_ready_reason(std::fs::read_to_string(path)) {
        None => ExitCode::SUCCESS,
        Some(why) => {
            println!("{}: {why}", path.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_past_a_command_name_with_spaces() {
        let stat = "1 (node cache) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 4242 1000 10";
        assert_eq!(parse_start_time(stat), Some(4242));
    }

    #[test]
    fn only_a_file_of_a_live_agent_means_ready() {
        let me = std::process::id();
        let start = start_time(me).unwrap();
        assert_eq!(not_ready_reason(Ok(format!("{me} {start}\n"))), None);
        let restarted = not_ready_reason(Ok(format!("{me} {}\n", start + 1))).unwrap();
        assert!(restarted.contains("is gone"), "{restarted}");
        let missing = not_ready_reason(Err(std::io::ErrorKind::NotFound.into())).unwrap();
        assert!(missing.starts_with("not ready"), "{missing}");
        assert!(not_ready_reason(Ok("garbage".into())).is_some());
    }

    #[test]
    fn the_file_follows_the_state_and_a_stale_one_is_removed() {
        let dir = std::env::temp_dir().join(format!("ready-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ready");
        std::fs::write(&path, "1 1\n").unwrap();
        let mut ready = ReadyFile::new(Some(path.clone()));
        assert!(!path.exists(), "a stale file goes at start");
        ready.set(true);
        assert_eq!(not_ready_reason(std::fs::read_to_string(&path)), None);
        ready.set(false);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
