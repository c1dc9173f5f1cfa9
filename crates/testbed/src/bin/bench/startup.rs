//! The startup table: over [`RUNS`] runs in one throwaway topology, the time from spawning
//! node-cache to the pod's first answer and to all 24 rules being in place, measured from
//! outside; the agent's own figures from its log; the RSS of the supervisor and of CoreDNS; and
//! SIGTERM → exit.
//!
//! Outside, the pod's [`Querier`] sends one query after another, each waiting
//! [`PROBE_TIMEOUT`]: a query sent before CoreDNS listens gets no reply (the pod does not see
//! the port-unreachable error), and an answer later than that is taken by the next query,
//! which CoreDNS answers from its cache. The rules are watched with `nft monitor` in the node
//! (iptables here is iptables-nft): each rule insertion is printed as it is committed, so the
//! time the 24th appears is the time the rules are in place, to within a read.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use testbed::fixture::Node;
use testbed::topology::names;
use testbed::{addrs, Netns, Querier};

const RUNS: usize = 5;
const DEADLINE: Duration = Duration::from_secs(30);
/// How long one outside query waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(5);
/// The table the monitor is shown, to know it listens.
const READY_TABLE: &str = "node_cache_bench_ready";
/// How soon a listening monitor shows that table.
const SHOWN_WITHIN: Duration = Duration::from_millis(200);

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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `nft monitor` in a namespace: every line it prints, with the time it was read.
struct RuleMonitor {
    child: Child,
    lines: Receiver<(Instant, String)>,
}

impl RuleMonitor {
    /// Starts the monitor and returns once it has shown a change made after its start.
    fn start(ns: &Netns) -> Result<Self> {
        // Line-buffered: nft's stdio would hold its lines back in a pipe.
        let mut child = ns
            .command("stdbuf")
            .args(["-oL", "nft", "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nft monitor")?;
        let stdout = child.stdout.take().context("nft monitor's stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let monitor = Self { child, lines };
        // It listens once it shows a change: one made before it subscribed goes unseen.
        testbed::wait_until("nft monitor to listen", DEADLINE, || {
            ns.exec("nft", &["add", "table", "inet", READY_TABLE])?;
            ns.exec("nft", &["delete", "table", "inet", READY_TABLE])?;
            Ok(monitor
                .lines
                .recv_timeout(SHOWN_WITHIN)
                .is_ok_and(|(_, line)| line.contains(READY_TABLE)))
        })?;
        Ok(monitor)
    }

    /// Waits until `count` lines have matched: when the last of them was read.
    fn wait_for(
        &mut self,
        what: &str,
        matches: impl Fn(&str) -> bool,
        count: usize,
    ) -> Result<Instant> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, line) = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("waiting for {what} ({seen} of {count} seen)"))?;
            if matches(&line) {
                seen += 1;
                if seen == count {
                    return Ok(at);
                }
            }
        }
    }
}

impl Drop for RuleMonitor {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A rule insertion for one of the addon's local IPs, as `nft monitor` prints it (the comment
/// is not printed for iptables-nft's rules).
fn is_addon_rule(line: &str) -> bool {
    (line.starts_with("insert rule ip ") || line.starts_with("add rule ip "))
        && (line.contains(addrs::LINK_LOCAL) || line.contains(addrs::KUBE_DNS_SVC))
}

/// Queries from the pod until one is answered (any RCODE): when its answer came.
fn first_answer(querier: &Querier, started: Instant) -> Result<Duration> {
    let server = SocketAddr::new(addrs::LINK_LOCAL.parse()?, 53);
    loop {
        if querier.query(server, names::CLUSTER, PROBE_TIMEOUT).is_ok() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > DEADLINE {
            bail!("no answer from {server} within {DEADLINE:?}");
        }
    }
}

fn one_run(node: &Node, querier: &Querier) -> Result<Figures> {
    let mut monitor = RuleMonitor::start(&node.topo.node)?;
    let started = Instant::now();
    let mut agent = node.agent().spawn()?;
    let answer = first_answer(querier, started)?;
    let rules = monitor.wait_for("the 24 rules", is_addon_rule, 24)? - started;
    drop(monitor);
    let coredns_pid = agent.coredns_pid()?;
    let supervisor_rss_kib = rss_kib(agent.pid())?;
    let coredns_rss_kib = rss_kib(coredns_pid)?;
    let log = agent.log();
    let stop = Instant::now();
    agent.terminate()?;
    let sigterm_exit = stop.elapsed();
    Ok(Figures {
        first_answer_ms: ms(answer),
        rules_ms: ms(rules),
        agent_ready_ms: logged_ms(&log, "CoreDNS answers DNS")?,
        agent_rules_ms: logged_ms(&log, "rules in place")?,
        supervisor_rss_kib,
        coredns_rss_kib,
        sigterm_exit_ms: ms(sigterm_exit),
    })
}

/// The table's rows: name, unit, figure.
type Row = (&'static str, &'static str, fn(&Figures) -> f64);

const ROWS: [Row; 9] = [
    ("start → first pod answer (outside, Querier)", "ms", |f| {
        f.first_answer_ms
    }),
    ("start → 24 rules in place (outside, nft)", "ms", |f| {
        f.rules_ms
    }),
    ("first pod answer → 24 rules (outside)", "ms", |f| {
        f.rules_ms - f.first_answer_ms
    }),
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

pub fn table(node: &Node) -> Result<()> {
    let querier = Querier::new(&node.topo.pod)?;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        runs.push(one_run(node, &querier).with_context(|| format!("run {}", i + 1))?);
    }
    println!(
        "node-cache startup, {RUNS} runs, addon flags, -localip 169.254.20.10,10.96.0.10, -pidfile set"
    );
    println!(
        "| {:<46} | {:>9} | {:>9} | {:>9} | {:<3} |",
        "figure", "median", "min", "max", ""
    );
    println!("{}", super::separator(&[46, 9, 9, 9, 3]));
    for (name, unit, figure) in ROWS {
        let (median, min, max) = super::spread(runs.iter().map(figure).collect());
        println!("| {name:<46} | {median:>9.1} | {min:>9.1} | {max:>9.1} | {unit:<3} |");
    }
    Ok(())
}
