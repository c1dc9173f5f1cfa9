//! Leaving the node to another instance without losing a query (a surge rollout's new pod,
//! an HA twin): keep serving until it answers, then hand CoreDNS's share of the port over
//! (see [`coredns_child::handover`]) before stopping it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use coredns_child::CorednsChild;
use nix::sys::signal::Signal;

use super::{Presence, Role};
use crate::shutdown_budget::ShutdownBudget;

/// On SIGTERM with another instance present, how long at most we keep serving while waiting
/// for it to answer (each cap here is further cut by the [`ShutdownBudget`]).
const DRAIN_MAX: Duration = Duration::from_secs(20);
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// After our sockets stop getting new queries, how long CoreDNS gets to read what was queued.
const QUEUE_MAX: Duration = Duration::from_secs(1);
const QUEUE_POLL: Duration = Duration::from_millis(2);
/// Time CoreDNS gets between SIGTERM and SIGKILL when we stop it.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// After SIGTERM: when another instance is present and we serve, keep serving until it
/// answers too, so that stopping ours loses no query.
pub async fn drain(presence: &Presence, serving: bool, budget: ShutdownBudget) {
    let present = presence.others(Role::Present);
    if present.is_empty() || !serving {
        return;
    }
    let started = Instant::now();
    let max = budget.step(DRAIN_MAX);
    while presence.others(Role::Serving).is_empty() && started.elapsed() < max {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let serving = presence.others(Role::Serving);
    if serving.is_empty() {
        tracing::warn!(peers = ?present, "no other instance answered within {max:?}; stopping anyway");
    } else {
        tracing::info!(
            peers = ?serving,
            waited_ms = started.elapsed().as_millis() as u64,
            "another instance serves; handing over"
        );
    }
}

/// Stops `child`. Alone: SIGTERM, then SIGKILL after a grace period, as upstream. With another
/// instance serving the same addresses, first hand the port over: our sockets stop getting new
/// queries, CoreDNS reads what is queued, and only then SIGTERM lets the queries in flight
/// finish. If the handover fails, SIGKILL at once: CoreDNS's graceful stop keeps its sockets,
/// and with them a share of new queries, for ~100 ms after it stops reading.
pub async fn stop_coredns(
    mut child: CorednsChild,
    peer_serves: bool,
    addrs: &[SocketAddr],
    budget: ShutdownBudget,
) {
    let result = if peer_serves {
        match hand_over(&child, addrs, budget).await {
            Ok(()) => child.stop(budget.step(STOP_GRACE)).await,
            Err(e) => {
                tracing::warn!(
                    "cannot hand CoreDNS's sockets over ({e}); stopping it at once instead"
                );
                match child.signal(Signal::SIGKILL) {
                    Ok(()) => child.wait().await,
                    Err(e) => Err(e),
                }
            }
        }
    } else {
        child.stop(budget.step(STOP_GRACE)).await
    };
    match result {
        Ok(status) => tracing::info!(%status, "CoreDNS stopped"),
        Err(e) => tracing::error!("stopping CoreDNS: {e}"),
    }
}

/// Takes CoreDNS's UDP sockets out of the shared ports and waits until it has read what was
/// queued on them.
async fn hand_over(
    child: &CorednsChild,
    addrs: &[SocketAddr],
    budget: ShutdownBudget,
) -> std::io::Result<()> {
    let started = Instant::now();
    let max = budget.step(QUEUE_MAX);
    let detached = coredns_child::handover::stop_receiving(child.pid(), addrs)?;
    while detached.queued_bytes()? > 0 && started.elapsed() < max {
        tokio::time::sleep(QUEUE_POLL).await;
    }
    tracing::info!(
        sockets = detached.count(),
        took_us = started.elapsed().as_micros() as u64,
        "handed the DNS sockets over to the serving peer; stopping CoreDNS"
    );
    Ok(())
}
