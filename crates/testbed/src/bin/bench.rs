//! `make bench`: startup, footprint, resilience, handover and packet-filter tables.
//!
//! Startup (`bench/startup.rs`): time from spawning node-cache to a pod's first answer and to
//! all rules being in place, measured from outside (the pod's Querier, iptables-save) and in
//! the agent's log; RSS; SIGTERM → exit.
//!
//! Footprint (`bench/memory.rs`): RSS of the agent and of CoreDNS idle, after a dnsperf load and
//! at peak, for node-cache's CoreDNS build and the full release build, beside upstream's.
//!
//! Resilience (`bench/resilience.rs`): disturbances under a steady pod query load, the time
//! until each is dealt with and the pod's failed queries. Handover (`bench/handover.rs`): two
//! instances on one node, replaced the ways operators replace them, under load. ConfigMap
//! (`bench/api.rs`): a stubDomains change answered, through the volume and through the API.

#[path = "bench/api.rs"]
mod api;
#[path = "bench/handover.rs"]
mod handover;
#[path = "bench/memory.rs"]
mod memory;
#[path = "bench/resilience.rs"]
mod resilience;
#[path = "bench/startup.rs"]
mod startup;

use std::path::PathBuf;

use anyhow::{Context, Result};
use testbed::fixture::Node;

/// Median, min and max of `values` (not empty).
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// A markdown table's separator line for columns of these widths.
fn separator(widths: &[usize]) -> String {
    let cells: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    format!("|{}|", cells.join("|"))
}

/// The first line of an error, for a table cell.
fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or("").to_string()
}

fn main() -> Result<()> {
    let binary = PathBuf::from(
        std::env::var_os("NODE_CACHE_BINARY")
            .context("NODE_CACHE_BINARY is not set (run `make bench`)")?,
    );
    let node = Node::addon(&binary)?;
    startup::table(&node)?;
    // BENCH_ONLY=footprint,resilience,handover,configmap,firewall picks the tables after startup's.
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted = |table: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|t| t == table))
    };
    if wanted("footprint") {
        println!();
        let full = std::env::var_os("COREDNS_FULL_BINARY").map(PathBuf::from);
        let mut builds = vec![("node-cache's CoreDNS", node.topo.coredns.as_path())];
        if let Some(full) = &full {
            builds.push(("full release build", full.as_path()));
        }
        memory::table(&node.topo, &node.files, &builds)?;
    }
    if wanted("resilience") {
        println!();
        resilience::table(&node)?;
    }
    if wanted("handover") {
        println!();
        handover::table(&node)?;
    }
    if wanted("configmap") {
        println!();
        api::table(&node)?;
    }
    if wanted("firewall") {
        println!();
        print!("{}", testbed::firewall_bench::firewall_costs(20)?);
    }
    Ok(())
}
