//! The node's network state node-cache owns, driven from the event loop: the interface with the
//! local IPs and the packet-filter rules. Errors are counted under upstream's metric labels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use netsetup::{node_cache_rules, select, Interface, PacketFilter, Rule};

use crate::flags::Config;
use crate::metrics::{ErrorType, Metrics};

/// How long an insert waits for another instance's; then it goes ahead (a duplicate rule is
/// better than none, and teardown removes every copy).
const ENSURE_LOCK_WAIT: Duration = Duration::from_secs(5);

pub struct NodeNetwork {
    /// `-interfacename`: also names the node-wide lock the instances share.
    interface_name: String,
    /// `-dns.port`: which rules match queries.
    dns_port: u16,
    interface: Option<Interface>,
    filter: Option<Arc<dyn PacketFilter>>,
    rules: Arc<Vec<Rule>>,
    metrics: Metrics,
}

impl NodeNetwork {
    /// Opens what the flags ask for; touches nothing yet.
    pub fn new(config: &Config, metrics: Metrics) -> Result<Self> {
        let interface = if config.setup_interface {
            Some(Interface::new(&config.interface_name, &config.local_ips)?)
        } else {
            None
        };
        let filter: Option<Arc<dyn PacketFilter>> = if config.setup_iptables {
            let selected = select(config.firewall_backend, &config.local_ips).inspect_err(|e| {
                metrics.setup_error(ErrorType::from(e));
            })?;
            tracing::info!(backend = selected.filter.name(), "{}", selected.reason);
            Some(selected.filter)
        } else {
            None
        };
        Ok(Self {
            interface_name: config.interface_name.clone(),
            dns_port: config.dns_port,
            interface,
            filter,
            rules: Arc::new(node_cache_rules(
                &config.local_ips,
                config.dns_port,
                config.health_port,
            )),
            metrics,
        })
    }

    /// Creates the interface and adds missing addresses. Returns whether anything changed; an
    /// error is counted and returned.
    pub async fn ensure_interface(&self) -> Result<bool> {
        let Some(interface) = &self.interface else {
            return Ok(false);
        };
        match interface.ensure().await {
            Ok(report) => {
                if report.changed() {
                    tracing::info!(
                        interface = interface.name(),
                        created = ?report.created,
                        set_up = report.set_up,
                        added = ?report.addresses_added,
                        "interface ensured"
                    );
                }
                Ok(report.changed())
            }
            Err(e) => {
                self.metrics.setup_error(ErrorType::from(&e));
                Err(e.into())
            }
        }
    }

    /// Inserts missing rules, off the async runtime (iptables blocks). An error is counted and
    /// returned.
    pub async fn ensure_rules(&self) -> Result<()> {
        let Some(filter) = self.filter.clone() else {
            return Ok(());
        };
        let rules = self.rules.clone();
        let started = Instant::now();
        // Two instances starting together (the HA pair) would both find no rule and both
        // insert all of them: check-then-insert runs under the peers' node-wide lock.
        let _lock = crate::peers::lock(&self.interface_name, ENSURE_LOCK_WAIT).await;
        let result = tokio::task::spawn_blocking(move || filter.ensure(&rules)).await?;
        match result {
            Ok(report) if report.inserted > 0 => {
                tracing::info!(
                    inserted = report.inserted,
                    checked = report.checked,
                    took_ms = started.elapsed().as_millis() as u64,
                    "rules ensured"
                );
                Ok(())
            }
            Ok(report) => {
                tracing::debug!(
                    checked = report.checked,
                    took_ms = started.elapsed().as_millis() as u64,
                    "rules in place"
                );
                Ok(())
            }
            Err(e) => {
                self.metrics.setup_error(ErrorType::from(&e));
                Err(e.into())
            }
        }
    }

    /// Puts our rules back in front where a foreign rule got above them (crate::rule_order);
    /// returns how many tables were rewritten. Nothing displaced costs one `iptables-save` per
    /// table and no lock; a move runs under the peers' lock (the HA pair would race) and is
    /// counted under `errortype="iptables"`, as is a failed move.
    pub async fn keep_rules_first(&self) -> Result<usize> {
        let Some(filter) = self.filter.clone() else {
            return Ok(0);
        };
        let rules = self.rules.clone();
        let (f, r) = (filter.clone(), rules.clone());
        let displaced = tokio::task::spawn_blocking(move || f.displaced(&r)).await?;
        match displaced {
            Ok(false) => return Ok(0),
            Ok(true) => {}
            // Not counted: the same failure is counted by every -syncinterval's ensure, and
            // counting it here would add two a second.
            Err(e) => return Err(e.into()),
        }
        let _lock = crate::peers::lock(&self.interface_name, ENSURE_LOCK_WAIT).await;
        let moved = tokio::task::spawn_blocking(move || filter.put_first(&rules)).await?;
        match moved {
            Ok(tables) => {
                if tables > 0 {
                    self.metrics.setup_error(ErrorType::Iptables);
                }
                Ok(tables)
            }
            Err(e) => {
                self.metrics.setup_error(ErrorType::from(&e));
                Err(e.into())
            }
        }
    }

    /// Stops diverting queries to us: the rules that match queries go, those that keep our
    /// CoreDNS's answers untracked stay until it has stopped. Without them an answer to a
    /// query from before would create a conntrack entry that the pod's next query (same
    /// source port) matches, bypassing kube-proxy's DNAT to a CoreDNS that is gone.
    pub async fn stop_diverting(&self) -> bool {
        let Some(filter) = self.filter.clone() else {
            return true;
        };
        let all = self.rules.clone();
        let keep: Vec<Rule> = all
            .iter()
            .filter(|r| !r.matches_queries_to(self.dns_port))
            .cloned()
            .collect();
        match tokio::task::spawn_blocking(move || filter.retain(&keep, &all)).await {
            Ok(Ok(removed)) => {
                tracing::info!(removed, "query rules removed; queries go to kube-dns again");
                true
            }
            Ok(Err(errors)) => {
                for e in errors {
                    self.metrics.setup_error(ErrorType::from(&e));
                    tracing::error!("removing the query rules: {e}");
                }
                false
            }
            Err(e) => {
                tracing::error!("rule removal task failed: {e}");
                false
            }
        }
    }

    /// Removes every copy of our rules. Errors are counted and logged; returns whether all went.
    pub async fn remove_rules(&self) -> bool {
        let Some(filter) = self.filter.clone() else {
            return true;
        };
        let rules = self.rules.clone();
        match tokio::task::spawn_blocking(move || filter.remove(&rules)).await {
            Ok(Ok(removed)) => {
                tracing::info!(removed, "rules removed");
                true
            }
            Ok(Err(errors)) => {
                for e in errors {
                    self.metrics.setup_error(ErrorType::from(&e));
                    tracing::error!("removing rules: {e}");
                }
                false
            }
            Err(e) => {
                tracing::error!("rule removal task failed: {e}");
                false
            }
        }
    }

    /// Removes the interface (after the rules: the other order would leave rules steering the
    /// kube-dns IP to an address that no longer exists). Returns whether it went.
    pub async fn remove_interface(&self) -> bool {
        let Some(interface) = &self.interface else {
            return true;
        };
        match interface.remove().await {
            Ok(true) => {
                tracing::info!(interface = interface.name(), "interface removed");
                true
            }
            Ok(false) => true,
            Err(e) => {
                tracing::error!("teardown: {e}");
                false
            }
        }
    }

    /// Whether the flags asked for an interface (and so for interface events).
    pub fn manages_interface(&self) -> bool {
        self.interface.is_some()
    }
}
