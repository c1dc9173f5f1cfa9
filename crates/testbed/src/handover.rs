//! Two node-cache instances on one node, replaced the ways operators replace them, under a
//! steady pod query load. Shared by the handover tests (which assert) and `make bench` (which
//! prints).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use nix::sys::signal::Signal;

use crate::agent::{announces_serving, start_with_capabilities, wait_rules, AgentFiles, INTERFACE};
use crate::load::{LoadReport, QueryLoad};
use crate::pod::Capabilities;
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

/// What every instance of a run shares: the node, its inputs, the binary, the pod's
/// capabilities.
pub struct Node<'a> {
    pub topo: &'a Topology,
    pub files: &'a AgentFiles,
    pub binary: &'a Path,
    pub capabilities: Capabilities,
}

impl Node<'_> {
    fn start(&self, name: &str) -> Result<Process> {
        let files = self.files.for_instance(self.topo, name);
        start_with_capabilities(
            self.topo,
            name,
            self.binary,
            &files.args(&self.topo.coredns),
            self.capabilities,
        )
    }
}

/// A planned stop with a peer serving must hand the sockets over, not fall back to SIGKILL.
fn ensure_handed_over(agent: &Process) -> Result<()> {
    let log = agent.log();
    ensure!(
        log.contains("handed the DNS sockets over") && !log.contains("cannot hand"),
        "expected a socket handover:\n{log}"
    );
    Ok(())
}

fn wait_serving(topo: &Topology, pod: &str) -> Result<()> {
    let what = format!("pod {pod}'s node-cache to announce it serves");
    wait_until(&what, DEADLINE, || announces_serving(topo, pod)).map(|_| ())
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
pub fn run(node: &Node, scenario: Scenario) -> Result<LoadReport> {
    let topo = node.topo;
    let mut first = node.start("first")?;
    wait_rules(topo, &mut first, DEADLINE)?;
    let mut second = node.start("second")?;
    wait_serving(topo, "first")?;
    wait_serving(topo, "second")?;
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
            ensure_handed_over(&first)?;
            second
        }
        Scenario::KillOld => {
            first.signal(Signal::SIGKILL)?;
            first.wait_exit(DEADLINE)?;
            second
        }
        Scenario::HaRestart => {
            stop(&mut first)?;
            ensure_handed_over(&first)?;
            let again = node.start("first-again")?;
            wait_serving(topo, "first-again")?;
            stop(&mut second)?;
            ensure_handed_over(&second)?;
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

/// The last instance stopped (the DaemonSet deleted) under load to the kube-dns IP: its rules
/// go before its CoreDNS, so every query finds kube-dns through kube-proxy (the DNAT) or our
/// CoreDNS. Returns the load's report (the kube-dns IP only).
pub fn delete_last(node: &Node) -> Result<LoadReport> {
    let topo = node.topo;
    let mut agent = node.start("only")?;
    wait_rules(topo, &mut agent, DEADLINE)?;
    let kube_dns = SocketAddr::new(addrs::KUBE_DNS_SVC.parse()?, 53);
    let load = QueryLoad::start(&topo.pod, vec![kube_dns], names::CLUSTER, RATE)?;
    let until = load.snapshot().elapsed + Duration::from_millis(300);
    wait_until("the load to run before the stop", DEADLINE, || {
        Ok(load.snapshot().elapsed >= until)
    })?;
    stop(&mut agent)?;
    let until = load.snapshot().elapsed + Duration::from_millis(500);
    wait_until("the load to run past the stop", DEADLINE, || {
        Ok(load.snapshot().elapsed >= until)
    })?;
    let report = load.stop()?;
    let log = agent.log();
    let (rules, stopped) = (log.find("rules removed"), log.find("CoreDNS stopped"));
    ensure!(
        matches!((rules, stopped), (Some(r), Some(s)) if r < s),
        "the rules must go before CoreDNS stops:\n{log}"
    );
    ensure!(
        topo.node_link_addresses(INTERFACE)?.is_none() && topo.node_cache_rule_lines()?.is_empty(),
        "the last one out leaves a clean node"
    );
    Ok(report)
}
