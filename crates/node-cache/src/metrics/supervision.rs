//! Our metrics beyond upstream's: how the supervision of CoreDNS is going.
//!
//! - `coredns_nodecache_coredns_restarts_total{reason="exited|hung"}`
//! - `coredns_nodecache_reloads_total{result="ok|failed"}`
//! - `coredns_nodecache_fail_open`: 1 while the rules are withdrawn because CoreDNS cannot serve

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RestartReason {
    Exited,
    Hung,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReloadResult {
    Ok,
    Failed,
}

impl From<coredns_child::RestartReason> for RestartReason {
    fn from(reason: coredns_child::RestartReason) -> Self {
        match reason {
            coredns_child::RestartReason::Exited => RestartReason::Exited,
            coredns_child::RestartReason::Hung => RestartReason::Hung,
        }
    }
}

impl RestartReason {
    /// Every label value; all are exposed from the start.
    pub const ALL: [RestartReason; 2] = [RestartReason::Exited, RestartReason::Hung];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            RestartReason::Exited => "exited",
            RestartReason::Hung => "hung",
        }
    }
}

impl ReloadResult {
    /// Every label value; all are exposed from the start.
    pub const ALL: [ReloadResult; 2] = [ReloadResult::Ok, ReloadResult::Failed];

    /// The `result` label value.
    pub fn label(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Failed => "failed",
        }
    }
}

/// Each type's label value is its `label()`.
macro_rules! encode_by_label {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.label())
            }
        }
    )*};
}

encode_by_label!(RestartReason, ReloadResult);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestartLabels {
    reason: RestartReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: ReloadResult,
}

#[derive(Clone, Debug, Default)]
pub struct Supervision {
    restarts: Family<RestartLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    fail_open: Gauge,
}

impl Supervision {
    /// Registers every series, each label pre-set to 0 so dashboards see them from the start.
    pub fn register(registry: &mut Registry) -> Self {
        let s = Self::default();
        for reason in RestartReason::ALL {
            drop(s.restarts.get_or_create(&RestartLabels { reason }));
        }
        for result in ReloadResult::ALL {
            drop(s.reloads.get_or_create(&ReloadLabels { result }));
        }
        registry.register(
            "coredns_nodecache_coredns_restarts",
            "CoreDNS child restarts by the agent, by reason",
            s.restarts.clone(),
        );
        registry.register(
            "coredns_nodecache_reloads",
            "Corefile reloads signalled to CoreDNS, by outcome",
            s.reloads.clone(),
        );
        registry.register(
            "coredns_nodecache_fail_open",
            "1 while the rules are withdrawn because CoreDNS cannot serve",
            s.fail_open.clone(),
        );
        s
    }

    pub fn restart(&self, reason: RestartReason) {
        self.restarts.get_or_create(&RestartLabels { reason }).inc();
    }

    pub fn reload(&self, result: ReloadResult) {
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    pub fn set_fail_open(&self, on: bool) {
        self.fail_open.set(i64::from(on));
    }
}
