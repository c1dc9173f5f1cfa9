//! The packet-filter backend: one trait, so iptables today and nftables later plug in alike.

use crate::rules::Rule;

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{tool}: xtables lock still held after {wait_secs}s while applying {rule}")]
    Lock {
        tool: &'static str,
        wait_secs: u32,
        rule: String,
    },
    #[error("{tool} {rule}: {reason}")]
    Command {
        tool: &'static str,
        rule: String,
        reason: String,
    },
    #[error("{tool}: cannot run: {reason}")]
    Unavailable { tool: &'static str, reason: String },
}

impl FilterError {
    /// The `errortype` label of `coredns_nodecache_setup_errors_total`, as upstream counts it.
    pub fn metric_label(&self) -> &'static str {
        match self {
            FilterError::Lock { .. } => "iptables_lock",
            FilterError::Command { .. } | FilterError::Unavailable { .. } => "iptables",
        }
    }
}

/// What an `ensure` pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnsureReport {
    pub checked: usize,
    pub inserted: usize,
}

/// Blocking calls: run them off the async runtime.
pub trait PacketFilter: Send + Sync {
    fn name(&self) -> &'static str;
    /// Inserts each missing rule at the top of its chain, in the order given.
    fn ensure(&self, rules: &[Rule]) -> Result<EnsureReport, FilterError>;
    /// Removes every copy of each rule; keeps going after a failure and returns every error.
    fn remove(&self, rules: &[Rule]) -> Result<usize, Vec<FilterError>>;
}
