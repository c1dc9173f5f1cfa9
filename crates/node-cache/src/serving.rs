//! The serving loop: one `select!` that routes each event to the part whose job it is.
//!
//! | event | goes to |
//! |---|---|
//! | CoreDNS answers, stops answering, exits, reports a reload | [`coredns_child::ChildSupervisor`] tells; the rules policy, the peers and the metrics follow |
//! | CoreDNS down for too long | [`RulesPolicy`] fails open |
//! | the Corefile's inputs change (file watch) or `-syncinterval` passes | re-render, SIGUSR1 |
//! | the Kubernetes API reports a ConfigMap or the upstream Service changed | re-render, SIGUSR1 |
//! | the interface loses its link or an address (netlink) | repaired at once |
//! | every 500 ms | [`RuleOrder`]: our rules moved back in front of a foreign rule |
//! | SIGTERM / SIGINT | the loop ends; [`leave_node`] follows, within one [`ShutdownBudget`] |

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use coredns_child::memlimit::derived_gomemlimit;
use coredns_child::{sleep_until_opt, ChildSupervisor, CorednsChild, Event, ReloadOutcome, Spec};
use netsetup::NetworkEvents;
use nix::sys::signal::Signal;
use tokio::time::{interval, MissedTickBehavior};

use crate::config_watch::{ConfigWatch, Input};
use crate::corefile_sync::{CorefileSync, Outcome};
use crate::flags::Config;
use crate::kube_api::{self, Events, KubeApi, Reason};
use crate::metrics::{Metrics, ReloadResult};
use crate::node_network::NodeNetwork;
use crate::peers::{handover, Presence, Role};
use crate::readiness::ReadyFile;
use crate::rule_order::{self, RuleOrder};
use crate::rules_policy::RulesPolicy;
use crate::shutdown_budget::ShutdownBudget;
use crate::signals::Signals;

/// Netlink events closer together than this are one repair.
const REPAIR_SETTLE: Duration = Duration::from_millis(5);
/// The FailOpen Event's note.
const FAIL_OPEN_NOTE: &str = "CoreDNS could not serve; rules withdrawn: pods reach kube-dns \
                              through kube-proxy until it answers again";
/// How long at most the last instance out waits for the peer lock before tearing down anyway.
const LEAVE_LOCK_WAIT: Duration = Duration::from_secs(10);

pub struct Serving<'a> {
    config: &'a Config,
    corefile: &'a mut CorefileSync,
    network: &'a NodeNetwork,
    presence: &'a mut Presence,
    metrics: Metrics,
    started: Instant,
    child: ChildSupervisor,
    rules: RulesPolicy,
    /// Our rules kept first in their chains (position checked every 500 ms).
    rule_order: RuleOrder,
    ready: ReadyFile,
    /// Distinguishes the first answer (startup) from recoveries in the log.
    answered_before: bool,
    /// The Kubernetes API's watches of the Corefile's inputs, when there is an API.
    api: Option<KubeApi>,
    /// The pod's Kubernetes Events (best-effort; nowhere without an API).
    events: Events,
}

fn local_addrs(config: &Config) -> Vec<SocketAddr> {
    config
        .local_ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, config.dns_port))
        .collect()
}

/// Our environment plus GOMEMLIMIT at a share of the container's memory limit (unless set).
fn child_env() -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let user_set = std::env::var_os("GOMEMLIMIT").is_some();
    if let Some(limit) = derived_gomemlimit(user_set, &PathBuf::from("/sys/fs/cgroup")) {
        tracing::info!(
            gomemlimit = limit,
            "CoreDNS gets GOMEMLIMIT at {}% of the container's memory limit",
            coredns_child::memlimit::SHARE_PERCENT
        );
        env.push(("GOMEMLIMIT".into(), limit.to_string().into()));
    }
    env
}

fn child_spec(config: &Config) -> Spec {
    Spec {
        binary: config.coredns_binary.clone(),
        args: config.child_args(),
        user: config.coredns_user,
        pidfile: config.pidfile.clone(),
        corefile: config.corefile.clone(),
        env: child_env(),
        addrs: local_addrs(config),
    }
}

