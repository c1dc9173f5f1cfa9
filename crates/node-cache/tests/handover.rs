//! Two node-cache instances on one node (testbed::handover): a surge rollout, SIGKILL of the
//! old instance with the new serving, an HA pair with one member restarted. Each also checks
//! that the rules stay while an instance serves and that the last one out cleans the node.

use anyhow::Result;
use testbed::agent::AgentFiles;
use testbed::handover::{run, Scenario};
use testbed::Topology;

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");

/// What a handover may cost: the queries already queued on the stopped CoreDNS's sockets when
/// it goes (one or two at this rate); the exact figure is printed.
fn scenario(s: Scenario) -> Result<()> {
    let topo = Topology::build()?;
    let files = AgentFiles::addon(&topo)?;
    let report = run(&topo, &files, NODE_CACHE.as_ref(), s)?;
    eprintln!(
        "figure: {} failed queries = {} of {}",
        s.name(),
        report.failed(),
        report.sent()
    );
    assert!(
        report.failed() * 50 <= report.sent(),
        "more than 2% of pod queries failed\n{report}"
    );
    Ok(())
}

#[test]
fn surge_rollout_keeps_the_node_serving() -> Result<()> {
    scenario(Scenario::Surge)
}

#[test]
fn sigkill_of_the_old_instance_keeps_the_node_serving() -> Result<()> {
    scenario(Scenario::KillOld)
}

#[test]
fn ha_pair_member_restart_keeps_the_node_serving() -> Result<()> {
    scenario(Scenario::HaRestart)
}
