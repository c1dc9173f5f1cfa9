//! `make bench`, two tables, each figure as median, min and max.
//!
//! Startup: over 5 runs in one throwaway topology, time from spawning node-cache to the first
//! answer a pod gets and to all rules being in place, measured from outside; the agent's own
//! figures from its log; the RSS of the supervisor and of CoreDNS; and SIGTERM → exit.
//!
//! Resilience: in the same topology, with `-syncinterval 1s`, each disturbance (ConfigMap swap,
//! CoreDNS SIGKILL and SIGSTOP, address flush, link delete, rules flush, SIGTERM) over 3 runs
//! under a steady load of 200 queries/s to each local IP from the pod namespace; the time until
//! the disturbance is dealt with, and how many of the pod's queries failed during each run. A
//! scenario the agent does not handle prints `n/a (reason)` instead of stopping the bench.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use testbed::agent::{pod_query, start_node_cache, AgentFiles};
use testbed::topology::names;
use testbed::{addrs, wait_until, Topology, Transport};

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

fn one_run(topo: &Topology, binary: &std::path::Path, args: &[String]) -> Result<Figures> {
    let log_path = topo.path("node-cache.log");
    let _ = std::fs::remove_file(&log_path);
    let started = Instant::now();
    let mut agent = start_node_cache(topo, binary, args)?;
    let mut first_answer = None;
    let mut rules = None;
    wait_until("an answer and the rules", DEADLINE, || {
        if first_answer.is_none()
            && pod_query(topo, addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp)
                .is_ok_and(|a| !a.is_empty())
        {
            first_answer = Some(started.elapsed());
        }
        if rules.is_none() && topo.node_cache_rule_lines()?.len() == 24 {
            rules = Some(started.elapsed());
        }
        Ok(first_answer.is_some() && rules.is_some())
    })?;
    let coredns_pid = testbed::agent::coredns_host_pid(&agent, &topo.path("node-cache.pid"))?;
    let supervisor_rss_kib = rss_kib(agent.pid())?;
    let coredns_rss_kib = rss_kib(coredns_pid)?;
    let log = agent.log();
    let stop = Instant::now();
    agent.signal(Signal::SIGTERM)?;
    agent.wait_exit(DEADLINE)?;
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

fn row(name: &str, unit: &str, mut values: Vec<f64>) {
    values.sort_by(|a, b| a.total_cmp(b));
    let median = values[values.len() / 2];
    println!(
        "| {name:<46} | {median:>9.1} | {:>9.1} | {:>9.1} | {unit:<3} |",
        values[0],
        values[values.len() - 1]
    );
}

fn main() -> Result<()> {
    let binary = PathBuf::from(
        std::env::var_os("NODE_CACHE_BINARY")
            .context("NODE_CACHE_BINARY is not set (run `make bench`)")?,
    );
    let topo = Topology::build()?;
    let files = AgentFiles::addon(&topo)?;
    let args = files.args(&topo.coredns);
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let figures = one_run(&topo, &binary, &args).with_context(|| format!("run {}", i + 1))?;
        runs.push(figures);
    }
    println!("node-cache startup, {RUNS} runs, addon flags, -localip 169.254.20.10,10.96.0.10, -pidfile set");
    println!(
        "| {:<46} | {:>9} | {:>9} | {:>9} | {:<3} |",
        "figure", "median", "min", "max", ""
    );
    println!(
        "|{}|{}|{}|{}|{}|",
        "-".repeat(48),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(5)
    );
    let col = |f: fn(&Figures) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    row(
        "start → first pod answer (outside, dig)",
        "ms",
        col(|f| f.first_answer_ms),
    );
    row(
        "start → 24 rules in place (outside, iptables-save)",
        "ms",
        col(|f| f.rules_ms),
    );
    row(
        "start → CoreDNS answers probe (agent log)",
        "ms",
        col(|f| f.agent_ready_ms),
    );
    row(
        "start → rules in place (agent log)",
        "ms",
        col(|f| f.agent_rules_ms),
    );
    row(
        "rules after first answer (agent log)",
        "ms",
        col(|f| f.agent_rules_ms - f.agent_ready_ms),
    );
    row("supervisor RSS", "KiB", col(|f| f.supervisor_rss_kib));
    row("CoreDNS RSS", "KiB", col(|f| f.coredns_rss_kib));
    row(
        "SIGTERM → exit (teardown done)",
        "ms",
        col(|f| f.sigterm_exit_ms),
    );
    println!();
    resilience::table(&topo, &files, &binary)?;
    println!();
    handover_table(&topo, &files, &binary)?;
    println!();
    print!("{}", testbed::firewall_bench::firewall_costs(20)?);
    Ok(())
}