async fn maybe<T>(source: &mut Option<T>, next: impl AsyncFnOnce(&mut T)) {
    match source {
        Some(s) => next(s).await,
        None => std::future::pending().await,
    }
}

impl<'a> Serving<'a> {
    /// Starts CoreDNS; the rules follow its first answer.
    pub fn start(
        config: &'a Config,
        corefile: &'a mut CorefileSync,
        network: &'a NodeNetwork,
        presence: &'a mut Presence,
        metrics: Metrics,
        started: Instant,
        api: Option<KubeApi>,
    ) -> Self {
        let events = api.as_ref().map(KubeApi::events).unwrap_or_default();
        corefile.report_to(events.clone());
        Self {
            config,
            corefile,
            network,
            presence,
            metrics,
            started,
            child: ChildSupervisor::start(child_spec(config)),
            rules: RulesPolicy::new(config.setup_iptables, started),
            rule_order: RuleOrder::default(),
            ready: ReadyFile::new(config.ready_file.clone()),
            answered_before: false,
            api,
            events,
        }
    }

    /// Runs until SIGTERM/SIGINT; returns the signal's name.
    pub async fn run(&mut self, signals: &mut Signals) -> &'static str {
        let mut watch = self.watch_inputs();
        let mut events = self.subscribe_events();
        let mut sync = interval(self.config.sync_interval);
        sync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        sync.tick().await; // the first tick is immediate: startup just did that work
        let mut order = interval(rule_order::CHECK_EVERY);
        order.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let fail_open_at = self.rules.deadline();
            tokio::select! {
                name = signals.recv() => {
                    self.ready.set(false);
                    return name;
                }
                event = self.child.next_event() => self.on_child(event).await,
                _ = sleep_until_opt(fail_open_at) => {
                    let peers = self.presence.others(Role::Serving);
                    if self.rules.on_deadline(self.network, &self.metrics, &peers).await {
                        self.events.report(Reason::FailOpen, FAIL_OPEN_NOTE);
                    }
                }
                _ = sync.tick() => self.sync().await,
                _ = order.tick() => {
                    self.rule_order.check(self.network, self.rules.in_place()).await;
                }
                _ = maybe(&mut watch, async |w| w.changed().await) => self.reconfigure(),
                updates = kube_api::next(&mut self.api) => {
                    self.corefile.apply_api(updates);
                    self.reconfigure();
                }
                _ = maybe(&mut events, async |e| { e.next().await; }) => {
                    // A burst (link deleted: one event per address, then the link) is one repair.
                    tokio::time::sleep(REPAIR_SETTLE).await;
                    self.repair_interface().await;
                }
            }
            self.ready.set(self.rules.ready(self.child.serving()));
        }
    }

    async fn on_child(&mut self, event: Event) {
        match event {
            Event::Answering { since_spawn } => {
                self.presence.mark_serving();
                tracing::info!(
                    addr = %local_addrs(self.config)[0],
                    since_spawn_ms = since_spawn.as_millis() as u64,
                    since_start_ms = self.started.elapsed().as_millis() as u64,
                    "CoreDNS answers DNS"
                );
                if self.answered_before {
                    tracing::info!("CoreDNS serves again");
                }
                self.answered_before = true;
                if self.rules.on_serving(self.network, &self.metrics).await {
                    self.events.report(
                        Reason::FailOpenEnded,
                        "CoreDNS serves again; rules restored",
                    );
                }
            }
            Event::NotAnswering => {
                self.presence.mark_not_serving();
                self.rules.on_down();
            }
            Event::Restarting { reason, delay } => {
                self.presence.mark_not_serving();
                self.rules.on_down();
                self.metrics.supervision().restart(reason.into());
                let why = match reason {
                    coredns_child::RestartReason::Exited => "CoreDNS exited",
                    coredns_child::RestartReason::Hung => {
                        "CoreDNS stopped answering and was killed"
                    }
                };
                self.events.report(
                    Reason::restarted(reason),
                    format!("{why}; restarting in {delay:?}"),
                );
                // CoreDNS's `bind` needs the addresses when the next one starts.
                self.network.ensure_interface().await.ok();
            }
            Event::Reload(outcome) => self.on_reload(outcome),
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

    /// The periodic re-check: interface, rules (or their absence while failing open),
    /// Corefile. Failures are logged and retried next tick.
    async fn sync(&mut self) {
        let started = Instant::now();
        if let Err(e) = self.network.ensure_interface().await {
            tracing::error!("{e:#}");
        }
        self.rules.sync(self.network, self.child.serving()).await;
        self.reconfigure();
        tracing::debug!(took_ms = started.elapsed().as_millis() as u64, "sync done");
    }

    /// Re-renders; a new Corefile is written and CoreDNS told to reload it.
    fn reconfigure(&mut self) {
        match self.corefile.refresh() {
            Ok(Outcome::Written) => match self.child.signal(Signal::SIGUSR1) {
                Ok(true) => tracing::info!(
                    path = %self.corefile.output().display(),
                    "Corefile changed; CoreDNS told to reload (SIGUSR1)"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!("signalling CoreDNS to reload: {e}"),
            },
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
                let note = format!(
                    "CoreDNS rejected the new Corefile and keeps serving the previous one: {why}"
                );
                tracing::error!(path = %self.corefile.output().display(), "{note}");
                self.events.report(Reason::CorefileRejected, note);
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

    /// After SIGTERM: with another instance present, keep serving until it answers too.
    pub async fn drain(&mut self, budget: ShutdownBudget) {
        handover::drain(self.presence, self.child.serving(), budget).await;
    }

    /// After the drain: [`leave_node`] with our CoreDNS to stop.
    pub async fn leave(&mut self, budget: ShutdownBudget) -> bool {
        let (config, network) = (self.config, self.network);
        let child = self.child.take();
        leave_node(config, self.presence, network, budget, child).await
    }
}

/// The one way out (after a drain, or when starting failed): stops CoreDNS, if there is one,
/// and, unless `-skipteardown`, takes the node state down when we are the last instance: the
/// rules that divert queries first (pods reach kube-dns through kube-proxy again while our
/// CoreDNS still answers what is in flight), then CoreDNS, then the rest of the rules, then
/// the interface. Every wait draws on `budget`, whose reserve is left for the removals.
/// Returns whether everything that should go went.
pub async fn leave_node(
    config: &Config,
    presence: &mut Presence,
    network: &NodeNetwork,
    budget: ShutdownBudget,
    child: Option<CorednsChild>,
) -> bool {
    if config.skip_teardown {
        stop_child(config, presence, budget, child).await;
        tracing::info!("-skipteardown: leaving the interface and rules in place");
        return true;
    }
    let (lock, others) = presence.leave(budget.step(LEAVE_LOCK_WAIT)).await;
    if !others.is_empty() {
        drop(lock);
        tracing::info!(peers = ?others, "other node-cache instance(s) still run; leaving the interface and rules to them");
        stop_child(config, presence, budget, child).await;
        return true;
    }
    // Held to the end: nobody registers between our look and the interface going.
    let _lock = lock;
    let diverted = network.stop_diverting().await;
    stop_child(config, presence, budget, child).await;
    let rules = network.remove_rules().await;
    let clean = diverted & rules & network.remove_interface().await;
    tracing::info!(
        budget_left_ms = budget.left().as_millis() as u64,
        "node state removed"
    );
    clean
}

async fn stop_child(
    config: &Config,
    presence: &mut Presence,
    budget: ShutdownBudget,
    child: Option<CorednsChild>,
) {
    presence.mark_not_serving();
    let Some(child) = child else {
        return;
    };
    let peer_serves = !presence.others(Role::Serving).is_empty();
    handover::stop_coredns(child, peer_serves, &local_addrs(config), budget).await;
}
