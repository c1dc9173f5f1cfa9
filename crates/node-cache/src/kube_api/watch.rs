//! One named object watched through the API (a list and watch with a `metadata.name` field
//! selector, which RBAC authorizes by resourceName), its state passed on as it changes; the
//! watch re-established with back-off. Failures are said once, at the first one, and when the
//! API answers again: a cluster without our RBAC (upstream's manifest) gets one line, not one
//! per retry.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// What one watch reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<K> {
    /// The object as it now is; None: it does not exist.
    Now(Option<K>),
    /// The API stopped answering (the watch failed); retried with back-off.
    Lost,
}

/// Shared by every watch, so the API's state is logged once, not once per object.
#[derive(Clone, Default)]
pub struct ApiHealth(Arc<Mutex<Option<bool>>>);

impl ApiHealth {
    fn answering(&self) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *state == Some(false) {
            tracing::info!("the Kubernetes API answers again; it is the configuration's source");
        }
        *state = Some(true);
    }

    fn failed(&self, what: &str, error: &watcher::Error) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *state != Some(false) {
            tracing::info!(
                "Kubernetes API: {what}: {}; using the mounted ConfigMaps, retrying with back-off",
                describe(error)
            );
        } else {
            tracing::debug!("Kubernetes API: {what}: {}", describe(error));
        }
        *state = Some(false);
    }
}

/// One line: the API's status (`403 Forbidden: ...`) rather than the error's debug dump.
fn describe(error: &watcher::Error) -> String {
    let inner = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        other => return other.to_string(),
    };
    match inner {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

/// Watches `name` through `api` until `send` refuses (the receiver is gone).
pub async fn watch<K>(api: Api<K>, name: String, health: ApiHealth, send: impl Fn(Seen<K>) -> bool)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let what = format!("{} {name:?}", K::kind(&()));
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    // The object as listed so far, while a (re)list is under way.
    let mut listing: Option<K> = None;
    let mut lost = false;
    while let Some(item) = stream.next().await {
        let seen = match item {
            Ok(Event::Init) => {
                listing = None;
                continue;
            }
            Ok(Event::InitApply(obj)) => {
                listing = Some(obj);
                continue;
            }
            Ok(Event::InitDone) => Seen::Now(listing.take()),
            Ok(Event::Apply(obj)) => Seen::Now(Some(obj)),
            Ok(Event::Delete(_)) => Seen::Now(None),
            Err(e) => {
                health.failed(&what, &e);
                if lost {
                    continue;
                }
                lost = true;
                Seen::Lost
            }
        };
        if matches!(seen, Seen::Now(_)) {
            lost = false;
            health.answering();
        }
        if !send(seen) {
            return;
        }
    }
}
