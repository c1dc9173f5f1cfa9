//! Kubernetes Events on the node-cache pod (events.k8s.io/v1) for what an operator should see in
//! `kubectl describe pod`: fail-open entered and left, CoreDNS restarted (exited or hung), a
//! Corefile CoreDNS rejected, an invalid ConfigMap.
//!
//! Best-effort and off the serving loop's path: [`Events::report`] never waits (a bounded queue
//! to a background task; when it is full the notice is only counted, and the count still reaches
//! the Event). The task aggregates: notices with one reason within [`SERIES_WINDOW`] of the last
//! are one Event whose `series.count` is raised, and the API is written at most once per
//! [`FLUSH_GAP`] per reason, so 1000 bad ConfigMap swaps make one Event counting 1000, not 1000
//! Events. Without API access (upstream's manifest has no RBAC for Events, no token, the
//! apiserver down) it says so once and keeps counting, retrying with back-off.
//!
//! The pod comes from the downward API: `POD_NAME` and `POD_NAMESPACE` (both needed, else no
//! Events), `POD_UID` (optional, pins the Event to this pod rather than a namesake).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coredns_child::sleep_until_opt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Notices queued for the background task; more are counted, not queued.
const QUEUE: usize = 64;
/// Repeats of a reason this close to the last are counted on its Event, as client-go's
/// events.k8s.io recorder does; later ones start a new Event.
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// The API is written at most this often (a burst's notices are one create or patch).
pub const FLUSH_GAP: Duration = Duration::from_secs(1);
/// One API request's limit: a blackholed apiserver holds notices, not the task.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Back-off after a failed write: doubles from the first to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// The API's limit on an Event's note.
const NOTE_MAX_BYTES: usize = 1024;
/// `reportingController` of our Events.
const CONTROLLER: &str = "node-cache";

/// Why an Event is sent; its `reason`, `type` and `action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// CoreDNS could not serve for too long: the rules were withdrawn.
    FailOpen,
    /// CoreDNS serves again: the rules are back.
    FailOpenEnded,
    /// CoreDNS exited and was restarted.
    CoreDnsExited,
    /// CoreDNS stopped answering, was killed and restarted.
    CoreDnsHung,
    /// CoreDNS refused to load a new Corefile (it keeps the previous one).
    CorefileRejected,
    /// A ConfigMap (template or kube-dns) cannot be used; the last good Corefile stays.
    InvalidConfigMap,
}

impl Reason {
    const ALL: [Reason; 6] = [
        Reason::FailOpen,
        Reason::FailOpenEnded,
        Reason::CoreDnsExited,
        Reason::CoreDnsHung,
        Reason::CorefileRejected,
        Reason::InvalidConfigMap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::FailOpen => "FailOpen",
            Reason::FailOpenEnded => "FailOpenEnded",
            Reason::CoreDnsExited => "CoreDNSExited",
            Reason::CoreDnsHung => "CoreDNSHung",
            Reason::CorefileRejected => "CorefileRejected",
            Reason::InvalidConfigMap => "InvalidConfigMap",
        }
    }

    fn type_(self) -> &'static str {
        match self {
            Reason::FailOpenEnded => "Normal",
            _ => "Warning",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Reason::FailOpen => "WithdrawRules",
            Reason::FailOpenEnded => "RestoreRules",
            Reason::CoreDnsExited | Reason::CoreDnsHung => "RestartCoreDNS",
            Reason::CorefileRejected => "ReloadCoreDNS",
            Reason::InvalidConfigMap => "RenderCorefile",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The reason for a CoreDNS restart.
    pub fn restarted(why: coredns_child::RestartReason) -> Self {
        match why {
            coredns_child::RestartReason::Exited => Reason::CoreDnsExited,
            coredns_child::RestartReason::Hung => Reason::CoreDnsHung,
        }
    }
}

/// The pod the Events are about, from the downward API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

impl PodRef {
    /// `POD_NAMESPACE`, `POD_NAME` and (optional) `POD_UID`; None without the first two.
    pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        Some(Self {
            namespace: get("POD_NAMESPACE")?,
            name: get("POD_NAME")?,
            uid: get("POD_UID"),
        })
    }

    fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: self.uid.clone(),
            ..Default::default()
        }
    }
}

struct Notice {
    reason: Reason,
    note: String,
    at: Timestamp,
}

/// Notices that found the queue full, per reason.
#[derive(Default)]
struct Overflow([AtomicU32; Reason::ALL.len()]);

