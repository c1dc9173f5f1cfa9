//! The Kubernetes API as a source of the Corefile's inputs: the `node-local-dns` ConfigMap (key
//! `Corefile`), the `kube-dns` ConfigMap (`stubDomains`, `upstreamNameservers`) and, when
//! kubelet's `<SVC>_SERVICE_HOST` is missing, the upstream Service. Watched, so a `kubectl
//! apply` is rendered within milliseconds rather than after kubelet's volume sync (a minute or
//! more). The mounted files stay the fallback: without API access node-cache runs as upstream
//! does, having said why once.
//!
//! `client` finds the API, `watch` follows one object, `inputs` and `freshness` decide which
//! source is the newer, `upstream_svc` reads `-upstreamsvc`, `events` writes the pod's Events.

mod client;
mod events;
mod freshness;
mod inputs;
#[cfg(test)]
mod tests;
mod upstream_svc;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::{Api, Client};
use tokio::sync::mpsc;

pub use client::Environment;
pub use events::{Events, Reason};
pub use inputs::ApiInputs;
pub use upstream_svc::{ServiceRef, UpstreamService};
use watch::{watch, ApiHealth, Seen};

/// The ConfigMap key holding the Corefile template (mounted as `Corefile.base`).
const COREFILE_KEY: &str = "Corefile";

/// The API flags, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// `-kubeapi`: use the API when there is one.
    pub enabled: bool,
    /// `-kubeconfig`: None means the pod's service account.
    pub kubeconfig: Option<PathBuf>,
    /// `-basecorefileconfigmap`: the template's ConfigMap; empty: not watched.
    pub base_corefile_configmap: String,
    /// `-kubednsconfigmap`: the kube-dns ConfigMap; empty: not watched.
    pub kube_dns_configmap: String,
}

/// A change the API reported.
#[derive(Debug, PartialEq, Eq)]
pub enum ApiUpdate {
    /// The template's ConfigMap key; None: no such ConfigMap or key.
    Template(Option<String>),
    TemplateLost,
    /// The kube-dns ConfigMap's keys (all absent when there is no such ConfigMap).
    KubeDns(corefile::KubeDnsKeys),
    KubeDnsLost,
    /// The upstream Service's ClusterIP; None: no such Service (the last one's address stays).
    ClusterDns(Option<String>),
    /// The upstream Service cannot be read (403, apiserver down).
    ServiceLost,
}

/// How long the first render waits for the API's first word on the ConfigMaps.
const FIRST_REPORTS_WAIT: Duration = Duration::from_secs(2);

/// The running watches' reports.
pub struct KubeApi {
    updates: mpsc::UnboundedReceiver<ApiUpdate>,
    /// Whether the upstream Service is looked up (its IP was not in the environment).
    follows_service: bool,
    /// Whether reading it has failed since the last time it was read.
    service_lost: bool,
    /// Which objects are watched: (template, kube-dns, upstream Service).
    watched: (bool, bool, bool),
    /// Where the pod's Events go.
    events: Events,
}

impl KubeApi {
    /// The API's first report on each watched object (its content, or that the API cannot be
    /// reached), waited for at most [`FIRST_REPORTS_WAIT`]: the first Corefile is rendered
    /// from the newer source instead of from the lagging volume and again a moment later.
    pub async fn first_reports(&mut self) -> Vec<ApiUpdate> {
        let deadline = tokio::time::Instant::now() + FIRST_REPORTS_WAIT;
        let (mut template, mut kube_dns, mut service) =
            (!self.watched.0, !self.watched.1, !self.watched.2);
        let mut reports = Vec::new();
        while !(template && kube_dns && service) {
            match tokio::time::timeout_at(deadline, self.updates.recv()).await {
                Ok(Some(update)) => {
                    self.saw(&update);
                    match update {
                        ApiUpdate::Template(_) | ApiUpdate::TemplateLost => template = true,
                        ApiUpdate::KubeDns(_) | ApiUpdate::KubeDnsLost => kube_dns = true,
                        ApiUpdate::ClusterDns(_) | ApiUpdate::ServiceLost => service = true,
                    }
                    reports.push(update);
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::info!(
                        "the Kubernetes API did not answer within {FIRST_REPORTS_WAIT:?}; \
                         starting from the mounted files"
                    );
                    break;
                }
            }
        }
        reports
    }

    fn saw(&mut self, update: &ApiUpdate) {
        match update {
            ApiUpdate::ServiceLost => self.service_lost = true,
            ApiUpdate::ClusterDns(_) => self.service_lost = false,
            _ => {}
        }
    }

