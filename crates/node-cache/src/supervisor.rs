//! The lifecycle around the serving loop: metrics endpoint, first render, interface; then
//! [`crate::serving`] runs CoreDNS until a signal and leaves (the last instance out removes
//! the rules, stops CoreDNS, removes the interface) unless `-skipteardown`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::corefile_sync::CorefileSync;
use crate::flags::Config;
use crate::kube_api::{self, Environment, KubeApi, ServiceRef, UpstreamService};
use crate::metrics::{self, Metrics};
use crate::node_network::NodeNetwork;
use crate::peers::{self, InstanceId, Presence, Role};
use crate::serving::{leave_node, Serving};
use crate::shutdown_budget::ShutdownBudget;
use crate::signals::Signals;

/// How long we wait for the peer lock; a holder that hangs must not stop us for good.
const PEER_LOCK_WAIT: Duration = Duration::from_secs(10);

pub async fn run(config: Config) -> ExitCode {
    match supervise(config).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The upstream Service's IP from `-upstreamsvc` or kubelet's variable, and the Service to
/// follow through the API when neither tells it.
fn upstream(config: &Config) -> Result<(Option<String>, Option<ServiceRef>)> {
    let svc = UpstreamService::parse(&config.upstream_svc)
        .map_err(|reason| anyhow::anyhow!("-upstreamsvc {:?}: {reason}", config.upstream_svc))?;
    let ip = svc.known_ip(|name| std::env::var(name).ok());
    let follow = match (svc, &ip) {
        (UpstreamService::Named(service), None) => Some(service),
        _ => None,
    };
    Ok((ip, follow))
}

/// The first render. When the upstream Service's IP is unknown and the API follows the Service
/// (a DaemonSet started before its Service), waits for it instead of exiting; a signal ends the
/// wait (false).
async fn first_render(
    corefile: &mut CorefileSync,
    api: &mut Option<KubeApi>,
    signals: &mut Signals,
) -> Result<bool> {
    let mut said = false;
    loop {
        match corefile.refresh() {
            Ok(_) => return Ok(true),
            Err(e) if waits_for_service(&e, api.as_ref()) => {
                if !said {
                    tracing::warn!("{e:#}; waiting for the Service through the Kubernetes API");
                    said = true;
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            name = signals.recv() => {
                tracing::info!("{name} received before the first Corefile; exiting");
                return Ok(false);
            }
            updates = kube_api::next(api) => corefile.apply_api(updates),
        }
    }
}

fn waits_for_service(e: &anyhow::Error, api: Option<&KubeApi>) -> bool {
    api.is_some_and(KubeApi::may_tell_service)
        && e.chain().any(|c| {
            matches!(
                c.downcast_ref::<corefile::RenderError>(),
                Some(corefile::RenderError::ClusterDnsUnset { .. })
            )
        })
}

async fn supervise(config: Config) -> Result<ExitCode> {
    let started = Instant::now();
    // Handlers first: a SIGTERM from here on always reaches our teardown, and while teardown
    // runs further SIGTERM/SIGINT are swallowed by these handlers instead of killing us.
    let mut signals = Signals::install()?;
    crate::reaper::start_if_pid1();
    let metrics = Metrics::new();
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    // Without its metrics endpoint the node still needs DNS: log and carry on, as upstream.
    match metrics::bind(&config.metrics_listen_address).and_then(tokio::net::TcpListener::from_std)
    {
        Ok(listener) => {
            tokio::spawn(metrics::serve(
                listener,
                metrics::Endpoint::new(metrics.clone(), &config.tls),
                async {
                    let _ = metrics_stopped.await;
                },
            ));
        }
        Err(e) => tracing::error!(
            "-metrics-listen-address {}: {e:#}; serving DNS without the metrics endpoint",
            config.metrics_listen_address
        ),
    }
    tracing::info!(
        local_ips = ?config.local_ips,
        interface = %config.interface_name,
        sync_interval = ?config.sync_interval,
        coredns = %config.coredns_binary.display(),
        "node-cache {} starting", crate::info::VERSION
    );

    let (cluster_dns, follow) = upstream(&config)?;
    // The API mirrors what is mounted: no kube-dns ConfigMap volume, no kube-dns ConfigMap.
    let mut kube = config.kube.clone();
    if config.kubednscm.is_none() {
        kube.kube_dns_configmap.clear();
    }
    let mut api = kube_api::start(&kube, follow, &Environment::process()).await;
    let mut corefile = CorefileSync::new(&config, cluster_dns, metrics.clone());
    if let Some(api) = &mut api {
        corefile.apply_api(api.first_reports().await);
    }
    if !first_render(&mut corefile, &mut api, &mut signals).await? {
        return Ok(ExitCode::SUCCESS);
    }
    let network = NodeNetwork::new(&config, metrics.clone())?;
    // Register before touching the node, under the lock a stopping peer holds while it decides
    // whether it is the last one out.
    let id = InstanceId::new(std::env::var("POD_NAME").ok().as_deref())
        .context("choosing this instance's id")?;
    let mut presence = {
        let _lock = peers::lock(&config.interface_name, PEER_LOCK_WAIT).await;
        Presence::register(&config.interface_name, id).context("registering with peer instances")?
    };
    tracing::info!(instance = %presence.id(), "registered");
    let others = presence.others(Role::Present);
    if !others.is_empty() {
        tracing::info!(peers = ?others, "other node-cache instance(s) run here; adopting the interface and rules");
    }

    let result = async {
        // CoreDNS's `bind` needs the addresses before it listens.
        network
            .ensure_interface()
            .await
            .context("setting up the interface")?;
        let mut serving = Serving::start(
            &config,
            &mut corefile,
            &network,
            &mut presence,
            metrics.clone(),
            started,
            api,
        );
        let stop = serving.run(&mut signals).await;
        let budget = ShutdownBudget::start();
        tracing::info!(budget = ?crate::shutdown_budget::TOTAL, "{stop} received; shutting down");
        serving.drain(budget).await;
        if !serving.leave(budget).await {
            tracing::error!("teardown incomplete; see the errors above");
        }
        Ok::<_, anyhow::Error>(stop)
    }
    .await;
    let code = match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            // CoreDNS never started: only the interface (and rules of an earlier run we
            // adopted) can be ours to remove.
            let budget = ShutdownBudget::start();
            if !leave_node(&config, &mut presence, &network, budget, None).await {
                tracing::error!("teardown incomplete; see the errors above");
            }
            ExitCode::FAILURE
        }
    };
    let _ = stop_metrics.send(());
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "exiting");
    Ok(code)
}
