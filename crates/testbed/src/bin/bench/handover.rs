//! The handover table: two instances on one node, sent and failed pod queries per scenario and
//! local IP.

use anyhow::Result;
use testbed::addrs;
use testbed::fixture::Node;
use testbed::handover::{run, Scenario, RATE};
use testbed::pod::Capabilities;

const RUNS: usize = 3;

pub fn table(node: &Node) -> Result<()> {
    println!(
        "node-cache handover, {RUNS} runs each, pod load {RATE} q/s to each local IP \
         (failed/sent per run, for {} and {})",
        addrs::LINK_LOCAL,
        addrs::KUBE_DNS_SVC
    );
    println!(
        "| {:<34} | {:<60} |",
        "scenario", "failed/sent per IP, each run"
    );
    println!("{}", super::separator(&[34, 60]));
    for scenario in Scenario::ALL {
        let mut cells = Vec::new();
        for _ in 0..RUNS {
            match run(node, Capabilities::Manifest, scenario) {
                Ok(report) => cells.push(
                    report
                        .per_target
                        .iter()
                        .map(|t| format!("{}/{}", t.failed, t.sent))
                        .collect::<Vec<_>>()
                        .join(" + "),
                ),
                Err(e) => cells.push(format!("n/a ({})", super::first_line(&e))),
            }
        }
        println!("| {:<34} | {:<60} |", scenario.name(), cells.join(", "));
    }
    Ok(())
}
