//! The serving loop: keeps one CoreDNS answering and the node's rules in step with whether it
//! does.
//!
//! - CoreDNS is probed over DNS at the first local IP (10 ms apart while it starts, every
//!   second once it answers). Rules go in at its first answer.
//! - It exits → restarted at once, then with capped back-off while it keeps failing.
//! - It stops answering (`HUNG_AFTER` probes in a row) → killed and restarted.
//! - It has not served for `FAIL_OPEN_AFTER` → the rules are withdrawn so pods reach kube-dns
//!   through kube-proxy again ("fail open"); the interface stays, so a restarted CoreDNS can
//!   bind. The rules return at its next answer.
//! - The Corefile's inputs change (file watch, or the periodic backstop) → re-rendered,
//!   written atomically, CoreDNS gets SIGUSR1; its log says whether the reload took.
//! - The interface loses its link or an address (netlink event) → repaired at once; rules are
//!   re-checked every `-syncinterval`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use coredns_child::memlimit::derived_gomemlimit;
use coredns_child::{minimal_env, probe, Backoff, ChildEvent, CorednsChild, ReloadOutcome};
use netsetup::NetworkEvents;
use nix::sys::signal::Signal;
use tokio::time::{interval, sleep_until, Interval, MissedTickBehavior};

use crate::config_watch::{ConfigWatch, Input};
use crate::corefile_sync::{CorefileSync, Outcome};
use crate::flags::Config;
use crate::metrics::{Metrics, ReloadResult, RestartReason};
use crate::node_network::NodeNetwork;
use crate::peers::{Presence, Role};
use crate::readiness::ReadyFile;
use crate::supervisor::Signals;

/// Probe period while CoreDNS starts: bounds the delay from its first answer to our rules.
const STARTING_PROBE_EVERY: Duration = Duration::from_millis(10);
const STARTING_PROBE_TIMEOUT: Duration = Duration::from_millis(50);
/// A CoreDNS that has not answered this long after its start is treated as hung.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// Liveness probing once it answers. CoreDNS's server answers the probe itself, in
/// microseconds; a probe unanswered for this long is a miss, and after a miss the next probe
/// goes out at once, so a hang is found within one period plus HUNG_AFTER timeouts.
const SERVING_PROBE_EVERY: Duration = Duration::from_secs(1);
const SERVING_PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Consecutive missed probes that make a running CoreDNS "hung".
const HUNG_AFTER: u32 = 3;
/// How long CoreDNS may be unable to serve before the rules are withdrawn.
const FAIL_OPEN_AFTER: Duration = Duration::from_secs(2);
/// Time CoreDNS gets between SIGTERM and SIGKILL when we stop it.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// On SIGTERM with another instance present, how long we keep serving while waiting for it
/// to answer (kubelet's default grace period is 30 s; stopping and teardown need the rest).
const DRAIN_MAX: Duration = Duration::from_secs(20);
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// After our sockets stop getting new queries, how long CoreDNS gets to read what was queued.
const HANDOVER_QUEUE_MAX: Duration = Duration::from_secs(1);
const HANDOVER_QUEUE_POLL: Duration = Duration::from_millis(2);
/// Netlink events closer together than this are one repair.
const REPAIR_SETTLE: Duration = Duration::from_millis(5);
/// How long the last instance out waits for the peer lock before tearing down anyway.
const LEAVE_LOCK_WAIT: Duration = Duration::from_secs(10);

struct Running {
    child: CorednsChild,
    started: Instant,
    answered: bool,
    missed_probes: u32,
    /// Set when we kill it, so its exit is counted under the right reason.
    killed_for: Option<RestartReason>,
}

pub struct Serving<'a> {
    config: &'a Config,
    corefile: &'a mut CorefileSync,
    network: &'a NodeNetwork,
    presence: &'a mut Presence,
    metrics: Metrics,
    started: Instant,
    probe_addr: SocketAddr,
    child_env: Vec<(OsString, OsString)>,
    child: Option<Running>,
    backoff: Backoff,
    restart_at: Option<tokio::time::Instant>,
    /// Since when CoreDNS has not been serving; None while it serves.
    down_since: Option<Instant>,
    rules_in_place: bool,
    fail_open: bool,
    /// Distinguishes the first answer (startup) from recoveries in the log.
    first_answer_logged: bool,
    /// Whether we have said that CoreDNS's sockets cannot be seen (said once).
    ownership_unproven_logged: bool,
    ready: ReadyFile,
}