/// Where the serving loop reports; cheap to clone. The default reports nowhere.
#[derive(Clone, Default)]
pub struct Events {
    queue: Option<(mpsc::Sender<Notice>, Arc<Overflow>)>,
}

impl Events {
    /// Queues `reason` for the pod's Events; never waits. Nothing happens without an API.
    pub fn report(&self, reason: Reason, note: impl Into<String>) {
        let Some((tx, overflow)) = &self.queue else {
            return;
        };
        let notice = Notice {
            reason,
            note: note.into(),
            at: Timestamp::now(),
        };
        if tx.try_send(notice).is_err() {
            overflow.0[reason.index()].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the background task writing Events on the pod the downward API names (`var` reads
/// the environment); reports go nowhere without one.
pub fn start_for_pod(client: &kube::Client, var: &dyn Fn(&str) -> Option<String>) -> Events {
    let Some(pod) = PodRef::from_env(var) else {
        tracing::debug!("POD_NAME or POD_NAMESPACE not set: no Kubernetes Events");
        return Events::default();
    };
    start(Api::namespaced(client.clone(), &pod.namespace), pod)
}

/// Starts the background task writing `pod`'s Events through `api`.
fn start(api: impl EventApi + Send + Sync + 'static, pod: PodRef) -> Events {
    let (tx, rx) = mpsc::channel(QUEUE);
    let overflow = Arc::new(Overflow::default());
    tokio::spawn(publish(rx, overflow.clone(), api, Aggregator::new(pod)));
    Events {
        queue: Some((tx, overflow)),
    }
}

/// The two writes the task makes: the API, or a recording fake in tests.
pub trait EventApi {
    fn create(&self, event: &K8sEvent) -> impl Future<Output = Result<(), kube::Error>> + Send;
    fn patch_series(
        &self,
        name: &str,
        series: &EventSeries,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

impl EventApi for Api<K8sEvent> {
    async fn create(&self, event: &K8sEvent) -> Result<(), kube::Error> {
        Api::create(self, &PostParams::default(), event)
            .await
            .map(drop)
    }

    async fn patch_series(&self, name: &str, series: &EventSeries) -> Result<(), kube::Error> {
        let patch = K8sEvent {
            series: Some(series.clone()),
            ..Default::default()
        };
        Api::patch(self, name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
    }
}

/// One write the aggregate asks for.
#[derive(Debug, PartialEq)]
pub enum Write {
    Create(Box<K8sEvent>),
    Patch { name: String, series: EventSeries },
}

/// What is known about one reason's Event.
struct Series {
    /// Notices not yet written: how many, the first's note and time, the last's time.
    pending: u32,
    note: String,
    first: Timestamp,
    last: Timestamp,
    /// The Event written, while repeats may still be counted on it.
    written: Option<Written>,
}

struct Written {
    name: String,
    count: u32,
    last: Timestamp,
}

/// The Events to be, per reason: pure, so the aggregation is tested without an API.
pub struct Aggregator {
    pod: PodRef,
    series: BTreeMap<Reason, Series>,
}

impl Aggregator {
    pub fn new(pod: PodRef) -> Self {
        Self {
            pod,
            series: BTreeMap::new(),
        }
    }

    /// `count` notices of `reason`, the first with `note`, observed at `at`.
    pub fn observe(&mut self, reason: Reason, note: &str, at: Timestamp, count: u32) {
        if count == 0 {
            return;
        }
        let s = self.series.entry(reason).or_insert_with(|| Series {
            pending: 0,
            note: String::new(),
            first: at,
            last: at,
            written: None,
        });
        if s.pending == 0 {
            s.note = truncate(note, NOTE_MAX_BYTES);
            s.first = at;
        }
        s.pending += count;
        s.last = s.last.max(at);
    }

    pub fn has_pending(&self) -> bool {
        self.series.values().any(|s| s.pending > 0)
    }

    /// The writes due at `now`, one per reason with notices pending.
    pub fn writes(&self, now: Timestamp) -> Vec<(Reason, Write)> {
        self.series
            .iter()
            .filter(|(_, s)| s.pending > 0)
            .map(|(&reason, s)| (reason, self.write(reason, s, now)))
            .collect()
    }

    fn write(&self, reason: Reason, s: &Series, now: Timestamp) -> Write {
        match &s.written {
            Some(w) if w.last + SERIES_WINDOW > now => Write::Patch {
                name: w.name.clone(),
                series: EventSeries {
                    count: clamp(w.count + s.pending),
                    last_observed_time: MicroTime(s.last),
                },
            },
            _ => Write::Create(Box::new(self.event(reason, s, now))),
        }
    }

    fn event(&self, reason: Reason, s: &Series, now: Timestamp) -> K8sEvent {
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", self.pod.name, now.as_nanosecond())),
                namespace: Some(self.pod.namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(s.first)),
            // The API refuses a series counting fewer than two.
            series: (s.pending > 1).then(|| EventSeries {
                count: clamp(s.pending),
                last_observed_time: MicroTime(s.last),
            }),
            reason: Some(reason.name().into()),
            type_: Some(reason.type_().into()),
            action: Some(reason.action().into()),
            note: Some(s.note.clone()),
            regarding: Some(self.pod.object_ref()),
            reporting_controller: Some(CONTROLLER.into()),
            reporting_instance: Some(self.pod.name.clone()),
            ..Default::default()
        }
    }

    /// `write` for `reason` succeeded: its notices are counted on the Event.
    pub fn written(&mut self, reason: Reason, write: &Write) {
        let Some(s) = self.series.get_mut(&reason) else {
            return;
        };
        let (name, before) = match write {
            Write::Create(event) => (event.metadata.name.clone().unwrap_or_default(), 0),
            Write::Patch { name, .. } => (name.clone(), s.written.as_ref().map_or(0, |w| w.count)),
        };
        s.written = Some(Written {
            name,
            count: before + s.pending,
            last: s.last,
        });
        s.pending = 0;
    }

    /// The Event for `reason` is gone (expired by the apiserver's event TTL): the next write
    /// creates one.
    pub fn forget(&mut self, reason: Reason) {
        if let Some(s) = self.series.get_mut(&reason) {
            s.written = None;
        }
    }
}

fn clamp(count: u32) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The background task: queue → aggregate → API, until every [`Events`] handle is gone.
async fn publish(
    mut rx: mpsc::Receiver<Notice>,
    overflow: Arc<Overflow>,
    api: impl EventApi,
    mut events: Aggregator,
) {
    let mut next_write: Option<Instant> = None;
    // No write before this: the gap after the last one, or the back-off after a failure.
    let mut not_before = Instant::now();
    let mut retry = RETRY_FIRST;
    let mut said = false;
    loop {
        tokio::select! {
            notice = rx.recv() => match notice {
                Some(n) => events.observe(n.reason, &n.note, n.at, 1),
                None => return,
            },
            _ = sleep_until_opt(next_write) => {
                next_write = None;
                for reason in Reason::ALL {
                    let dropped = overflow.0[reason.index()].swap(0, Ordering::Relaxed);
                    events.observe(reason, "(more notices than the queue holds)", Timestamp::now(), dropped);
                }
                match write_all(&api, &mut events).await {
                    Ok(()) => {
                        retry = RETRY_FIRST;
                        not_before = Instant::now() + FLUSH_GAP;
                    }
                    Err(why) => {
                        if said {
                            tracing::debug!("Kubernetes Event not written: {why}");
                        } else {
                            tracing::info!(
                                "Kubernetes Events on this pod are not written ({why}); \
                                 counting them and retrying with back-off"
                            );
                            said = true;
                        }
                        not_before = Instant::now() + retry;
                        retry = (retry * 2).min(RETRY_MAX);
                    }
                }
            }
        }
        if next_write.is_none() && events.has_pending() {
            next_write = Some(not_before.max(Instant::now()));
        }
    }
}

/// Every write due; stops at the first failure (the rest wait for the retry).
async fn write_all(api: &impl EventApi, events: &mut Aggregator) -> Result<(), String> {
    for (reason, write) in events.writes(Timestamp::now()) {
        let result = match &write {
            Write::Create(event) => tokio::time::timeout(REQUEST_TIMEOUT, api.create(event)).await,
            Write::Patch { name, series } => {
                tokio::time::timeout(REQUEST_TIMEOUT, api.patch_series(name, series)).await
            }
        };
        match result {
            Ok(Ok(())) => events.written(reason, &write),
            // Expired (the apiserver's event TTL): created again at the next write.
            Ok(Err(kube::Error::Api(status)))
                if status.code == 404 && matches!(write, Write::Patch { .. }) =>
            {
                events.forget(reason)
            }
            Ok(Err(kube::Error::Api(status))) => {
                return Err(format!(
                    "{} {}: {}",
                    status.code, status.reason, status.message
                ))
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