    /// Whether the upstream Service's address may still come from the API: it is followed,
    /// and reading it has not failed (a Service not created yet is waited for; a 403 is not,
    /// so a pod without RBAC fails as upstream's does and kubelet's restart brings the
    /// variable).
    pub fn may_tell_service(&self) -> bool {
        self.follows_service && !self.service_lost
    }

    /// Where the pod's Events go (nowhere without the downward API's POD_NAME/POD_NAMESPACE).
    pub fn events(&self) -> Events {
        self.events.clone()
    }
}

/// Every report waiting, at least one; pending forever without an API. Cancel-safe.
pub async fn next(api: &mut Option<KubeApi>) -> Vec<ApiUpdate> {
    let Some(api) = api else {
        return std::future::pending().await;
    };
    let Some(first) = api.updates.recv().await else {
        return std::future::pending().await;
    };
    let mut all = vec![first];
    while let Ok(more) = api.updates.try_recv() {
        all.push(more);
    }
    for update in &all {
        api.saw(update);
    }
    all
}

/// Starts the watches, or says once why there is no API (None). `service` is the upstream
/// Service to look up, when its IP is not known otherwise.
pub async fn start(
    config: &ApiConfig,
    service: Option<ServiceRef>,
    env: &Environment<'_>,
) -> Option<KubeApi> {
    if !config.enabled {
        return None;
    }
    let client_config = match client::config(config.kubeconfig.as_deref(), env).await {
        Ok(Ok(c)) => c,
        Ok(Err(client::NoApi::NotInCluster(why))) => {
            tracing::info!("Kubernetes API not used ({why}): reading the mounted ConfigMaps");
            return None;
        }
        Err(e) => {
            tracing::error!("{e:#}; reading the mounted ConfigMaps");
            return None;
        }
    };
    let namespace = client_config.default_namespace.clone();
    let client = match Client::try_from(client_config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("Kubernetes API client: {e}; reading the mounted ConfigMaps");
            return None;
        }
    };
    let events = events::start_for_pod(&client, env.var);
    let (tx, updates) = mpsc::unbounded_channel();
    let health = ApiHealth::default();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    if !config.base_corefile_configmap.is_empty() {
        let tx = tx.clone();
        tokio::spawn(watch(
            configmaps.clone(),
            config.base_corefile_configmap.clone(),
            health.clone(),
            move |seen| {
                tx.send(match seen {
                    Seen::Now(cm) => ApiUpdate::Template(cm.and_then(|cm| data(cm, COREFILE_KEY))),
                    Seen::Lost => ApiUpdate::TemplateLost,
                })
                .is_ok()
            },
        ));
    }
    if !config.kube_dns_configmap.is_empty() {
        let tx = tx.clone();
        tokio::spawn(watch(
            configmaps,
            config.kube_dns_configmap.clone(),
            health.clone(),
            move |seen| {
                tx.send(match seen {
                    Seen::Now(cm) => ApiUpdate::KubeDns(corefile::KubeDnsKeys::from_data(|k| {
                        cm.as_ref().and_then(|cm| data(cm.clone(), k))
                    })),
                    Seen::Lost => ApiUpdate::KubeDnsLost,
                })
                .is_ok()
            },
        ));
    }
    let follows_service = service.is_some();
    if let Some(ServiceRef {
        namespace: svc_namespace,
        name,
    }) = service
    {
        let ns = svc_namespace.unwrap_or_else(|| namespace.clone());
        tracing::info!(service = %format!("{ns}/{name}"), "following the upstream Service through the API");
        let services: Api<Service> = Api::namespaced(client, &ns);
        tokio::spawn(watch(services, name, health, move |seen| match seen {
            Seen::Now(svc) => tx
                .send(ApiUpdate::ClusterDns(svc.and_then(cluster_ip)))
                .is_ok(),
            Seen::Lost => tx.send(ApiUpdate::ServiceLost).is_ok(),
        }));
    }
    tracing::info!(%namespace, "watching the Corefile's ConfigMaps through the Kubernetes API");
    Some(KubeApi {
        updates,
        follows_service,
        service_lost: false,
        watched: (
            !config.base_corefile_configmap.is_empty(),
            !config.kube_dns_configmap.is_empty(),
            follows_service,
        ),
        events,
    })
}

fn data(cm: ConfigMap, key: &str) -> Option<String> {
    cm.data.and_then(|mut d| d.remove(key))
}

fn cluster_ip(svc: Service) -> Option<String> {
    svc.spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None")
}
