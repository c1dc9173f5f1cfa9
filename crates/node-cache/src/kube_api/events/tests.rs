//! The aggregation without an API (pure), and the background task against a recording fake.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use super::*;

fn pod() -> PodRef {
    PodRef {
        namespace: "kube-system".into(),
        name: "node-local-dns-x7k2p".into(),
        uid: Some("0b0e5c7e-1".into()),
    }
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn count(write: &Write) -> i32 {
    match write {
        Write::Create(e) => e.series.as_ref().map_or(1, |s| s.count),
        Write::Patch { series, .. } => series.count,
    }
}

#[test]
fn the_pod_comes_from_the_downward_api_and_both_name_and_namespace_are_needed() {
    let vars = |set: &'static [(&'static str, &'static str)]| {
        move |n: &str| {
            set.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(PodRef::from_env(&vars(&[("POD_NAME", "p")])), None);
    assert_eq!(PodRef::from_env(&vars(&[("POD_NAMESPACE", "ns")])), None);
    assert_eq!(
        PodRef::from_env(&vars(&[("POD_NAME", "p"), ("POD_NAMESPACE", "")])),
        None
    );
    assert_eq!(
        PodRef::from_env(&vars(&[("POD_NAME", "p"), ("POD_NAMESPACE", "ns")])),
        Some(PodRef {
            namespace: "ns".into(),
            name: "p".into(),
            uid: None
        })
    );
}

#[test]
fn one_notice_is_one_event_on_the_pod_without_a_series() {
    let mut agg = Aggregator::new(pod());
    agg.observe(Reason::CoreDnsHung, "CoreDNS stopped answering", at(0), 1);
    let writes = agg.writes(at(0));
    let [(Reason::CoreDnsHung, Write::Create(event))] = writes.as_slice() else {
        panic!("{writes:?}");
    };
    assert_eq!(event.reason.as_deref(), Some("CoreDNSHung"));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.action.as_deref(), Some("RestartCoreDNS"));
    assert_eq!(event.note.as_deref(), Some("CoreDNS stopped answering"));
    assert_eq!(event.series, None);
    assert_eq!(event.metadata.namespace.as_deref(), Some("kube-system"));
    assert!(event
        .metadata
        .name
        .as_deref()
        .is_some_and(|n| n.starts_with("node-local-dns-x7k2p.")));
    let regarding = event.regarding.as_ref().unwrap();
    assert_eq!(regarding.kind.as_deref(), Some("Pod"));
    assert_eq!(regarding.name.as_deref(), Some("node-local-dns-x7k2p"));
    assert_eq!(regarding.uid.as_deref(), Some("0b0e5c7e-1"));
    assert_eq!(event.reporting_controller.as_deref(), Some("node-cache"));
    assert_eq!(
        event.reporting_instance.as_deref(),
        Some("node-local-dns-x7k2p")
    );
}

#[test]
fn repeats_within_the_window_are_counted_on_one_event_and_later_ones_start_another() {
    let mut agg = Aggregator::new(pod());
    for i in 0..1000 {
        agg.observe(Reason::InvalidConfigMap, &format!("bad {i}"), at(0), 1);
    }
    let writes = agg.writes(at(0));
    assert_eq!(writes.len(), 1, "{writes:?}");
    let (reason, create) = &writes[0];
    let Write::Create(event) = create else {
        panic!("{create:?}")
    };
    assert_eq!(count(create), 1000);
    assert_eq!(
        event.note.as_deref(),
        Some("bad 0"),
        "the first notice's note"
    );
    let name = event.metadata.name.clone().unwrap();
    agg.written(*reason, create);
    assert!(!agg.has_pending());

    // Five minutes on: the same Event, its count raised.
    agg.observe(Reason::InvalidConfigMap, "bad again", at(300), 3);
    let writes = agg.writes(at(300));
    assert_eq!(
        writes,
        [(
            Reason::InvalidConfigMap,
            Write::Patch {
                name: name.clone(),
                series: EventSeries {
                    count: 1003,
                    last_observed_time: MicroTime(at(300))
                }
            }
        )]
    );
    agg.written(Reason::InvalidConfigMap, &writes[0].1);

    // Past the window since the last one: a new Event.
    agg.observe(Reason::InvalidConfigMap, "bad later", at(300 + 361), 1);
    let writes = agg.writes(at(300 + 361));
    let [(_, Write::Create(event))] = writes.as_slice() else {
        panic!("{writes:?}");
    };
    assert_eq!(event.note.as_deref(), Some("bad later"));
    assert_eq!(event.series, None);
}

#[test]
fn reasons_are_separate_events_and_an_expired_event_is_created_again() {
    let mut agg = Aggregator::new(pod());
    agg.observe(Reason::FailOpen, "rules withdrawn", at(0), 1);
    agg.observe(Reason::FailOpenEnded, "rules back", at(1), 1);
    let writes = agg.writes(at(1));
    assert_eq!(writes.len(), 2);
    let ended = writes
        .iter()
        .find_map(|(r, w)| (*r == Reason::FailOpenEnded).then_some(w))
        .unwrap();
    let Write::Create(event) = ended else {
        panic!()
    };
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    for (reason, write) in &writes {
        agg.written(*reason, write);
    }
    agg.observe(Reason::FailOpen, "again", at(10), 1);
    agg.forget(Reason::FailOpen);
    let writes = agg.writes(at(10));
    let [(Reason::FailOpen, Write::Create(event))] = writes.as_slice() else {
        panic!("{writes:?}");
    };
    assert_eq!(event.series, None, "counted anew");
}

#[test]
fn a_long_note_is_cut_to_the_apis_limit_on_a_character_boundary() {
    let mut agg = Aggregator::new(pod());
    agg.observe(Reason::CorefileRejected, &"é".repeat(2000), at(0), 1);
    let writes = agg.writes(at(0));
    let [(_, Write::Create(event))] = writes.as_slice() else {
        panic!()
    };
    let note = event.note.as_deref().unwrap();
    assert!(
        note.len() <= NOTE_MAX_BYTES && note.len() > 1000,
        "{}",
        note.len()
    );
    assert!(note.ends_with('…'));
}

/// Records the writes; fails them with 403 while `forbidden`.
#[derive(Clone, Default)]
struct Recording {
    writes: Arc<Mutex<Vec<Write>>>,
    attempts: Arc<AtomicU32>,
    forbidden: Arc<AtomicBool>,
}

impl Recording {
    fn result(&self, write: Write) -> Result<(), kube::Error> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if self.forbidden.load(Ordering::Relaxed) {
            return Err(kube::Error::Api(Box::new(kube::core::Status {
                code: 403,
                reason: "Forbidden".into(),
                message: "events.events.k8s.io is forbidden".into(),
                ..Default::default()
            })));
        }
        self.writes.lock().unwrap().push(write);
        Ok(())
    }

    fn writes(&self) -> Vec<i32> {
        self.writes.lock().unwrap().iter().map(count).collect()
    }
}

