//! `make bench`: startup, footprint, resilience, handover and packet-filter tables.
//!
//! Startup: over 5 runs in one throwaway topology, time from spawning node-cache to the first
//! answer a pod gets and to all rules being in place, measured from outside; the agent's own
//! figures from its log; the RSS of the supervisor and of CoreDNS; and SIGTERM → exit.
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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use testbed::fixture::Node;
use testbed::topology::names;
use testbed::{addrs, wait_until, Transport};

const RUNS: usize = 5;
const DEADLINE: Duration = Duration::from_secs(30);

struct Figures {
    first_answer_ms: f64,
    rules_ms: f64,
    agent_ready_ms: f64,
    agent_rules_ms: f64,
    supervisor_rss_kib: f64,
    coredns_rss_kib: f64,
    sigterm_exit_ms: f64,
}

fn rss_kib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

/// The `since_start_ms=N` field of the first log line containing `event`.
fn logged_ms(log: &str, event: &str) -> Result<f64> {
    let line = log
        .lines()
        .find(|l| l.contains(event))
        .with_context(|| format!("no '{event}' in log"))?;
    let value = line
        .split("since_start_ms=")
        .nth(1)
        .context("since_start_ms field")?;
    Ok(value.split_whitespace().next().unwrap_or("").parse()?)
}

fn one_run(node: &Node) -> Result<Figures> {
    let started = Instant::now();
    let mut agent = node.agent().spawn()?;
    let mut first_answer = None;
    let mut rules = None;
    wait_until("an answer and the rules", DEADLINE, || {
        if first_answer.is_none()
            && node
                .query(addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp)
                .is_ok_and(|a| !a.is_empty())
        {
            first_answer = Some(started.elapsed());
        }
        if rules.is_none() && node.rule_count()? == 24 {
            rules = Some(started.elapsed());
        }
        Ok(first_answer.is_some() && rules.is_some())
    })?;
    let coredns_pid = agent.coredns_pid()?;
    let supervisor_rss_kib = rss_kib(agent.pid())?;
    let coredns_rss_kib = rss_kib(coredns_pid)?;
    let log = agent.log();
    let stop = Instant::now();
    agent.terminate()?;
    let sigterm_exit = stop.elapsed();
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN);
    Ok(Figures {
        first_answer_ms: ms(first_answer),
        rules_ms: ms(rules),
        agent_ready_ms: logged_ms(&log, "CoreDNS answers DNS")?,
        agent_rules_ms: logged_ms(&log, "rules in place")?,
        supervisor_rss_kib,
        coredns_rss_kib,
        sigterm_exit_ms: sigterm_exit.as_secs_f64() * 1000.0,
    })
}

/// The startup table's rows: name, unit, figure.
type Row = (&'static str, &'static str, fn(&Figures) -> f64);

const STARTUP_ROWS: [Row; 8] = [
    ("start → first pod answer (outside, dig)", "ms", |f| {
        f.first_answer_ms
    }),
    (
        "start → 24 rules in place (outside, iptables-save)",
        "ms",
        |f| f.rules_ms,
    ),
    ("start → CoreDNS answers probe (agent log)", "ms", |f| {
        f.agent_ready_ms
    }),
    ("start → rules in place (agent log)", "ms", |f| {
        f.agent_rules_ms
    }),
    ("rules after first answer (agent log)", "ms", |f| {
        f.agent_rules_ms - f.agent_ready_ms
    }),
    ("supervisor RSS", "KiB", |f| f.supervisor_rss_kib),
    ("CoreDNS RSS", "KiB", |f| f.coredns_rss_kib),
    ("SIGTERM → exit (teardown done)", "ms", |f| {
        f.sigterm_exit_ms
    }),
];

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
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let figures = one_run(&node).with_context(|| format!("run {}", i + 1))?;
        runs.push(figures);
    }
    println!("node-cache startup, {RUNS} runs, addon flags, -localip 169.254.20.10,10.96.0.10, -pidfile set");
    println!(
        "| {:<46} | {:>9} | {:>9} | {:>9} | {:<3} |",
        "figure", "median", "min", "max", ""
    );
    println!("{}", separator(&[46, 9, 9, 9, 3]));
    for (name, unit, figure) in STARTUP_ROWS {
        let (median, min, max) = spread(runs.iter().map(figure).collect());
        println!("| {name:<46} | {median:>9.1} | {min:>9.1} | {max:>9.1} | {unit:<3} |");
    }
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