/// Two instances on one node: sent and failed pod queries per scenario and local IP.
fn handover_table(topo: &Topology, files: &AgentFiles, binary: &std::path::Path) -> Result<()> {
    use testbed::handover::{run, Node, Scenario, RATE};
    const RUNS: usize = 3;
    let node = Node {
        topo,
        files,
        binary,
        capabilities: testbed::pod::Capabilities::Manifest,
    };
    println!(
        "node-cache handover, {RUNS} runs each, pod load {RATE} q/s to each local IP \
         (failed/sent per run, for {} and {})",
        testbed::addrs::LINK_LOCAL,
        testbed::addrs::KUBE_DNS_SVC
    );
    println!(
        "| {:<34} | {:<60} |",
        "scenario", "failed/sent per IP, each run"
    );
    println!("|{}|{}|", "-".repeat(36), "-".repeat(62));
    for scenario in Scenario::ALL {
        let mut cells = Vec::new();
        for _ in 0..RUNS {
            match run(&node, scenario) {
                Ok(report) => cells.push(
                    report
                        .per_target
                        .iter()
                        .map(|t| format!("{}/{}", t.failed, t.sent))
                        .collect::<Vec<_>>()
                        .join(" + "),
                ),
                Err(e) => cells.push(format!(
                    "n/a ({})",
                    format!("{e:#}").lines().next().unwrap_or("")
                )),
            }
        }
        println!("| {:<34} | {:<60} |", scenario.name(), cells.join(", "));
    }
    Ok(())
}

