//! Two node-cache instances on one node, replaced the ways operators replace them, under a
//! steady pod query load. Shared by the handover tests (which assert) and `make bench` (which
//! prints).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use nix::sys::signal::Signal;

use crate::agent::{announces_serving, start_named, wait_rules, AgentFiles, INTERFACE};
use crate::load::{LoadReport, QueryLoad};
use crate::topology::names;
use crate::{addrs, wait_until, Process, Topology};

const DEADLINE: Duration = Duration::from_secs(20);
/// Queries per second to each local IP.
pub const RATE: u32 = 200;

#[derive(Clone, Copy, Debug)]
pub enum Scenario {
    /// maxSurge: start the new instance, wait until it serves, SIGTERM the old one.
    Surge,
    /// The old instance SIGKILLed while the new one serves.
    KillOld,
    /// HA pair: one member restarted (SIGTERM, then started again) while the other serves.
    HaRestart,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Surge, Scenario::KillOld, Scenario::HaRestart];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Surge => "surge: new ready, SIGTERM old",
            Scenario::KillOld => "SIGKILL old, new serving",
            Scenario::HaRestart => "HA pair: one member restarted",
        }
    }
}

fn targets() -> Vec<SocketAddr> {
    [addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC]
        .iter()
        .map(|ip| SocketAddr::new(ip.parse().expect("constant IP"), 53))
        .collect()
}

fn start(topo: &Topology, files: &AgentFiles, binary: &Path, name: &str) -> Result<Process> {
    let files = files.for_instance(topo, name);
    start_named(topo, name, binary, &files.args(&topo.coredns))
}

fn wait_serving(topo: &Topology, agent: &Process) -> Result<()> {
    let what = format!("node-cache {} to announce it serves", agent.pid());
    wait_until(&what, DEADLINE, || announces_serving(topo, agent.pid())).map(|_| ())
}

fn stop(agent: &mut Process) -> Result<()> {
    agent.signal(Signal::SIGTERM)?;
    let status = agent.wait_exit(DEADLINE)?;
    ensure!(status.success(), "exit {status}:\n{}", agent.log());
    Ok(())
}

/// Runs `scenario` and returns the load's report. Checks the invariants on the way: the rules
/// stay while an instance serves, an instance leaving a peer behind says so, and the last one
/// out leaves a clean node.
pub fn run(
    topo: &Topology,
    files: &AgentFiles,
    binary: &Path,
    scenario: Scenario,
) -> Result<LoadReport> {
    let mut first = start(topo, files, binary, "first")?;
    wait_rules(topo, &mut first, DEADLINE)?;
    let mut second = start(topo, files, binary, "second")?;
    wait_serving(topo, &first)?;
    wait_serving(topo, &second)?;
    let load = QueryLoad::start(&topo.pod, targets(), names::CLUSTER, RATE)?;
    let mut last = match scenario {
        Scenario::Surge => {
            stop(&mut first)?;
            ensure!(
                first
                    .log()
                    .contains("leaving the interface and rules to them"),
                "{}",
                first.log()
            );
            second
        }
        Scenario::KillOld => {
            first.signal(Signal::SIGKILL)?;
            first.wait_exit(DEADLINE)?;
            second
        }
        Scenario::HaRestart => {
            stop(&mut first)?;
            let again = start(topo, files, binary, "first-again")?;
            wait_serving(topo, &again)?;
            stop(&mut second)?;
            again
        }
    };
    // Let the load run past the event so every query around it is counted.
    let until = load.snapshot().elapsed + Duration::from_millis(500);
    wait_until("the load to run past the event", DEADLINE, || {
        Ok(load.snapshot().elapsed >= until)
    })?;
    let report = load.stop()?;
    ensure!(
        topo.node_cache_rule_lines()?.len() == 24,
        "the rules must stay while an instance serves"
    );
    stop(&mut last)?;
    ensure!(
        topo.node_link_addresses(INTERFACE)?.is_none(),
        "the last one out removes the interface"
    );
    ensure!(
        topo.node_cache_rule_lines()?.is_empty(),
        "the last one out removes the rules"
    );
    Ok(report)
}
