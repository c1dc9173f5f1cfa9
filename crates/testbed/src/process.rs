//! A process started for a test, killed on drop, its output kept in a log file; and what
//! tests look up about other processes (children, liveness) or do to them (signals).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::wait_until;

pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
    /// The program a launcher (`unshare --fork`) runs as its child: what `pid()` names.
    launched: Option<u32>,
}

impl Process {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = File::options().create(true).append(true).open(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.into(),
            child,
            log: log.to_path_buf(),
            status: None,
            launched: None,
        })
    }

    /// Spawns a launcher that forks the program (`unshare --fork ... program`) and waits until
    /// its child runs `comm`; [`Process::pid`] and [`Process::signal`] then address the
    /// program, while exit status and drop go through the launcher (which exits with it, and
    /// takes it down when killed).
    pub fn spawn_launched(
        name: &str,
        cmd: Command,
        log: &Path,
        comm: &str,
        deadline: Duration,
    ) -> Result<Self> {
        let mut process = Self::spawn(name, cmd, log)?;
        let launcher = process.child.id();
        let mut found = None;
        wait_until(&format!("{name} to start {comm}"), deadline, || {
            if process.try_status()?.is_some() {
                return Ok(true);
            }
            found = children_of(launcher)
                .into_iter()
                .find(|(_, c)| c == comm)
                .map(|(pid, _)| pid);
            Ok(found.is_some())
        })
        .with_context(|| format!("log of {name}:\n{}", process.log()))?;
        process.launched = found;
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.launched.unwrap_or_else(|| self.child.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        send(self.pid(), signal).with_context(|| format!("sending {signal} to {}", self.name))
    }

    /// The exit status if it has exited (reaping it), else None.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits for the process to exit within `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> Result<ExitStatus> {
        let what = format!("{} to exit", self.name);
        wait_until(&what, deadline, || Ok(self.try_status()?.is_some()))
            .with_context(|| format!("log of {}:\n{}", self.name, self.log()))?;
        Ok(self.status.expect("set by try_status"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` to `pid`.
pub fn send(pid: u32, signal: Signal) -> Result<()> {
    kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("sending {signal} to {pid}"))
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z')
    })
}

/// The command name of `pid` (`/proc/<pid>/comm`), if it exists.
pub fn comm(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim().to_string())
}

/// The pids and command names of `pid`'s children.
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_string();
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some((child, comm))
        })
        .collect()
}

/// A process a test stopped with SIGSTOP. Dropped while the pid still runs the same program,
/// it is continued and killed, so whatever the code under test did with it, it never lingers.
pub struct Stopped {
    pid: u32,
    comm: Option<String>,
}

impl Stopped {
    pub fn stop(pid: u32) -> Result<Self> {
        let comm = comm(pid);
        send(pid, Signal::SIGSTOP)?;
        Ok(Self { pid, comm })
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.comm.is_some() && comm(self.pid) == self.comm {
            let _ = send(self.pid, Signal::SIGCONT);
            let _ = send(self.pid, Signal::SIGKILL);
        }
    }
}
