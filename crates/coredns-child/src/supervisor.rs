//! Keeps one CoreDNS answering: starts it, probes it over DNS, restarts it when it exits
//! (at once, then with back-off while it keeps failing) and kills it when it stops answering.
//!
//! - Probes go to the first local address: every 2 ms while CoreDNS starts (the delay from
//!   its first answer to the caller's rules; a probe before it listens is refused at once, so
//!   starting costs a few dozen probes), every second once it answers; after a miss the
//!   next probe goes out at once, so a hang is found within a period plus `HUNG_AFTER` timeouts.
//! - With a peer instance on the node both CoreDNS processes share the port, so an answer
//!   counts as ours only once our CoreDNS holds its own socket on every local address
//!   ([`crate::sockets`]); without the evidence the answer is trusted.
//! - A CoreDNS that has not answered `START_DEADLINE` after its start is treated as hung.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::time::sleep_until;

use crate::output::ReloadOutcome;
use crate::privileges::{minimal_env, ChildUser};
use crate::process::{ChildEvent, CorednsChild};
use crate::restart::Backoff;

const STARTING_PROBE_EVERY: Duration = Duration::from_millis(2);
const STARTING_PROBE_TIMEOUT: Duration = Duration::from_millis(50);
const START_DEADLINE: Duration = Duration::from_secs(10);
/// CoreDNS's server answers the probe itself, in microseconds; this long unanswered is a miss.
const SERVING_PROBE_EVERY: Duration = Duration::from_secs(1);
const SERVING_PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Consecutive missed probes that make a running CoreDNS "hung".
const HUNG_AFTER: u32 = 3;

/// What to run and where it must answer.
pub struct Spec {
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// Who CoreDNS runs as; None: as we do.
    pub user: Option<ChildUser>,
    /// Written by us when CoreDNS runs as another user (it may not be able to create it).
    pub pidfile: Option<PathBuf>,
    /// The Corefile CoreDNS loads: the variables it names reach an unprivileged CoreDNS.
    pub corefile: PathBuf,
    /// Our environment plus derived settings (GOMEMLIMIT); trimmed for an unprivileged child.
    pub env: Vec<(OsString, OsString)>,
    /// The local addresses; probes go to the first.
    pub addrs: Vec<SocketAddr>,
}

/// Why CoreDNS was restarted (the metric's label).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RestartReason {
    Exited,
    Hung,
}

/// What the caller learns.
#[derive(Debug)]
pub enum Event {
    /// Our CoreDNS answers, for the first time since it started.
    Answering { since_spawn: Duration },
    /// It no longer serves: killed for not answering (its exit follows as `Restarting`).
    NotAnswering,
    /// It exited; the next one starts after `delay`.
    Restarting {
        reason: RestartReason,
        delay: Duration,
    },
    /// Its log reported a reload's outcome.
    Reload(ReloadOutcome),
}

struct Running {
    child: CorednsChild,
    started: Instant,
    /// When it first answered as ours; the back-off judges a run by how long it served.
    answered_at: Option<Instant>,
}

/// One state at a time, so "answered but killed" or "down but probing" cannot be expressed.
enum State {
    /// No CoreDNS; the next start is due at `restart_at`.
    Down { restart_at: tokio::time::Instant },
    /// Started, not (yet) answering as ours.
    Starting(Running),
    /// Answers; `missed` probes in a row have gone unanswered.
    Serving { running: Running, missed: u32 },
    /// Killed by us for `reason`; its exit is awaited.
    Killed {
        running: Running,
        reason: RestartReason,
    },
    /// Taken away by [`ChildSupervisor::take`] for the caller to stop.
    Stopped,
}

pub struct ChildSupervisor {
    spec: Spec,
    state: State,
    backoff: Backoff,
    next_probe: tokio::time::Instant,
    /// Whether we have said that CoreDNS's sockets cannot be seen (said once).
    unproven_logged: bool,
}

