//! The packet-filter backend: one trait, so iptables (per family, or both through
//! [`crate::DualStack`]) and nftables ([`crate::NftBackend`]) plug in alike;
//! [`crate::backend_select`] picks one.

use crate::rules::Rule;

/// A rule operation that failed. Upstream counts every one under `errortype="iptables"`,
/// whatever the backend, except a held xtables lock ([`FilterError::Lock`]: `iptables_lock`).
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

/// What an `ensure` pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnsureReport {
    pub checked: usize,
    pub inserted: usize,
}

/// What a `check` found; it changes nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Rules asked about that are in place.
    pub present: usize,
    /// Rules asked about that are not in place (nftables: also those in a chain whose hook or
    /// priority is wrong, since they would not act as intended).
    pub missing: usize,
    /// Extra copies of our rules, and (nftables) anything else in the table only we own.
    pub surplus: usize,
}

impl CheckReport {
    /// Every rule asked about is in place.
    pub fn complete(&self) -> bool {
        self.missing == 0
    }
}

impl std::ops::Add for CheckReport {
    type Output = CheckReport;
    fn add(self, other: CheckReport) -> CheckReport {
        CheckReport {
            present: self.present + other.present,
            missing: self.missing + other.missing,
            surplus: self.surplus + other.surplus,
        }
    }
}

/// Blocking calls: run them off the async runtime.
pub trait PacketFilter: Send + Sync {
    fn name(&self) -> &'static str;
    /// Inserts each missing rule at the top of its chain, in the order given.
    fn ensure(&self, rules: &[Rule]) -> Result<EnsureReport, FilterError>;
    /// How many of `rules` are in place; changes nothing.
    fn check(&self, rules: &[Rule]) -> Result<CheckReport, FilterError>;
    /// Removes every copy of each rule; keeps going after a failure and returns every error.
    fn remove(&self, rules: &[Rule]) -> Result<usize, Vec<FilterError>>;
    /// Whether something foreign sits above one of `rules` in its chain (so runs first);
    /// changes nothing. Backends whose rules cannot be displaced (nftables: its own table,
    /// ordered by hook priority) say no.
    fn displaced(&self, _rules: &[Rule]) -> Result<bool, FilterError> {
        Ok(false)
    }
    /// Puts `rules` back in front of anything foreign above them, atomically per table;
    /// returns how many tables were rewritten (0: nothing was displaced).
    fn put_first(&self, _rules: &[Rule]) -> Result<usize, FilterError> {
        Ok(0)
    }
    /// Of node-cache's rules `all`, leaves only `keep` in place; returns how many went.
    fn retain(&self, keep: &[Rule], all: &[Rule]) -> Result<usize, Vec<FilterError>> {
        let gone: Vec<Rule> = all.iter().filter(|r| !keep.contains(r)).cloned().collect();
        self.remove(&gone)
    }
}

/// Removals that each ran whatever the others' outcome (each family of [`crate::DualStack`], the
/// passes of one backend): the count of rules that went, or every error of every removal.
pub(crate) fn all_removals(
    outcomes: impl IntoIterator<Item = Result<usize, Vec<FilterError>>>,
) -> Result<usize, Vec<FilterError>> {
    let mut removed = 0;
    let mut errors = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(n) => removed += n,
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(removed)
    } else {
        Err(errors)
    }
}
