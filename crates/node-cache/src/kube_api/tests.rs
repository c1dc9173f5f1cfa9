//! The report plumbing between the watches and the event loop, without an API.

use tokio::sync::mpsc;

use super::{next, ApiUpdate, KubeApi};
use corefile::KubeDnsKeys;

fn api(watched: (bool, bool, bool)) -> (mpsc::UnboundedSender<ApiUpdate>, KubeApi) {
    let (tx, updates) = mpsc::unbounded_channel();
    let api = KubeApi {
        updates,
        follows_service: watched.2,
        service_lost: false,
        watched,
        events: Default::default(),
    };
    (tx, api)
}

#[tokio::test(start_paused = true)]
async fn the_first_render_waits_for_each_watched_objects_first_report_only() {
    let (tx, mut api) = api((true, true, false));
    tx.send(ApiUpdate::TemplateLost).unwrap();
    tx.send(ApiUpdate::KubeDns(KubeDnsKeys::default())).unwrap();
    tx.send(ApiUpdate::Template(Some("later".into()))).unwrap();
    // Both ConfigMaps reported: no waiting for the third report (nor for the deadline).
    let started = tokio::time::Instant::now();
    let first = api.first_reports().await;
    assert_eq!(
        first,
        [
            ApiUpdate::TemplateLost,
            ApiUpdate::KubeDns(KubeDnsKeys::default())
        ]
    );
    assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    // The rest comes through the event loop.
    let mut api = Some(api);
    assert_eq!(
        next(&mut api).await,
        [ApiUpdate::Template(Some("later".into()))]
    );
}

#[tokio::test(start_paused = true)]
async fn an_api_that_never_answers_costs_the_first_render_two_seconds_at_most() {
    let (_tx, mut api) = api((true, true, true));
    let started = tokio::time::Instant::now();
    assert_eq!(api.first_reports().await, []);
    assert_eq!(started.elapsed(), super::FIRST_REPORTS_WAIT);
}

#[tokio::test]
async fn a_service_that_cannot_be_read_is_not_waited_for_and_one_read_again_is() {
    let (tx, api) = api((false, false, true));
    let mut api = Some(api);
    assert!(api.as_ref().unwrap().may_tell_service());
    tx.send(ApiUpdate::ServiceLost).unwrap();
    next(&mut api).await;
    assert!(!api.as_ref().unwrap().may_tell_service());
    // No such Service yet, but the API answers: worth waiting for.
    tx.send(ApiUpdate::ClusterDns(None)).unwrap();
    next(&mut api).await;
    assert!(api.as_ref().unwrap().may_tell_service());
}