impl ChildSupervisor {
    /// Starts CoreDNS (a failed start is retried like an exit).
    pub fn start(spec: Spec) -> Self {
        if let Some(user) = spec.user {
            if let Err(e) = crate::owner_identity::readable_by(user, &spec.corefile) {
                tracing::error!(
                    path = %spec.corefile.display(),
                    uid = user.uid,
                    "CoreDNS's user cannot read the Corefile ({e}); CoreDNS will exit at once"
                );
            }
        }
        let mut supervisor = Self {
            spec,
            state: State::Stopped,
            backoff: Backoff::default(),
            next_probe: tokio::time::Instant::now(),
            unproven_logged: false,
        };
        supervisor.spawn();
        supervisor
    }

    pub fn serving(&self) -> bool {
        matches!(self.state, State::Serving { .. })
    }

    /// Sends `signal` to the running CoreDNS; Ok(false) when none runs.
    pub fn signal(&self, signal: Signal) -> io::Result<bool> {
        match &self.state {
            State::Starting(r)
            | State::Serving { running: r, .. }
            | State::Killed { running: r, .. } => r.child.signal(signal).map(|()| true),
            State::Down { .. } | State::Stopped => Ok(false),
        }
    }

    /// Takes the running CoreDNS out of supervision (nothing restarts it any more), for the
    /// caller to stop.
    pub fn take(&mut self) -> Option<CorednsChild> {
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Starting(r)
            | State::Serving { running: r, .. }
            | State::Killed { running: r, .. } => Some(r.child),
            State::Down { .. } | State::Stopped => None,
        }
    }

    /// Waits for the next thing worth telling. Cancel-safe: dropping the future loses at most
    /// a probe in flight, which the next call sends again.
    pub async fn next_event(&mut self) -> Event {
        loop {
            let restart_at = match self.state {
                State::Down { restart_at } => Some(restart_at),
                _ => None,
            };
            let probing = matches!(self.state, State::Starting(_) | State::Serving { .. });
            tokio::select! {
                event = child_event(&mut self.state) => match event {
                    ChildEvent::Exited(status) => return self.on_exit(status),
                    ChildEvent::Reload(outcome) => return Event::Reload(outcome),
                },
                _ = sleep_until_opt(restart_at) => self.spawn(),
                _ = sleep_until(self.next_probe), if probing => {
                    if let Some(event) = self.probe().await {
                        return event;
                    }
                }
            }
        }
    }

    fn env(&self) -> Vec<(OsString, OsString)> {
        if self.spec.user.is_none() {
            return self.spec.env.clone();
        }
        let corefile = std::fs::read_to_string(&self.spec.corefile).unwrap_or_default();
        minimal_env(self.spec.env.iter().cloned(), &corefile)
    }

    fn spawn(&mut self) {
        match CorednsChild::spawn(
            &self.spec.binary,
            &self.spec.args,
            &self.env(),
            self.spec.user,
        ) {
            Ok(child) => {
                tracing::info!(pid = child.pid(), "CoreDNS started");
                self.write_pidfile(child.pid());
                self.state = State::Starting(Running {
                    child,
                    started: Instant::now(),
                    answered_at: None,
                });
                self.next_probe = tokio::time::Instant::now();
            }
            Err(e) => {
                let delay = self.backoff.on_failure(Duration::ZERO);
                tracing::error!("starting CoreDNS: {e}; retrying in {delay:?}");
                self.state = State::Down {
                    restart_at: tokio::time::Instant::now() + delay,
                };
            }
        }
    }

    fn write_pidfile(&self, pid: u32) {
        if let (Some(path), Some(_)) = (&self.spec.pidfile, self.spec.user) {
            if let Err(e) = corefile::write_atomic(path, &format!("{pid}\n")) {
                tracing::error!(path = %path.display(), "cannot write CoreDNS's pidfile: {e}");
            }
        }
    }

    fn on_exit(&mut self, status: io::Result<ExitStatus>) -> Event {
        let (running, reason) = match std::mem::replace(&mut self.state, State::Stopped) {
            State::Starting(r) | State::Serving { running: r, .. } => (r, RestartReason::Exited),
            State::Killed { running, reason } => (running, reason),
            other => {
                self.state = other;
                return Event::NotAnswering;
            }
        };
        let ran_for = running.started.elapsed();
        // A CoreDNS that served and then died is a new failure, not the next of a crash loop
        // (a bad Corefile earlier must not delay the restart after a later crash).
        let served_for = running.answered_at.map_or(Duration::ZERO, |t| t.elapsed());
        let delay = self.backoff.on_failure(served_for);
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown status: {e}"),
        };
        tracing::warn!(
            pid = running.child.pid(),
            %status,
            ?reason,
            ran_ms = ran_for.as_millis() as u64,
            failures_in_a_row = self.backoff.failures_in_a_row(),
            "CoreDNS exited; restarting in {delay:?}"
        );
        self.state = State::Down {
            restart_at: tokio::time::Instant::now() + delay,
        };
        Event::Restarting { reason, delay }
    }

    async fn probe(&mut self) -> Option<Event> {
        let serving = self.serving();
        let timeout = if serving {
            SERVING_PROBE_TIMEOUT
        } else {
            STARTING_PROBE_TIMEOUT
        };
        let result = crate::probe(self.spec.addrs[0], timeout).await;
        let answered = result.is_ok();
        self.next_probe = tokio::time::Instant::now()
            + match (serving, answered) {
                (true, true) => SERVING_PROBE_EVERY,
                (true, false) => Duration::ZERO,
                (false, _) => STARTING_PROBE_EVERY,
            };
        match (std::mem::replace(&mut self.state, State::Stopped), result) {
            (State::Starting(mut r), Ok(_)) if self.owns_sockets(r.child.pid()) => {
                let since_spawn = r.started.elapsed();
                r.answered_at = Some(Instant::now());
                self.state = State::Serving {
                    running: r,
                    missed: 0,
                };
                Some(Event::Answering { since_spawn })
            }
            (State::Starting(r), Ok(_)) => {
                self.state = State::Starting(r);
                self.check_start_deadline("a peer answers, but ours holds no socket yet")
            }
            (State::Starting(r), Err(e)) => {
                self.state = State::Starting(r);
                self.check_start_deadline(&e.to_string())
            }
            (State::Serving { running, .. }, Ok(_)) => {
                self.state = State::Serving { running, missed: 0 };
                None
            }
            (State::Serving { running, missed }, Err(e)) => {
                let missed = missed + 1;
                if missed < HUNG_AFTER {
                    self.state = State::Serving { running, missed };
                    return None;
                }
                tracing::error!(
                    pid = running.child.pid(),
                    missed,
                    "CoreDNS stopped answering ({e}); killing it"
                );
                Some(self.kill(running, RestartReason::Hung))
            }
            (other, _) => {
                self.state = other;
                None
            }
        }
    }

    /// A CoreDNS that has not come up within START_DEADLINE is treated as hung.
    fn check_start_deadline(&mut self, last: &str) -> Option<Event> {
        let State::Starting(r) = &self.state else {
            return None;
        };
        if r.started.elapsed() <= START_DEADLINE {
            return None;
        }
        tracing::error!(
            pid = r.child.pid(),
            "CoreDNS has not answered within {START_DEADLINE:?} of its start ({last}); killing it"
        );
        let State::Starting(running) = std::mem::replace(&mut self.state, State::Stopped) else {
            return None;
        };
        Some(self.kill(running, RestartReason::Hung))
    }

    fn kill(&mut self, running: Running, reason: RestartReason) -> Event {
        if let Err(e) = running.child.signal(Signal::SIGKILL) {
            tracing::error!("killing CoreDNS: {e}");
        }
        self.state = State::Killed { running, reason };
        Event::NotAnswering
    }

    /// Whether CoreDNS `pid` holds its own socket on every local address; an answer without
    /// the evidence (unreadable `/proc`, missing privileges) is trusted: refusing to serve for
    /// want of proof would leave the node without rules for good.
    fn owns_sockets(&mut self, pid: u32) -> bool {
        for addr in &self.spec.addrs {
            match crate::sockets::has_udp_socket_on(pid, *addr) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    if !self.unproven_logged {
                        self.unproven_logged = true;
                        tracing::warn!(
                            pid,
                            "cannot see CoreDNS's sockets ({e}); trusting its answers"
                        );
                    }
                    return true;
                }
            }
        }
        true
    }
}

async fn child_event(state: &mut State) -> ChildEvent {
    match state {
        State::Starting(r)
        | State::Serving { running: r, .. }
        | State::Killed { running: r, .. } => r.child.next_event().await,
        State::Down { .. } | State::Stopped => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when there is no deadline: a `select!` branch for a timer that
/// may not be set.
pub async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