impl EventApi for Recording {
    async fn create(&self, event: &K8sEvent) -> Result<(), kube::Error> {
        self.result(Write::Create(Box::new(event.clone())))
    }

    async fn patch_series(&self, name: &str, series: &EventSeries) -> Result<(), kube::Error> {
        self.result(Write::Patch {
            name: name.into(),
            series: series.clone(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_beyond_the_queue_is_one_event_counting_every_notice() {
    let api = Recording::default();
    let events = start(api.clone(), pod());
    // Reported without yielding: 64 queued, the rest counted as overflow.
    for i in 0..1000 {
        events.report(Reason::InvalidConfigMap, format!("bad {i}"));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let writes = api.writes();
    assert!(writes.len() <= 3, "{writes:?}");
    assert_eq!(writes.last(), Some(&1000), "{writes:?}");
    assert!(matches!(api.writes.lock().unwrap()[0], Write::Create(_)));
    // A second burst a while later: patches of the same Event.
    for _ in 0..50 {
        events.report(Reason::InvalidConfigMap, "bad");
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let writes = api.writes();
    assert_eq!(writes.last(), Some(&1050), "{writes:?}");
    assert!(writes.len() <= 6, "{writes:?}");
}

#[tokio::test(start_paused = true)]
async fn without_permission_reports_are_counted_retried_with_back_off_and_written_later() {
    let api = Recording::default();
    api.forbidden.store(true, Ordering::Relaxed);
    let events = start(api.clone(), pod());
    for _ in 0..20 {
        events.report(Reason::CoreDnsExited, "CoreDNS exited");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // A minute of notices: back-off 1, 2, 4, 8, 16, 32 s: a handful of attempts, not 20.
    let attempts = api.attempts.load(Ordering::Relaxed);
    assert!((3..=7).contains(&attempts), "{attempts} attempts");
    api.forbidden.store(false, Ordering::Relaxed);
    tokio::time::sleep(RETRY_MAX).await;
    assert_eq!(api.writes(), [20]);
}

#[test]
fn without_a_pod_or_an_api_reports_go_nowhere() {
    let events = Events::default();
    assert!(events.queue.is_none());
    events.report(Reason::FailOpen, "nothing happens");
}

#[tokio::test]
async fn without_the_downward_api_no_task_starts() {
    let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let name_only = |n: &str| (n == "POD_NAME").then(|| "p".to_string());
    assert!(start_for_pod(&client, &name_only).queue.is_none());
    let both = |n: &str| matches!(n, "POD_NAME" | "POD_NAMESPACE").then(|| "p".to_string());
    assert!(start_for_pod(&client, &both).queue.is_some());
}
