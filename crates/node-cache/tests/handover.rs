//! Two node-cache instances on one node (testbed::handover): a surge rollout, SIGKILL of the
//! old instance with the new serving, an HA pair with one member restarted. Each also checks
//! that the rules stay while an instance serves and that the last one out cleans the node.

use anyhow::Result;
use testbed::fixture::Node;
use testbed::handover::{delete_last, run, Scenario};
use testbed::pod::Capabilities;

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");

/// A planned handover (surge, HA restart) must lose nothing: the leaving CoreDNS's sockets stop
/// getting new queries before it stops (coredns_child::handover). A SIGKILL may lose what the
/// kernel had queued on the killed process's sockets (1–3 per IP here, more on a slow machine):
/// allowed up to 5%, which still fails on an outage; the figure is printed.
/// Each instance is a pod of its own (PID 1 of its own PID namespace, so both have the same
/// pid) with `capabilities`.
fn scenario(s: Scenario, capabilities: Capabilities, max_failed_percent: u64) -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let report = run(&node, capabilities, s)?;
    eprintln!(
        "figure: {} ({capabilities:?} capabilities) failed queries = {} of {}",
        s.name(),
        report.failed(),
        report.sent()
    );
    assert!(
        report.failed() * 100 <= report.sent() * max_failed_percent,
        "more than {max_failed_percent}% of pod queries failed\n{report}"
    );
    Ok(())
}

#[test]
fn surge_rollout_keeps_the_node_serving() -> Result<()> {
    scenario(Scenario::Surge, Capabilities::Manifest, 0)
}

/// The image swapped into upstream's DaemonSet (maxUnavailable there, but an operator may
/// surge it): NET_ADMIN and the runtime's defaults still hand over without a loss.
#[test]
fn surge_rollout_with_upstreams_capabilities_keeps_the_node_serving() -> Result<()> {
    scenario(Scenario::Surge, Capabilities::UpstreamShaped, 0)
}

#[test]
fn sigkill_of_the_old_instance_keeps_the_node_serving() -> Result<()> {
    scenario(Scenario::KillOld, Capabilities::Manifest, 5)
}

#[test]
fn ha_pair_member_restart_keeps_the_node_serving() -> Result<()> {
    scenario(Scenario::HaRestart, Capabilities::Manifest, 0)
}

/// The DaemonSet deleted under load: the kube-dns IP never fails (rules go first).
#[test]
fn deleting_the_last_instance_loses_no_query_at_the_kube_dns_ip() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let report = delete_last(&node, Capabilities::Manifest)?;
    eprintln!(
        "figure: delete under load: kube-dns IP failed {} of {}",
        report.failed(),
        report.sent()
    );
    assert_eq!(report.failed(), 0, "{report}");
    Ok(())
}
