//! Two node-cache instances on one node, replaced the ways operators replace them, under a
//! steady pod query load. Shared by the handover tests (which assert) and `make bench` (which
//! prints).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Result};
use nix::sys::signal::Signal;

use crate::fixture::{AgentRun, Node};
use crate::load::{LoadReport, QueryLoad};
use crate::pod::Capabilities;
use crate::topology::names;
use crate::{addrs, wait_until};

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

/// A planned stop with a peer serving must hand the sockets over, not fall back to SIGKILL.
fn ensure_handed_over(agent: &AgentRun) -> Result<()> {
    let log = agent.log();
    ensure!(
        log.contains("handed the DNS sockets over") && !log.contains("cannot hand"),
        "expected a socket handover:\n{log}"
    );
    Ok(())
}

fn wait_serving(agent: &AgentRun) -> Result<()> {
    let what = format!("pod {}'s node-cache to announce it serves", agent.name());
    wait_until(&what, DEADLINE, || agent.announces_serving()).map(|_| ())
}

fn stop(agent: &mut AgentRun) -> Result<()> {
    let status = agent.terminate()?;
    ensure!(status.success(), "exit {status}:\n{}", agent.log());
    Ok(())
}

/// Pod `name` on `node` with `capabilities`, files of its own.
fn start<'n>(node: &'n Node, capabilities: Capabilities, name: &str) -> Result<AgentRun<'n>> {
    node.agent()
        .instance(name)
        .capabilities(capabilities)
        .spawn()
}

/// Runs `scenario` and returns the load's report. Checks the invariants on the way: the rules
/// stay while an instance serves, an instance leaving a peer behind says so, and the last one
/// out leaves a clean node.
pub fn run(node: &Node, capabilities: Capabilities, scenario: Scenario) -> Result<LoadReport> {
    let topo = &node.topo;
    let mut first = start(node, capabilities, "first")?;
    first.wait_rules()?;
    let mut second = start(node, capabilities, "second")?;
    wait_serving(&first)?;
    wait_serving(&second)?;
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
            first.wait_exit()?;
            second
        }
        Scenario::HaRestart => {
            stop(&mut first)?;
            ensure_handed_over(&first)?;
            let again = start(node, capabilities, "first-again")?;
            wait_serving(&again)?;
            stop(&mut second)?;
            ensure_handed_over(&second)?;
            again
        }
    };
    // Let the load run past the event so every query around it is counted.
    load.run_for(Duration::from_millis(500))?;
    let report = load.stop()?;
    ensure!(
        topo.node_cache_rule_lines()?.len() == 24,
        "the rules must stay while an instance serves"
    );
    stop(&mut last)?;
    node.check_clean("after the last one out")?;
    Ok(report)
}

/// The last instance stopped (the DaemonSet deleted) under load to the kube-dns IP: its rules
/// go before its CoreDNS, so every query finds kube-dns through kube-proxy (the DNAT) or our
/// CoreDNS. Returns the load's report (the kube-dns IP only).
pub fn delete_last(node: &Node, capabilities: Capabilities) -> Result<LoadReport> {
    let topo = &node.topo;
    let mut agent = start(node, capabilities, "only")?;
    agent.wait_rules()?;
    let kube_dns = SocketAddr::new(addrs::KUBE_DNS_SVC.parse()?, 53);
    let load = QueryLoad::start(&topo.pod, vec![kube_dns], names::CLUSTER, RATE)?;
    load.run_for(Duration::from_millis(300))?;
    stop(&mut agent)?;
    load.run_for(Duration::from_millis(500))?;
    let report = load.stop()?;
    let log = agent.log();
    let (queries, stopped) = (log.find("query rules removed"), log.find("CoreDNS stopped"));
    ensure!(
        matches!((queries, stopped), (Some(q), Some(s)) if q < s),
        "the rules diverting queries must go before CoreDNS stops:\n{log}"
    );
    node.check_clean("after the last one out")?;
    Ok(report)
}