/// The resilience table: disturbances under a steady pod query load.
mod resilience {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context, Result};
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use testbed::agent::{addon_corefile_iptables_mode, start_node_cache, AgentFiles, INTERFACE};
    use testbed::load::{LoadReport, Querier, QueryLoad};
    use testbed::topology::{names, write_configmap_volume};
    use testbed::{addrs, wait_until, Process, Topology};

    const RUNS: usize = 3;
    const RATE: u32 = 200;
    /// Load before the disturbance, and after the recovery, so each run's failures are all seen.
    const LEAD_IN: Duration = Duration::from_millis(300);
    const TAIL: Duration = Duration::from_millis(500);
    const PROBE: Duration = Duration::from_millis(100);

    struct Bench<'a> {
        topo: &'a Topology,
        files: &'a AgentFiles,
        binary: &'a Path,
        args: Vec<String>,
        agent: Option<Process>,
        q: Querier,
    }

    struct Scenario {
        name: &'static str,
        /// Unmeasured, before the load starts.
        prepare: fn(&mut Bench) -> Result<()>,
        /// The disturbance and the wait for its repair; returns the figure.
        act: fn(&mut Bench) -> Result<Duration>,
    }

    fn dns(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("an IP"), 53)
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("an IPv4 address")
    }

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    fn stub_json() -> String {
        format!(
            r#"{{"{}": ["{}"]}}"#,
            names::STUB_DOMAIN,
            addrs::STUB_SERVER
        )
    }

    impl Bench<'_> {
        fn answers(&self, server: &str, name: &str, answer: &str) -> bool {
            self.q.a_records(dns(server), name, PROBE) == [ip(answer)]
        }

        fn answering(&self, server: &str) -> bool {
            self.answers(server, names::CLUSTER, names::CLUSTER_IP)
        }

        fn coredns_pid(&self) -> Result<i32> {
            let agent = self.agent.as_ref().context("node-cache is not running")?;
            Ok(testbed::agent::coredns_host_pid(agent, &self.files.pidfile)? as i32)
        }

        fn addresses_ok(&self) -> Result<bool> {
            let mut want = vec![
                addrs::LINK_LOCAL.to_string(),
                addrs::KUBE_DNS_SVC.to_string(),
            ];
            want.sort();
            Ok(self
                .topo
                .node_link_addresses(INTERFACE)?
                .map(|mut a| {
                    a.sort();
                    a
                })
                .is_some_and(|a| a == want))
        }

        fn agent_mut(&mut self) -> Result<&mut Process> {
            self.agent.as_mut().context("no agent running")
        }

        /// A running agent with the good config, answering at both IPs, interface and rules
        /// in place. Restarts it (good files) when a scenario left it dead or broken.
        fn ready(&mut self) -> Result<()> {
            let running = match self.agent.as_mut() {
                Some(agent) => agent.try_status()?.is_none(),
                None => false,
            };
            if !running {
                self.agent = None;
                std::fs::write(&self.files.base, addon_corefile_iptables_mode()?)?;
                write_configmap_volume(&self.files.kube_dns, &[("stubDomains", &stub_json())])?;
                self.agent = Some(start_node_cache(self.topo, self.binary, &self.args)?);
            }
            wait_until("the agent to be ready", Duration::from_secs(20), || {
                if let Some(status) = self.agent.as_mut().expect("started").try_status()? {
                    bail!("node-cache exited ({status})");
                }
                Ok(self.answering(addrs::LINK_LOCAL)
                    && self.answering(addrs::KUBE_DNS_SVC)
                    && self.topo.node_cache_rule_lines()?.len() == 24
                    && self.addresses_ok()?)
            })?;
            Ok(())
        }
    }

    fn prepare_nothing(_: &mut Bench) -> Result<()> {
        Ok(())
    }

    /// No stub domain: db.corp.internal is unknown until the swap under load adds it.
    fn prepare_reload(b: &mut Bench) -> Result<()> {
        write_configmap_volume(&b.files.kube_dns, &[("stubDomains", "{}")])?;
        wait_until(
            "the stub domain to be gone",
            Duration::from_secs(10),
            || {
                let reply = b.q.query(dns(addrs::LINK_LOCAL), names::STUB, PROBE);
                Ok(reply.is_ok_and(|r| r.a.is_empty()))
            },
        )?;
        Ok(())
    }

    fn reload(b: &mut Bench) -> Result<Duration> {
        write_configmap_volume(&b.files.kube_dns, &[("stubDomains", &stub_json())])?;
        let t0 = Instant::now();
        wait_until(
            "the new stub domain answered",
            Duration::from_secs(5),
            || Ok(b.answers(addrs::LINK_LOCAL, names::STUB, names::STUB_IP)),
        )?;
        Ok(t0.elapsed())
    }

    fn coredns_sigkill(b: &mut Bench) -> Result<Duration> {
        let old = b.coredns_pid()?;
        kill(Pid::from_raw(old), Signal::SIGKILL)?;
        let t0 = Instant::now();
        wait_until("the killed CoreDNS gone", Duration::from_secs(5), || {
            Ok(!alive(old))
        })?;
        wait_until("answering again", Duration::from_secs(5), || {
            Ok(b.answering(addrs::LINK_LOCAL))
        })?;
        Ok(t0.elapsed())
    }

    fn coredns_sigstop(b: &mut Bench) -> Result<Duration> {
        let old = b.coredns_pid()?;
        // Whatever happens, the stopped CoreDNS must not linger.
        struct Resume(i32);
        impl Drop for Resume {
            fn drop(&mut self) {
                let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.0));
                if comm.is_ok_and(|c| c.trim() == "coredns") {
                    let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
                    let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
                }
            }
        }
        let _resume = Resume(old);
        kill(Pid::from_raw(old), Signal::SIGSTOP)?;
        let t0 = Instant::now();
        wait_until("a replacement answering", Duration::from_secs(10), || {
            Ok(b.coredns_pid().is_ok_and(|p| p != old) && b.answering(addrs::LINK_LOCAL))
        })?;
        Ok(t0.elapsed())
    }

    fn address_flush(b: &mut Bench) -> Result<Duration> {
        b.topo.node.ip(&["addr", "flush", "dev", INTERFACE])?;
        let t0 = Instant::now();
        wait_until("the addresses back", Duration::from_secs(5), || {
            b.addresses_ok()
        })?;
        Ok(t0.elapsed())
    }

    fn link_delete(b: &mut Bench) -> Result<Duration> {
        b.topo.node.ip(&["link", "del", INTERFACE])?;
        let t0 = Instant::now();
        wait_until(
            "the link and addresses back",
            Duration::from_secs(5),
            || b.addresses_ok(),
        )?;
        Ok(t0.elapsed())
    }

    fn rules_flush(b: &mut Bench) -> Result<Duration> {
        for table in ["raw", "filter"] {
            b.topo.node.exec("iptables", &["-w", "-t", table, "-F"])?;
        }
        let t0 = Instant::now();
        wait_until("the 24 rules back", Duration::from_secs(5), || {
            Ok(b.topo.node_cache_rule_lines()?.len() == 24)
        })?;
        Ok(t0.elapsed())
    }

    fn sigterm(b: &mut Bench) -> Result<Duration> {
        let agent = b.agent_mut()?;
        agent.signal(Signal::SIGTERM)?;
        let t0 = Instant::now();
        let status = agent.wait_exit(Duration::from_secs(20))?;
        let took = t0.elapsed();
        b.agent = None;
        if !status.success() {
            bail!("exit {status}");
        }
        if b.topo.node_link_addresses(INTERFACE)?.is_some()
            || !b.topo.node_cache_rule_lines()?.is_empty()
        {
            bail!("interface or rules left behind");
        }
        Ok(took)
    }

    const SCENARIOS: [Scenario; 7] = [
        Scenario {
            name: "ConfigMap swap → new stub domain answered",
            prepare: prepare_reload,
            act: reload,
        },
        Scenario {
            name: "CoreDNS SIGKILL → answering again",
            prepare: prepare_nothing,
            act: coredns_sigkill,
        },
        Scenario {
            name: "CoreDNS SIGSTOP → replaced, answering",
            prepare: prepare_nothing,
            act: coredns_sigstop,
        },
        Scenario {
            name: "address flush → addresses back",
            prepare: prepare_nothing,
            act: address_flush,
        },
        Scenario {
            name: "link delete → link and addresses back",
            prepare: prepare_nothing,
            act: link_delete,
        },
        Scenario {
            name: "rules flush → 24 rules back (-syncinterval 1s)",
            prepare: prepare_nothing,
            act: rules_flush,
        },
        Scenario {
            name: "SIGTERM → exit (teardown done)",
            prepare: prepare_nothing,
            act: sigterm,
        },
    ];

    /// One run: ready agent, prepare, load, lead-in, disturbance, tail, report.
    fn one_run(b: &mut Bench, scenario: &Scenario) -> Result<(Duration, LoadReport)> {
        b.ready().context("getting the agent ready")?;
        (scenario.prepare)(b).context("preparing")?;
        let targets = vec![dns(addrs::LINK_LOCAL), dns(addrs::KUBE_DNS_SVC)];
        let load = QueryLoad::start(&b.topo.pod, targets, names::CLUSTER, RATE)?;
        wait_until("the lead-in", Duration::from_secs(5), || {
            Ok(load.snapshot().elapsed >= LEAD_IN)
        })?;
        let took = (scenario.act)(b)?;
        // After SIGTERM nothing serves the link-local IP any more: stop counting at the exit.
        if b.agent.is_some() {
            let until = load.snapshot().elapsed + TAIL;
            wait_until("the tail", Duration::from_secs(5), || {
                Ok(load.snapshot().elapsed >= until)
            })?;
        }
        Ok((took, load.stop()?))
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    fn first_line(e: &anyhow::Error) -> String {
        let text = format!("{e:#}");
        let line = text.lines().next().unwrap_or("").to_string();
        if line.chars().count() > 100 {
            format!("{}…", line.chars().take(100).collect::<String>())
        } else {
            line
        }
    }

    pub fn table(topo: &Topology, files: &AgentFiles, binary: &Path) -> Result<()> {
        let mut args = files.args(&topo.coredns);
        args.extend(["-syncinterval".to_string(), "1s".to_string()]);
        let mut b = Bench {
            topo,
            files,
            binary,
            args,
            agent: None,
            q: Querier::new(&topo.pod)?,
        };
        println!(
            "node-cache resilience, {RUNS} runs each, -syncinterval 1s, pod load {RATE} q/s to \
             each of {} and {} (failed: per run, link-local + kube-dns IP, of sent)",
            addrs::LINK_LOCAL,
            addrs::KUBE_DNS_SVC
        );
        println!(
            "| {:<46} | {:>9} | {:>9} | {:>9} | {:<3} | {:<34} |",
            "scenario", "median", "min", "max", "", "failed pod queries"
        );
        println!(
            "|{}|{}|{}|{}|{}|{}|",
            "-".repeat(48),
            "-".repeat(11),
            "-".repeat(11),
            "-".repeat(11),
            "-".repeat(5),
            "-".repeat(36)
        );
        for scenario in &SCENARIOS {
            let mut figures = Vec::new();
            let mut failed = Vec::new();
            let mut problem = None;
            for _ in 0..RUNS {
                match one_run(&mut b, scenario) {
                    Ok((took, report)) => {
                        figures.push(ms(took));
                        let f: Vec<String> = report
                            .per_target
                            .iter()
                            .map(|t| t.failed.to_string())
                            .collect();
                        failed.push(format!("{}/{}", f.join("+"), report.sent()));
                    }
                    Err(e) => {
                        problem = Some(first_line(&e));
                        // Whatever state the scenario left, the next one starts afresh.
                        b.agent = None;
                        break;
                    }
                }
            }
            match problem {
                Some(reason) if figures.is_empty() => {
                    println!("| {:<46} | n/a ({reason})", scenario.name);
                }
                _ => {
                    let mut sorted = figures.clone();
                    sorted.sort_by(|a, b| a.total_cmp(b));
                    let note = problem.map(|r| format!(" (then: {r})")).unwrap_or_default();
                    println!(
                        "| {:<46} | {:>9.1} | {:>9.1} | {:>9.1} | {:<3} | {:<34} |{note}",
                        scenario.name,
                        sorted[sorted.len() / 2],
                        sorted[0],
                        sorted[sorted.len() - 1],
                        "ms",
                        failed.join(", ")
                    );
                }
            }
        }
        if let Some(mut agent) = b.agent.take() {
            agent.signal(Signal::SIGTERM)?;
            agent.wait_exit(Duration::from_secs(20))?;
        }
        Ok(())
    }
}
