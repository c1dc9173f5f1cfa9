//! When the node's rules are in place. They divert pods' DNS from kube-proxy's path to us, so
//! they go in only once our CoreDNS answers; when it has not served for `FAIL_OPEN_AFTER` and
//! no other instance serves, they come out ("fail open": pods reach kube-dns through
//! kube-proxy again) until it answers again. The interface stays, so a restarted CoreDNS can
//! bind.

use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::node_network::NodeNetwork;

/// How long CoreDNS may be unable to serve before the rules are withdrawn.
const FAIL_OPEN_AFTER: Duration = Duration::from_secs(2);

pub struct RulesPolicy {
    /// `-setupiptables`: whether the rules are ours to manage at all.
    managed: bool,
    in_place: bool,
    fail_open: bool,
    /// Since when CoreDNS has not been serving; None while it serves.
    down_since: Option<Instant>,
    /// This outage's rules were kept because a peer serves (said once per outage: the check
    /// repeats every `FAIL_OPEN_AFTER` while a rollout's new pod cannot start its CoreDNS).
    kept_for_peers: bool,
    /// The agent's start, for the "rules in place" figure.
    started: Instant,
}

impl RulesPolicy {
    pub fn new(managed: bool, started: Instant) -> Self {
        Self {
            managed,
            in_place: false,
            fail_open: false,
            down_since: Some(Instant::now()),
            kept_for_peers: false,
            started,
        }
    }

    /// Our CoreDNS answers: the rules go in if missing, and a fail-open ends. Returns whether
    /// this ended a fail-open.
    pub async fn on_serving(&mut self, network: &NodeNetwork, metrics: &Metrics) -> bool {
        self.down_since = None;
        self.kept_for_peers = false;
        if self.managed && !self.in_place {
            match network.ensure_rules().await {
                Ok(()) => {
                    self.in_place = true;
                    tracing::info!(
                        since_start_ms = self.started.elapsed().as_millis() as u64,
                        "rules in place"
                    );
                }
                Err(e) => tracing::error!("{e:#}; retrying every -syncinterval"),
            }
        }
        if self.fail_open && self.in_place {
            self.fail_open = false;
            metrics.supervision().set_fail_open(false);
            tracing::warn!("CoreDNS serves again; rules restored (fail-open ended)");
            return true;
        }
        false
    }

    /// Our CoreDNS stopped serving.
    pub fn on_down(&mut self) {
        self.down_since.get_or_insert_with(Instant::now);
    }

    /// When to fail open, if CoreDNS stays down; None while it serves or no rules are in.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        let since = self.down_since?;
        self.in_place
            .then(|| tokio::time::Instant::from_std(since + FAIL_OPEN_AFTER))
    }

    /// The deadline passed: withdraw the rules, unless another instance answers at the same
    /// IPs (then the rules still lead pods to DNS). Returns whether this started a fail-open.
    pub async fn on_deadline(
        &mut self,
        network: &NodeNetwork,
        metrics: &Metrics,
        serving_peers: &[String],
    ) -> bool {
        if !serving_peers.is_empty() {
            if !std::mem::replace(&mut self.kept_for_peers, true) {
                tracing::warn!(peers = ?serving_peers, "CoreDNS has not served for {FAIL_OPEN_AFTER:?}, but another instance serves; keeping the rules while it does");
            }
            self.down_since = Some(Instant::now());
            return false;
        }
        tracing::error!(
            "CoreDNS has not served for {FAIL_OPEN_AFTER:?}; withdrawing the rules so pods reach \
             kube-dns through kube-proxy (fail open) until it answers again"
        );
        // Whatever the outcome, stop retrying the deadline; sync() retries a partial removal.
        self.in_place = false;
        self.fail_open = true;
        metrics.supervision().set_fail_open(true);
        network.remove_rules().await;
        true
    }

    /// The periodic re-check: the rules while CoreDNS serves, their absence while failing open.
    pub async fn sync(&mut self, network: &NodeNetwork, serving: bool) {
        if !self.managed {
            return;
        }
        if serving {
            match network.ensure_rules().await {
                Ok(()) => self.in_place = true,
                Err(e) => tracing::error!("{e:#}"),
            }
        } else if self.fail_open {
            network.remove_rules().await;
        }
    }

    /// Whether our rules should be in place now (managed, inserted, not failing open).
    pub fn in_place(&self) -> bool {
        self.managed && self.in_place && !self.fail_open
    }

    /// Ready for the kubelet: our CoreDNS serves and, when we manage them, the rules are in.
    pub fn ready(&self, serving: bool) -> bool {
        serving && !self.fail_open && (self.in_place || !self.managed)
    }
}
