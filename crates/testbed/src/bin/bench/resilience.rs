//! The resilience table: in the bench's topology, with `-syncinterval 1s`, each disturbance
//! (ConfigMap swap, CoreDNS SIGKILL and SIGSTOP, address flush, link delete, rules flush,
//! SIGTERM) over 3 runs under a steady load of 200 queries/s to each local IP from the pod
//! namespace: the time until the disturbance is dealt with, and how many of the pod's queries
//! failed during each run. A scenario the agent does not handle prints `n/a (reason)` instead
//! of stopping the bench.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use testbed::agent::{addon_corefile_iptables_mode, addon_stub_domains, INTERFACE};
use testbed::fixture::{AgentRun, Node};
use testbed::load::{LoadReport, QueryLoad};
use testbed::process::{self, alive, Stopped};
use testbed::topology::{names, write_configmap_volume};
use testbed::{addrs, wait_until};

const RUNS: usize = 3;
const RATE: u32 = 200;
/// Load before the disturbance, and after the recovery, so each run's failures are all seen.
const LEAD_IN: Duration = Duration::from_millis(300);
const TAIL: Duration = Duration::from_millis(500);

struct Bench<'n> {
    node: &'n Node,
    agent: Option<AgentRun<'n>>,
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

impl Bench<'_> {
    fn answering(&self, server: &str) -> bool {
        self.node.a(server, names::CLUSTER) == [names::CLUSTER_IP]
    }

    fn coredns_pid(&self) -> Result<u32> {
        let agent = self.agent.as_ref().context("node-cache is not running")?;
        agent.coredns_pid()
    }

    fn addresses_ok(&self) -> Result<bool> {
        Ok(self.node.addresses()? == Node::addon_addresses())
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
            let files = &self.node.files;
            std::fs::write(&files.base, addon_corefile_iptables_mode()?)?;
            let stub = addon_stub_domains();
            write_configmap_volume(&files.kube_dns, &[("stubDomains", &stub)])?;
            let agent = self.node.agent().flags(&["-syncinterval", "1s"]).spawn()?;
            self.agent = Some(agent);
        }
        wait_until("the agent to be ready", Duration::from_secs(20), || {
            if let Some(status) = self.agent.as_mut().expect("started").try_status()? {
                bail!("node-cache exited ({status})");
            }
            Ok(self.answering(addrs::LINK_LOCAL)
                && self.answering(addrs::KUBE_DNS_SVC)
                && self.node.rule_count()? == 24
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
    write_configmap_volume(&b.node.files.kube_dns, &[("stubDomains", "{}")])?;
    wait_until(
        "the stub domain to be gone",
        Duration::from_secs(10),
        || {
            let reply = b.node.probe(addrs::LINK_LOCAL, names::STUB);
            Ok(reply.is_ok_and(|r| r.a.is_empty()))
        },
    )?;
    Ok(())
}

fn reload(b: &mut Bench) -> Result<Duration> {
    let stub = addon_stub_domains();
    write_configmap_volume(&b.node.files.kube_dns, &[("stubDomains", &stub)])?;
    let t0 = Instant::now();
    wait_until(
        "the new stub domain answered",
        Duration::from_secs(5),
        || Ok(b.node.a(addrs::LINK_LOCAL, names::STUB) == [names::STUB_IP]),
    )?;
    Ok(t0.elapsed())
}

fn coredns_sigkill(b: &mut Bench) -> Result<Duration> {
    let old = b.coredns_pid()?;
    process::send(old, Signal::SIGKILL)?;
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
    let _stopped = Stopped::stop(old)?;
    let t0 = Instant::now();
    wait_until("a replacement answering", Duration::from_secs(10), || {
        Ok(b.coredns_pid().is_ok_and(|p| p != old) && b.answering(addrs::LINK_LOCAL))
    })?;
    Ok(t0.elapsed())
}

fn address_flush(b: &mut Bench) -> Result<Duration> {
    b.node.topo.node.ip(&["addr", "flush", "dev", INTERFACE])?;
    let t0 = Instant::now();
    wait_until("the addresses back", Duration::from_secs(5), || {
        b.addresses_ok()
    })?;
    Ok(t0.elapsed())
}

fn link_delete(b: &mut Bench) -> Result<Duration> {
    b.node.topo.node.ip(&["link", "del", INTERFACE])?;
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
        b.node
            .topo
            .node
            .exec("iptables", &["-w", "-t", table, "-F"])?;
    }
    let t0 = Instant::now();
    wait_until("the 24 rules back", Duration::from_secs(5), || {
        Ok(b.node.rule_count()? == 24)
    })?;
    Ok(t0.elapsed())
}

fn sigterm(b: &mut Bench) -> Result<Duration> {
    let agent = b.agent.as_mut().context("no agent running")?;
    agent.signal(Signal::SIGTERM)?;
    let t0 = Instant::now();
    let status = agent.wait_exit()?;
    let took = t0.elapsed();
    b.agent = None;
    if !status.success() {
        bail!("exit {status}");
    }
    b.node.check_clean("after SIGTERM")?;
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
    let load = QueryLoad::start(&b.node.topo.pod, targets, names::CLUSTER, RATE)?;
    load.run_for(LEAD_IN)?;
    let took = (scenario.act)(b)?;
    // After SIGTERM nothing serves the link-local IP any more: stop counting at the exit.
    if b.agent.is_some() {
        load.run_for(TAIL)?;
    }
    Ok((took, load.stop()?))
}

pub fn table(node: &Node) -> Result<()> {
    let mut b = Bench { node, agent: None };
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
    println!("{}", super::separator(&[46, 9, 9, 9, 3, 34]));
    for scenario in &SCENARIOS {
        let mut figures = Vec::new();
        let mut failed = Vec::new();
        let mut problem = None;
        for _ in 0..RUNS {
            match one_run(&mut b, scenario) {
                Ok((took, report)) => {
                    figures.push(took.as_secs_f64() * 1000.0);
                    let f: Vec<String> = report
                        .per_target
                        .iter()
                        .map(|t| t.failed.to_string())
                        .collect();
                    failed.push(format!("{}/{}", f.join("+"), report.sent()));
                }
                Err(e) => {
                    let line = super::first_line(&e);
                    problem = Some(if line.chars().count() > 100 {
                        format!("{}…", line.chars().take(100).collect::<String>())
                    } else {
                        line
                    });
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
                let (median, min, max) = super::spread(figures);
                let note = problem.map(|r| format!(" (then: {r})")).unwrap_or_default();
                println!(
                    "| {:<46} | {median:>9.1} | {min:>9.1} | {max:>9.1} | {:<3} | {:<34} |{note}",
                    scenario.name,
                    "ms",
                    failed.join(", ")
                );
            }
        }
    }
    if let Some(mut agent) = b.agent.take() {
        agent.terminate()?;
    }
    Ok(())
}
