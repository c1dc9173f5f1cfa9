//! The agent's own Prometheus endpoint (`-metrics-listen-address`, path `/metrics`), exposing
//! what upstream exposes there: `coredns_nodecache_setup_errors_total{errortype=...}`, every
//! label pre-set to 0. CoreDNS's own metrics stay on its `prometheus` plugin's address.

mod http;
mod listen;
mod supervision;
mod tls;

use std::sync::Arc;

use netsetup::{FilterError, InterfaceError, SelectError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use http::{serve, Endpoint};
pub use listen::{bind, parse_listen_address, ListenAddress};
pub use supervision::{ReloadResult, RestartReason, Supervision};

/// Family name of the setup-error counter; samples carry the `_total` suffix, so the exposed
/// series is `coredns_nodecache_setup_errors_total` (upstream: namespace `coredns`, subsystem
/// `nodecache`, name `setup_errors_total`).
const SETUP_ERRORS: &str = "coredns_nodecache_setup_errors";
/// Upstream's HELP text: scrapers and dashboards may show it, so it matches exactly.
const SETUP_ERRORS_HELP: &str = "The number of errors during periodic network setup for node-cache";

/// What failed during setup: upstream's `errortype` label values.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ErrorType {
    /// An iptables command failed.
    Iptables,
    /// An iptables command failed because another process held the xtables lock.
    IptablesLock,
    /// The interface holding the local IPs could not be created.
    InterfaceAdd,
    /// Checking the interface (or its addresses) failed.
    InterfaceCheck,
    /// The kube-dns ConfigMap was invalid.
    Configmap,
}

impl ErrorType {
    /// Every label value, in upstream's order; all are exposed from the start.
    pub const ALL: [ErrorType; 5] = [
        ErrorType::Iptables,
        ErrorType::IptablesLock,
        ErrorType::InterfaceAdd,
        ErrorType::InterfaceCheck,
        ErrorType::Configmap,
    ];

    /// The label value as upstream spells it.
    pub fn label(self) -> &'static str {
        match self {
            ErrorType::Iptables => "iptables",
            ErrorType::IptablesLock => "iptables_lock",
            ErrorType::InterfaceAdd => "interface_add",
            ErrorType::InterfaceCheck => "interface_check",
            ErrorType::Configmap => "configmap",
        }
    }
}

/// Upstream counts every rule error as `iptables`, whatever the backend, except a held lock.
impl From<&FilterError> for ErrorType {
    fn from(e: &FilterError) -> Self {
        match e {
            FilterError::Lock { .. } => ErrorType::IptablesLock,
            FilterError::Command { .. } | FilterError::Unavailable { .. } => ErrorType::Iptables,
        }
    }
}

/// No backend could be chosen: counted as a rule error, as upstream counts any.
impl From<&SelectError> for ErrorType {
    fn from(e: &SelectError) -> Self {
        match e {
            SelectError::Conflict(_) => ErrorType::Iptables,
            SelectError::Filter(e) => e.into(),
        }
    }
}

/// Upstream counts a failure to read the interface as `interface_check`, any other as
/// `interface_add`; deleting it only happens here, in teardown, and counts as a check.
impl From<&InterfaceError> for ErrorType {
    fn from(e: &InterfaceError) -> Self {
        match e {
            InterfaceError::Check { .. } | InterfaceError::Delete { .. } => {
                ErrorType::InterfaceCheck
            }
            InterfaceError::Socket(_)
            | InterfaceError::Create { .. }
            | InterfaceError::AddAddress { .. } => ErrorType::InterfaceAdd,
        }
    }
}

impl EncodeLabelValue for ErrorType {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.label())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SetupErrorLabels {
    errortype: ErrorType,
}

/// The setup-error family, encoded by hand so the HELP text is exactly upstream's
/// (`Registry::register` would append a full stop).
#[derive(Debug, Default)]
struct SetupErrors(Family<SetupErrorLabels, Counter>);

impl Collector for SetupErrors {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric = encoder.encode_descriptor(
            SETUP_ERRORS,
            SETUP_ERRORS_HELP,
            None,
            MetricType::Counter,
        )?;
        self.0.encode(metric)
    }
}

