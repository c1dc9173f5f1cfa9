//! The footprint table: RSS of the agent and of its CoreDNS, idle after startup, after a
//! dnsperf load from the pod namespace, and at their peak (VmHWM); the load's throughput. Run
//! for node-cache's CoreDNS build and, when `COREDNS_FULL_BINARY` names one, for the full
//! release build, so one run shows what the trimmed plugin set saves. Upstream's one-process
//! figures (issue 13, same kind of run on this machine) are printed beside them. The baseline
//! for throughput is node-cache's CoreDNS alone (no agent, no rules) serving the Corefile the
//! agent rendered, the local IPs on the node's loopback: the table ends with the ratio.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use testbed::agent::{coredns_host_pid, pod_query, start_node_cache, AgentFiles};
use testbed::topology::names;
use testbed::{addrs, wait_until, workspace_root, Process, Topology, Transport};

const RUNS: usize = 3;
const DEADLINE: Duration = Duration::from_secs(30);
/// Startup allocations settle (the Go runtime's first GC cycles, the agent's first sync)
/// before "idle" is read: a measurement window, not a wait for a condition.
const IDLE_SETTLE: Duration = Duration::from_secs(3);
const LOAD_SECONDS: &str = "10";
/// Upstream k8s-dns-node-cache 1.26.5, one process, in MiB (issue 13).
const UPSTREAM_IDLE: f64 = 40.1;
const UPSTREAM_LOADED: f64 = 44.9;

struct Footprint {
    agent_idle: f64,
    coredns_idle: f64,
    agent_loaded: f64,
    coredns_loaded: f64,
    agent_peak: f64,
    coredns_peak: f64,
    qps: f64,
}

/// A `/proc/PID/status` field in MiB (`VmRSS`, `VmHWM`).
fn mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} for pid {pid}"))?
        .split_whitespace()
        .next()
        .context("value")?
        .parse()?;
    Ok(kib / 1024.0)
}

/// dnsperf's "Queries per second:" figure.
fn dnsperf_qps(output: &str) -> Result<f64> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .with_context(|| format!("no queries per second in dnsperf's output:\n{output}"))?
        .trim()
        .parse()
        .context("dnsperf's queries per second")
}

fn one_run(topo: &Topology, binary: &Path, args: &[String], queries: &Path) -> Result<Footprint> {
    let mut agent = start_node_cache(topo, binary, args)?;
    wait_until("an answer and the rules", DEADLINE, || {
        Ok(
            pod_query(topo, addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp)
                .is_ok_and(|a| !a.is_empty())
                && topo.node_cache_rule_lines()?.len() == 24,
        )
    })
    .with_context(|| format!("agent log:\n{}", agent.log()))?;
    let coredns = coredns_host_pid(&agent, &topo.path("node-cache.pid"))?;
    std::thread::sleep(IDLE_SETTLE);
    let (agent_idle, coredns_idle) = (mib(agent.pid(), "VmRSS")?, mib(coredns, "VmRSS")?);
    let out = dnsperf(topo, queries)?;
    let footprint = Footprint {
        agent_loaded: mib(agent.pid(), "VmRSS")?,
        coredns_loaded: mib(coredns, "VmRSS")?,
        agent_peak: mib(agent.pid(), "VmHWM")?,
        coredns_peak: mib(coredns, "VmHWM")?,
        agent_idle,
        coredns_idle,
        qps: dnsperf_qps(&out)?,
    };
    agent.signal(Signal::SIGTERM)?;
    agent.wait_exit(DEADLINE)?;
    Ok(footprint)
}

/// The load: dnsperf from the pod at the link-local IP; its output.
fn dnsperf(topo: &Topology, queries: &Path) -> Result<String> {
    let queries = queries.display().to_string();
    topo.pod.exec(
        "dnsperf",
        &[
            "-s",
            addrs::LINK_LOCAL,
            "-d",
            &queries,
            "-l",
            LOAD_SECONDS,
            "-c",
            "8",
            "-q",
            "200",
        ],
    )
}

/// CoreDNS alone, as root, on the Corefile node-cache rendered (`corefile`): the local IPs
/// on the node namespace's loopback, no rules. The same load; its queries per second.
fn bare_run(topo: &Topology, coredns: &Path, corefile: &Path, queries: &Path) -> Result<f64> {
    let ips = [addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC];
    for ip in ips {
        topo.node
            .ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"])?;
    }
    let run = || -> Result<f64> {
        let mut cmd = topo.node.command(coredns);
        cmd.arg("-conf").arg(corefile);
        let _coredns = Process::spawn("bare CoreDNS", cmd, &topo.path("bare-coredns.log"))?;
        wait_until("bare CoreDNS to answer", DEADLINE, || {
            Ok(
                pod_query(topo, addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp)
                    .is_ok_and(|a| !a.is_empty()),
            )
        })?;
        dnsperf_qps(&dnsperf(topo, queries)?)
    };
    let qps = run();
    for ip in ips {
        topo.node
            .ip(&["addr", "del", &format!("{ip}/32"), "dev", "lo"])?;
    }
    qps
}