fn child_env() -> Vec<(OsString, OsString)> {
    let user_set = std::env::var_os("GOMEMLIMIT").is_some();
    match derived_gomemlimit(user_set, &PathBuf::from("/sys/fs/cgroup")) {
        Some(limit) => {
            tracing::info!(
                gomemlimit = limit,
                "CoreDNS gets GOMEMLIMIT at {}% of the container's memory limit",
                coredns_child::memlimit::SHARE_PERCENT
            );
            vec![("GOMEMLIMIT".into(), limit.to_string().into())]
        }
        None => Vec::new(),
    }
}

async fn child_event(child: &mut Option<Running>) -> ChildEvent {
    match child {
        Some(running) => running.child.next_event().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn ticker(period: Duration) -> Interval {
    let mut t = interval(period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

impl<'a> Serving<'a> {
    pub fn new(
        config: &'a Config,
        corefile: &'a mut CorefileSync,
        network: &'a NodeNetwork,
        presence: &'a mut Presence,
        metrics: Metrics,
        started: Instant,
    ) -> Self {
        Self {
            probe_addr: SocketAddr::new(config.local_ips[0], config.dns_port),
            config,
            corefile,
            network,
            presence,
            metrics,
            started,
            child_env: child_env(),
            child: None,
            backoff: Backoff::default(),
            restart_at: None,
            down_since: Some(Instant::now()),
            rules_in_place: false,
            fail_open: false,
            first_answer_logged: false,
            ownership_unproven_logged: false,
            ready: ReadyFile::new(config.ready_file.clone()),
        }
    }

    /// Whether CoreDNS `pid` holds its own socket on every local address. Without the evidence
    /// (unreadable `/proc`, missing privileges) the answer is trusted: refusing to serve for
    /// want of proof would leave the node without rules for good.
    fn owns_sockets(&mut self, pid: u32) -> bool {
        for ip in &self.config.local_ips {
            let addr = SocketAddr::new(*ip, self.config.dns_port);
            match coredns_child::sockets::has_udp_socket_on(pid, addr) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    if !self.ownership_unproven_logged {
                        self.ownership_unproven_logged = true;
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

    /// Ready for the kubelet: our own CoreDNS answers and, when we manage them, the rules
    /// are in place.
    fn is_ready(&self) -> bool {
        self.serving() && !self.fail_open && (self.rules_in_place || !self.config.setup_iptables)
    }

    /// Runs until SIGTERM/SIGINT; returns the signal's name.
    pub async fn run(&mut self, signals: &mut Signals) -> &'static str {
        let mut watch = self.watch_inputs();
        let mut events = self.subscribe_events();
        self.spawn();
        let mut sync = ticker(self.config.sync_interval);
        sync.tick().await; // the first tick is immediate: startup just did that work
        let mut probe_every = STARTING_PROBE_EVERY;
        let mut probes = ticker(probe_every);
        loop {
            let restart_at = self.restart_at;
            let fail_open_at = self.fail_open_deadline();
            tokio::select! {
                name = signals.recv() => {
                    self.ready.set(false);
                    return name;
                }
                event = child_event(&mut self.child) => match event {
                    ChildEvent::Exited(status) => self.on_exit(status),
                    ChildEvent::Reload(outcome) => self.on_reload(outcome),
                },
                _ = sleep_until_opt(restart_at) => {
                    self.restart_at = None;
                    self.network.ensure_interface().await.ok();
                    self.spawn();
                }
                _ = probes.tick() => self.probe().await,
                _ = sleep_until_opt(fail_open_at) => self.withdraw_rules().await,
                _ = sync.tick() => self.sync().await,
                _ = async { match &mut watch { Some(w) => w.changed().await, None => std::future::pending().await } } => {
                    self.reconfigure();
                }
                _ = async { match &mut events { Some(e) => e.next().await, None => std::future::pending().await } } => {
                    // A burst (link deleted: one event per address, then the link) is one repair.
                    tokio::time::sleep(REPAIR_SETTLE).await;
                    self.repair_interface().await;
                }
            }
            self.ready.set(self.is_ready());
            let wanted = match &self.child {
                Some(r) if r.answered && r.missed_probes == 0 => SERVING_PROBE_EVERY,
                _ => STARTING_PROBE_EVERY,
            };
            if wanted != probe_every {
                probe_every = wanted;
                probes = ticker(probe_every);
            }
        }
    }

    fn watch_inputs(&self) -> Option<ConfigWatch> {
        let base = &self.config.base_corefile;
        let mut inputs: Vec<Input> = base
            .parent()
            .map(|dir| Input {
                dir: dir.to_path_buf(),
                file: base.file_name().map(|f| f.to_os_string()),
            })
            .into_iter()
            .collect();
        inputs.extend(self.config.kubednscm.iter().map(|dir| Input {
            dir: dir.clone(),
            file: None,
        }));
        match ConfigWatch::new(&inputs) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!("{e:#}; Corefile changes are picked up every -syncinterval only");
                None
            }
        }
    }

    fn subscribe_events(&self) -> Option<NetworkEvents> {
        if !self.network.manages_interface() {
            return None;
        }
        match NetworkEvents::subscribe() {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!("{e}; the interface is repaired every -syncinterval only");
                None
            }
        }
    }

    /// The `-pidfile` CoreDNS cannot write itself when it runs as another user.
    fn write_pidfile(&self, pid: u32) {
        if let (Some(path), Some(_)) = (&self.config.pidfile, self.config.coredns_user) {
            if let Err(e) = corefile::write_atomic(path, &format!("{pid}\n")) {
                tracing::error!(path = %path.display(), "cannot write CoreDNS's pidfile: {e}");
            }
        }
    }

    /// Ours plus the derived Go settings; for an unprivileged CoreDNS only what it needs.
    fn spawn_env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        env.extend(self.child_env.iter().cloned());
        if self.config.coredns_user.is_none() {
            return env;
        }
        let corefile = std::fs::read_to_string(&self.config.corefile).unwrap_or_default();
        minimal_env(env, &corefile)
    }

    fn spawn(&mut self) {
        match CorednsChild::spawn(
            &self.config.coredns_binary,
            self.config.child_args(),
            &self.spawn_env(),
            self.config.coredns_user,
        ) {
            Ok(child) => {
                tracing::info!(pid = child.pid(), "CoreDNS started");
                self.write_pidfile(child.pid());
                self.child = Some(Running {
                    child,
                    started: Instant::now(),
                    answered: false,
                    missed_probes: 0,
                    killed_for: None,
                });
            }
            Err(e) => {
                let delay = self.backoff.on_failure(Duration::ZERO);
                tracing::error!("starting CoreDNS: {e}; retrying in {delay:?}");
                self.restart_at = Some(tokio::time::Instant::now() + delay);
            }
        }
    }

    fn on_exit(&mut self, status: std::io::Result<ExitStatus>) {
        let Some(running) = self.child.take() else {
            return;
        };
        self.presence.mark_not_serving();
        let reason = running.killed_for.unwrap_or(RestartReason::Exited);
        let ran_for = running.started.elapsed();
        let delay = self.backoff.on_failure(ran_for);
        self.metrics.supervision().restart(reason);
        self.down_since.get_or_insert_with(Instant::now);
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
        self.restart_at = Some(tokio::time::Instant::now() + delay);
    }

    async fn probe(&mut self) {
        let Some(running) = &mut self.child else {
            return;
        };
        let timeout = if running.answered {
            SERVING_PROBE_TIMEOUT
        } else {
            STARTING_PROBE_TIMEOUT
        };
        let (answered, pid) = (running.answered, running.child.pid());
        match probe(self.probe_addr, timeout).await {
            // With a peer on the node its CoreDNS may have answered: ours counts as up once
            // it holds its own socket on the addresses too.
            Ok(_) if !answered && !self.owns_sockets(pid) => {
                self.check_start_deadline("a peer answers, but ours holds no socket yet");
            }
            Ok(_) => {
                let Some(running) = &mut self.child else {
                    return;
                };
                running.missed_probes = 0;
                if !running.answered {
                    running.answered = true;
                    let since_spawn = running.started.elapsed();
                    self.on_first_answer(since_spawn).await;
                }
            }
            Err(e) if answered => {
                let Some(running) = &mut self.child else {
                    return;
                };
                running.missed_probes += 1;
                if running.missed_probes >= HUNG_AFTER && running.killed_for.is_none() {
                    tracing::error!(
                        pid = running.child.pid(),
                        missed = running.missed_probes,
                        "CoreDNS stopped answering ({e}); killing it"
                    );
                    self.kill(RestartReason::Hung);
                }
            }
            Err(e) => self.check_start_deadline(&e.to_string()),
        }
    }

    /// A CoreDNS that has not come up within START_DEADLINE is treated as hung.
    fn check_start_deadline(&mut self, last: &str) {
        let Some(running) = &self.child else {
            return;
        };
        if running.started.elapsed() > START_DEADLINE && running.killed_for.is_none() {
            tracing::error!(
                pid = running.child.pid(),
                "CoreDNS has not answered within {START_DEADLINE:?} of its start ({last}); killing it"
            );
            self.kill(RestartReason::Hung);
        }
    }

    fn kill(&mut self, reason: RestartReason) {
        self.presence.mark_not_serving();
        if let Some(running) = &mut self.child {
            running.killed_for = Some(reason);
            if let Err(e) = running.child.signal(Signal::SIGKILL) {
                tracing::error!("killing CoreDNS: {e}");
            }
        }
    }

    async fn on_first_answer(&mut self, since_spawn: Duration) {
        self.down_since = None;
        self.presence.mark_serving();
        let first = !self.first_answer_logged;
        self.first_answer_logged = true;
        tracing::info!(
            addr = %self.probe_addr,
            since_spawn_ms = since_spawn.as_millis() as u64,
            since_start_ms = self.started.elapsed().as_millis() as u64,
            "CoreDNS answers DNS"
        );
        // The rules divert pod traffic from kube-proxy's path to us: only now that we answer.
        if self.config.setup_iptables && !self.rules_in_place {
            match self.network.ensure_rules().await {
                Ok(()) => {
                    self.rules_in_place = true;
                    tracing::info!(
                        since_start_ms = self.started.elapsed().as_millis() as u64,
                        "rules in place"
                    );
                }
                Err(e) => tracing::error!("{e:#}; retrying every -syncinterval"),
            }
        }
        if self.fail_open && self.rules_in_place {
            self.fail_open = false;
            self.metrics.supervision().set_fail_open(false);
            tracing::warn!("CoreDNS serves again; rules restored (fail-open ended)");
        } else if !first {
            tracing::info!("CoreDNS serves again");
        }
    }

    fn fail_open_deadline(&self) -> Option<tokio::time::Instant> {
        let since = self.down_since?;
        if !self.rules_in_place {
            return None;
        }
        Some(tokio::time::Instant::from_std(since + FAIL_OPEN_AFTER))
    }

    /// CoreDNS has not served for FAIL_OPEN_AFTER: let pods reach kube-dns through kube-proxy.
    async fn withdraw_rules(&mut self) {
        let serving_peers = self.presence.others(Role::Serving);
        if !serving_peers.is_empty() {
            // Another instance answers at the same IPs: the rules still lead pods to DNS.
            tracing::warn!(peers = ?serving_peers, "CoreDNS has not served for {FAIL_OPEN_AFTER:?}, but another instance serves; keeping the rules");
            self.down_since = Some(Instant::now());
            return;
        }
        tracing::error!(
            "CoreDNS has not served for {FAIL_OPEN_AFTER:?}; withdrawing the rules so pods reach \
             kube-dns through kube-proxy (fail open) until it answers again"
        );
        // Whatever the outcome, stop retrying the deadline; sync() retries a partial removal.
        self.rules_in_place = false;
        self.fail_open = true;
        self.metrics.supervision().set_fail_open(true);
        self.network.remove_rules().await;
    }

    fn serving(&self) -> bool {
        self.child.as_ref().is_some_and(|r| r.answered)
    }

    /// The periodic re-check: interface, rules (or their absence while failing open),
    /// Corefile. Failures are logged and retried next tick.
    async fn sync(&mut self) {
        let started = Instant::now();
        if let Err(e) = self.network.ensure_interface().await {
            tracing::error!("{e:#}");
        }
        if self.config.setup_iptables {
            if self.serving() {
                match self.network.ensure_rules().await {
                    Ok(()) => self.rules_in_place = true,
                    Err(e) => tracing::error!("{e:#}"),
                }
            } else if self.fail_open {
                self.network.remove_rules().await;
            }
        }
        self.reconfigure();
        tracing::debug!(took_ms = started.elapsed().as_millis() as u64, "sync done");
    }

    /// Re-renders; a new Corefile is written and CoreDNS told to reload it.
    fn reconfigure(&mut self) {
        match self.corefile.refresh() {
            Ok(Outcome::Written) => {
                if let Some(running) = &self.child {
                    match running.child.signal(Signal::SIGUSR1) {
                        Ok(()) => tracing::info!(
                            path = %self.corefile.output().display(),
                            "Corefile changed; CoreDNS told to reload (SIGUSR1)"
                        ),
                        Err(e) => tracing::error!("signalling CoreDNS to reload: {e}"),
                    }
                }
            }
            Ok(Outcome::Unchanged) => {}
            Err(e) => tracing::error!("{e:#}; keeping the last good Corefile"),
        }
    }

    fn on_reload(&mut self, outcome: ReloadOutcome) {
        match outcome {
            ReloadOutcome::Ok => {
                self.metrics.supervision().reload(ReloadResult::Ok);
                tracing::info!("CoreDNS reloaded the new Corefile");
            }
            ReloadOutcome::Failed(why) => {
                self.metrics.supervision().reload(ReloadResult::Failed);
                tracing::error!(
                    path = %self.corefile.output().display(),
                    "CoreDNS rejected the new Corefile and keeps serving the previous one: {why}"
                );
            }
        }
    }

    async fn repair_interface(&mut self) {
        let started = Instant::now();
        match self.network.ensure_interface().await {
            Ok(true) => tracing::warn!(
                took_ms = started.elapsed().as_millis() as u64,
                "interface repaired after a netlink event"
            ),
            Ok(false) => {}
            Err(e) => tracing::error!("{e:#}"),
        }
    }

    /// After SIGTERM: when another instance is present (a surge rollout's new pod), keep
    /// serving until it answers too, so that stopping ours loses no query.
    pub async fn drain(&mut self) {
        let present = self.presence.others(Role::Present);
        if present.is_empty() || !self.serving() {
            return;
        }
        let started = Instant::now();
        while self.presence.others(Role::Serving).is_empty() && started.elapsed() < DRAIN_MAX {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let serving = self.presence.others(Role::Serving);
        if serving.is_empty() {
            tracing::warn!(peers = ?present, "no other instance answered within {DRAIN_MAX:?}; stopping anyway");
        } else {
            tracing::info!(
                peers = ?serving,
                waited_ms = started.elapsed().as_millis() as u64,
                "another instance serves; handing over"
            );
        }
    }

    /// After the drain: stops CoreDNS and, unless `-skipteardown`, takes the node state down
    /// when we are the last instance: the rules first (pods reach kube-dns through kube-proxy
    /// again while our CoreDNS still answers what is in flight), then CoreDNS, then the
    /// interface. Returns whether everything that should go went.
    pub async fn leave(&mut self) -> bool {
        if self.config.skip_teardown {
            self.stop_child().await;
            tracing::info!("-skipteardown: leaving the interface and rules in place");
            return true;
        }
        let (lock, others) = self.presence.leave(LEAVE_LOCK_WAIT).await;
        if !others.is_empty() {
            drop(lock);
            tracing::info!(peers = ?others, "other node-cache instance(s) still run; leaving the interface and rules to them");
            self.stop_child().await;
            return true;
        }
        // Held to the end: nobody registers between our look and the interface going.
        let _lock = lock;
        let rules = self.network.remove_rules().await;
        self.stop_child().await;
        rules & self.network.remove_interface().await
    }

    /// Stops the CoreDNS that is running (if any). Alone: SIGTERM, then SIGKILL after a grace
    /// period, as upstream. With another instance serving the same addresses, first hand the
    /// port over (see [`coredns_child::handover`]): our sockets stop getting new queries, CoreDNS
    /// reads what is queued, and only then SIGTERM lets the queries in flight finish. Without
    /// that (no ptrace access to the child), SIGKILL at once: CoreDNS's graceful stop keeps its
    /// sockets, and with them a share of new queries, for ~100 ms after it stops reading.
    async fn stop_child(&mut self) {
        let Some(mut running) = self.child.take() else {
            return;
        };
        self.presence.mark_not_serving();
        let handover = !self.presence.others(Role::Serving).is_empty();
        let result = if handover {
            match self.hand_over(&running.child).await {
                Ok(()) => running.child.stop(STOP_GRACE).await,
                Err(e) => {
                    tracing::warn!(
                        "cannot hand CoreDNS's sockets over ({e}); stopping it at once instead"
                    );
                    match running.child.signal(Signal::SIGKILL) {
                        Ok(()) => running.child.wait().await,
                        Err(e) => Err(e),
                    }
                }
            }
        } else {
            running.child.stop(STOP_GRACE).await
        };
        match result {
            Ok(status) => tracing::info!(%status, "CoreDNS stopped"),
            Err(e) => tracing::error!("stopping CoreDNS: {e}"),
        }
    }

    /// Takes CoreDNS's UDP sockets out of the shared ports and waits until it has read what
    /// was queued on them.
    async fn hand_over(&self, child: &CorednsChild) -> std::io::Result<()> {
        let addrs: Vec<SocketAddr> = self
            .config
            .local_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, self.config.dns_port))
            .collect();
        let started = Instant::now();
        let detached = coredns_child::handover::stop_receiving(child.pid(), &addrs)?;
        while detached.queued_bytes()? > 0 && started.elapsed() < HANDOVER_QUEUE_MAX {
            tokio::time::sleep(HANDOVER_QUEUE_POLL).await;
        }
        tracing::info!(
            sockets = detached.count(),
            took_us = started.elapsed().as_micros() as u64,
            "handed the DNS sockets over to the serving peer; stopping CoreDNS"
        );
        Ok(())
    }
}