/// The agent's metrics. Cloning is cheap; every clone counts into the same registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    setup_errors: Family<SetupErrorLabels, Counter>,
    supervision: Supervision,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The registry with upstream's metrics, all setup-error labels at 0.
    pub fn new() -> Self {
        Self::with_registry(|_| {})
    }

    /// Like [`Metrics::new`], then `register` adds further metrics of ours to the registry
    /// before it is frozen (the registry is immutable once shared).
    pub fn with_registry(register: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        let setup_errors = SetupErrors::default();
        for t in ErrorType::ALL {
            // Creating the child is what makes the label appear at 0.
            drop(
                setup_errors
                    .0
                    .get_or_create(&SetupErrorLabels { errortype: t }),
            );
        }
        let family = setup_errors.0.clone();
        registry.register_collector(Box::new(setup_errors));
        let supervision = Supervision::register(&mut registry);
        register(&mut registry);
        Self {
            inner: Arc::new(Inner {
                registry,
                setup_errors: family,
                supervision,
            }),
        }
    }

    /// Counts one setup error of type `t`.
    pub fn setup_error(&self, t: ErrorType) {
        self.inner
            .setup_errors
            .get_or_create(&SetupErrorLabels { errortype: t })
            .inc();
    }

    /// The CoreDNS supervision metrics (restarts, reloads, fail-open).
    pub fn supervision(&self) -> &Supervision {
        &self.inner.supervision
    }

    /// Everything in the registry, as OpenMetrics text (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an Err here could only come from a metric's own
        // encoder, and then a partial exposition is still the most useful answer.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, label: &str) -> Option<String> {
        let prefix = format!("coredns_nodecache_setup_errors_total{{errortype=\"{label}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
    }

    #[test]
    fn all_five_labels_start_at_zero_under_upstreams_name() {
        let text = Metrics::new().encode();
        for label in ErrorType::ALL.map(ErrorType::label) {
            assert_eq!(
                sample(&text, label).as_deref(),
                Some("0"),
                "{label}:\n{text}"
            );
        }
        assert!(
            text.contains(
                "# HELP coredns_nodecache_setup_errors The number of errors during periodic \
                 network setup for node-cache\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE coredns_nodecache_setup_errors counter\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn setup_error_counts_once_per_call_and_clones_share() {
        let metrics = Metrics::new();
        let clone = metrics.clone();
        clone.setup_error(ErrorType::IptablesLock);
        clone.setup_error(ErrorType::IptablesLock);
        metrics.setup_error(ErrorType::Configmap);
        let text = metrics.encode();
        assert_eq!(sample(&text, "iptables_lock").as_deref(), Some("2"));
        assert_eq!(sample(&text, "configmap").as_deref(), Some("1"));
        assert_eq!(sample(&text, "iptables").as_deref(), Some("0"));
    }

    #[test]
    fn labels_match_upstream_spelling() {
        let labels: Vec<_> = ErrorType::ALL.iter().map(|t| t.label()).collect();
        assert_eq!(
            labels,
            [
                "iptables",
                "iptables_lock",
                "interface_add",
                "interface_check",
                "configmap"
            ]
        );
    }

    #[test]
    fn library_errors_count_under_upstreams_labels() {
        let lock = FilterError::Lock {
            tool: "iptables",
            wait_secs: 5,
            rule: "-t raw PREROUTING".into(),
        };
        let unavailable = FilterError::Unavailable {
            tool: "nft",
            reason: "not found".into(),
        };
        let conflict = SelectError::Conflict(netsetup::Conflict::NoTool);
        assert_eq!(ErrorType::from(&lock), ErrorType::IptablesLock);
        assert_eq!(ErrorType::from(&unavailable), ErrorType::Iptables);
        assert_eq!(ErrorType::from(&conflict), ErrorType::Iptables);
        let check = InterfaceError::Check {
            name: "nodelocaldns".into(),
            reason: "EPERM".into(),
        };
        let create = InterfaceError::Create {
            name: "nodelocaldns".into(),
            reason: "EPERM".into(),
        };
        assert_eq!(ErrorType::from(&check), ErrorType::InterfaceCheck);
        assert_eq!(ErrorType::from(&create), ErrorType::InterfaceAdd);
    }

    #[test]
    fn further_metrics_can_be_registered() {
        let extra = Counter::<u64>::default();
        let metrics = Metrics::with_registry(|r| {
            r.register(
                "coredns_nodecache_test_events",
                "Test events",
                extra.clone(),
            )
        });
        extra.inc();
        let text = metrics.encode();
        assert!(
            text.contains("coredns_nodecache_test_events_total 1\n"),
            "{text}"
        );
        assert_eq!(sample(&text, "iptables").as_deref(), Some("0"));
    }
}