/// A table row: its name, the figure, upstream's figure when there is one.
type Row = (&'static str, fn(&Footprint) -> f64, Option<f64>);

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Prints the table: one column per CoreDNS build, medians of [`RUNS`] runs each.
pub fn table(topo: &Topology, files: &AgentFiles, builds: &[(&str, &Path)]) -> Result<()> {
    let queries = topo.path("dnsperf-queries");
    std::fs::write(
        &queries,
        format!(
            "{} A\n{} A\n{} A\n{} PTR\n",
            names::CLUSTER,
            names::EXTERNAL,
            names::STUB,
            names::CLUSTER_PTR
        ),
    )?;
    let binary = PathBuf::from(std::env::var_os("NODE_CACHE_BINARY").context("NODE_CACHE_BINARY")?);
    // The rendered Corefile the bare runs serve: the first build's, as its last run left it.
    let bare_corefile = topo.path("bare-Corefile");
    let mut bare_qps = Vec::new();
    let mut columns = Vec::new();
    for (label, coredns) in builds {
        let args = files.args(coredns);
        let mut runs = Vec::new();
        for i in 0..RUNS {
            runs.push(
                one_run(topo, &binary, &args, &queries)
                    .with_context(|| format!("{label}: run {}", i + 1))?,
            );
        }
        let size = std::fs::metadata(coredns)?.len() as f64 / 1e6;
        columns.push((format!("{label} ({size:.0} MB)"), runs));
        if bare_qps.is_empty() {
            std::fs::copy(&files.conf, &bare_corefile)?;
            for i in 0..RUNS {
                bare_qps.push(
                    bare_run(topo, coredns, &bare_corefile, &queries)
                        .with_context(|| format!("bare CoreDNS: run {}", i + 1))?,
                );
            }
        }
    }

    println!(
        "footprint, median of {RUNS} runs: RSS in MiB idle ({}s after the rules), after {LOAD_SECONDS} s of \
         dnsperf (8 clients, the cluster, external, stub and PTR names) and peak (VmHWM)",
        IDLE_SETTLE.as_secs()
    );
    print!("| {:<34} |", "figure");
    for (label, _) in &columns {
        print!(" {label:>24} |");
    }
    println!(" {:>15} |", "upstream 1.26.5");
    print!("|{}|", "-".repeat(36));
    for _ in &columns {
        print!("{}|", "-".repeat(26));
    }
    println!("{}|", "-".repeat(17));
    let rows: [Row; 10] = [
        ("agent idle", |f| f.agent_idle, None),
        ("CoreDNS idle", |f| f.coredns_idle, None),
        (
            "total idle",
            |f| f.agent_idle + f.coredns_idle,
            Some(UPSTREAM_IDLE),
        ),
        ("agent after load", |f| f.agent_loaded, None),
        ("CoreDNS after load", |f| f.coredns_loaded, None),
        (
            "total after load",
            |f| f.agent_loaded + f.coredns_loaded,
            Some(UPSTREAM_LOADED),
        ),
        ("agent peak", |f| f.agent_peak, None),
        ("CoreDNS peak", |f| f.coredns_peak, None),
        ("total peak", |f| f.agent_peak + f.coredns_peak, None),
        ("dnsperf queries/s", |f| f.qps, None),
    ];
    for (name, value, upstream) in rows {
        print!("| {name:<34} |");
        for (_, runs) in &columns {
            print!(" {:>24.1} |", median(runs.iter().map(value).collect()));
        }
        match upstream {
            Some(u) => println!(" {u:>15.1} |"),
            None => println!(" {:>15} |", "–"),
        }
    }
    let bare = median(bare_qps);
    let ours = median(columns[0].1.iter().map(|f| f.qps).collect());
    println!(
        "dnsperf queries/s of {} alone (no agent, no rules, the same Corefile): {bare:.1}; \
         under node-cache: {:.2} of it",
        builds[0].0,
        ours / bare
    );
    let node_cache = std::fs::metadata(&binary)?.len() as f64 / 1e6;
    let image = std::fs::read_to_string(workspace_root().join(".cache/image-check/image-size"))
        .map(|mb| format!("{} MB (the last make image-check)", mb.trim()))
        .unwrap_or_else(|_| "not built yet (make image-check)".into());
    println!("node-cache binary {node_cache:.1} MB; image {image}");
    Ok(())
}
