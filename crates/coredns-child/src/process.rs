//! The CoreDNS child process.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::output::{pass_through, ReloadOutcome};
use crate::privileges::{drop_to, ChildUser};

#[derive(Debug)]
pub enum ChildEvent {
    Reload(ReloadOutcome),
    Exited(io::Result<ExitStatus>),
}

pub struct CorednsChild {
    child: Child,
    pid: u32,
    status: Option<ExitStatus>,
    reload_outcomes: mpsc::UnboundedReceiver<ReloadOutcome>,
    /// The tasks copying its stdout and stderr to ours.
    output: Vec<JoinHandle<()>>,
}

/// How long an exit waits for the child's last output: a crash loop must show its reason,
/// but a grandchild holding the pipe must not delay the restart.
const LAST_OUTPUT_WAIT: Duration = Duration::from_millis(200);

impl CorednsChild {
    /// Starts `binary args...` with exactly the environment `env`, as `user` when given (see
    /// [`crate::privileges`]); its output is passed through to ours line by line (so its log
    /// reaches the container log) and read for reload outcomes (see [`crate::output`]).
    pub fn spawn<I, S>(
        binary: &Path,
        args: I,
        env: &[(OsString, OsString)],
        user: Option<ChildUser>,
    ) -> io::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // If the agent dies without stopping CoreDNS (SIGKILL, OOM kill outside a container's
        // PID namespace), CoreDNS must not keep serving unsupervised on the node's port 53.
        // The signal fires when the spawning *thread* exits: spawn from the runtime's main
        // thread, never from a short-lived worker.
        // The death signal goes last: changing credentials clears it.
        #[allow(unsafe_code)]
        // SAFETY: drop_to and prctl(PR_SET_PDEATHSIG) make only async-signal-safe system calls
        // and touch no memory of the parent, which is all a pre-exec hook may do between fork
        // and exec.
        unsafe {
            command.pre_exec(move || {
                if let Some(user) = user {
                    drop_to(user)?;
                }
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", binary.display())))?;
        let (outcomes_tx, reload_outcomes) = mpsc::unbounded_channel();
        let mut output = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            output.push(tokio::spawn(pass_through(
                stdout,
                tokio::io::stdout(),
                outcomes_tx.clone(),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            output.push(tokio::spawn(pass_through(
                stderr,
                tokio::io::stderr(),
                outcomes_tx,
            )));
        }
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("child exited before its pid was read"))?;
        Ok(Self {
            child,
            pid,
            status: None,
            reload_outcomes,
            output,
        })
    }

    /// Lets the output tasks copy what the child wrote before it exited (its fatal line often
    /// has no trailing newline and arrives after the exit is seen), so it precedes our
    /// "CoreDNS exited" line.
    async fn drain_output(&mut self) {
        let tasks = std::mem::take(&mut self.output);
        let _ = tokio::time::timeout(LAST_OUTPUT_WAIT, async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
    }

    /// The next thing the child tells us: a reload outcome from its log (see
    /// [`crate::output`]), or its exit. Cancel-safe.
    pub async fn next_event(&mut self) -> ChildEvent {
        if let Some(status) = self.status {
            return ChildEvent::Exited(Ok(status));
        }
        tokio::select! {
            biased;
            Some(outcome) = self.reload_outcomes.recv() => ChildEvent::Reload(outcome),
            status = self.child.wait() => {
                if let Ok(s) = &status {
                    self.status = Some(*s);
                }
                self.drain_output().await;
                ChildEvent::Exited(status)
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` unless the child has already been reaped.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        kill(Pid::from_raw(self.pid as i32), signal).map_err(io::Error::from)
    }

    /// Whether the child has exited, reaping it if so; never blocks.
    pub fn has_exited(&mut self) -> io::Result<bool> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status.is_some())
    }

    /// Waits for the child to exit; cancel-safe, and returns the same status once reaped.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self.child.wait().await?;
        self.status = Some(status);
        Ok(status)
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(
                    pid = self.pid,
                    ?grace,
                    "CoreDNS ignored SIGTERM; sending SIGKILL"
                );
                self.signal(Signal::SIGKILL)?;
                self.wait().await
            }
        }
    }
}
