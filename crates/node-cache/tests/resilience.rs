//! node-cache heals itself (issue 3): configuration changes picked up from the file swap, a
//! crashed or hung CoreDNS replaced, a crash loop failing open to kube-dns and back, the
//! interface and the rules repaired. The real binary in a node namespace of a throwaway
//! topology, a real CoreDNS child; queries from the pod namespace.
//!
//! Each measured figure is printed as `figure: <name> = <ms> ms` (run with `--nocapture`).
//! The tests run one at a time (they time the agent, and the machine may be small).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use testbed::agent::{
    addon_corefile_iptables_mode, coredns_host_pid, node_http_get, start_node_cache, wait_rules,
    AgentFiles, INTERFACE,
};
use testbed::topology::{names, write_configmap_volume};
use testbed::{addrs, wait_until, Process, Querier, Topology};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
const GOLDEN_RULES: &str =
    include_str!("../../netsetup/tests/golden/rules-169.254.20.10_10.96.0.10.iptables-save");
const DEADLINE: Duration = Duration::from_secs(20);
/// The per-query timeout while timing how fast something answers again.
const PROBE: Duration = Duration::from_millis(100);
const METRICS: &str = "http://127.0.0.1:9353/metrics";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn figure(name: &str, took: Duration) {
    eprintln!("figure: {name} = {:.1} ms", took.as_secs_f64() * 1000.0);
}

fn dns(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("an IP"), 53)
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("an IPv4 address")
}

fn stub_json() -> String {
    format!(
        r#"{{"{}": ["{}"]}}"#,
        names::STUB_DOMAIN,
        addrs::STUB_SERVER
    )
}

/// The last lines of a log, for failure messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A pid is alive when it exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

fn is_coredns(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "coredns")
}

/// The agent in a fresh topology, with its files, a querier in the pod namespace, the agent's
/// log at hand for failure messages.
struct Run {
    topo: Topology,
    files: AgentFiles,
    agent: Process,
    q: Querier,
}

impl Run {
    /// Writes the addon files, lets `prepare` change them, starts node-cache with the addon
    /// flags plus `extra` and waits for its 24 rules and an answer at the link-local IP.
    fn start(
        extra: &[&str],
        prepare: impl FnOnce(&Topology, &AgentFiles) -> Result<()>,
    ) -> Result<Self> {
        let topo = Topology::build()?;
        let files = AgentFiles::addon(&topo)?;
        prepare(&topo, &files)?;
        let mut args = files.args(&topo.coredns);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut agent = start_node_cache(&topo, NODE_CACHE.as_ref(), &args)?;
        wait_rules(&topo, &mut agent, DEADLINE)?;
        let q = Querier::new(&topo.pod)?;
        let run = Self {
            topo,
            files,
            agent,
            q,
        };
        run.wait_answering(addrs::LINK_LOCAL, DEADLINE)
            .context("expected node-cache to answer at startup")?;
        Ok(run)
    }

    fn log(&self) -> String {
        tail(&self.agent.log())
    }

    /// The A records a pod gets for `name` from `server` (empty on any failure).
    fn a(&self, server: &str, name: &str) -> Vec<Ipv4Addr> {
        self.q.a_records(dns(server), name, PROBE)
    }

    /// Waits until a pod's query for the cluster name at `server` is answered correctly.
    fn wait_answering(&self, server: &str, deadline: Duration) -> Result<Duration> {
        wait_until(
            &format!("{server} to answer {}", names::CLUSTER),
            deadline,
            || Ok(self.a(server, names::CLUSTER) == [ip(names::CLUSTER_IP)]),
        )
    }

    fn coredns_pid(&self) -> Result<i32> {
        Ok(coredns_host_pid(&self.agent, &self.files.pidfile)? as i32)
    }

    /// The value of one sample of the agent's metrics, e.g.
    /// `coredns_nodecache_coredns_restarts_total{reason="exited"}`; None when absent.
    fn metric(&self, series: &str) -> Result<Option<f64>> {
        let text = node_http_get(&self.topo, METRICS)?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok()))
    }

    fn wait_metric(&self, series: &str, wanted: impl Fn(f64) -> bool, expect: &str) -> Result<()> {
        let mut last = None;
        wait_until(&format!("{series} {expect}"), Duration::from_secs(5), || {
            last = self.metric(series)?;
            Ok(last.is_some_and(&wanted))
        })
        .with_context(|| {
            format!(
                "expected the agent's metric {series} {expect}; last value {last:?}\nagent log:\n{}",
                self.log()
            )
        })
        .map(|_| ())
    }

    fn assert_agent_running(&mut self, after: &str) -> Result<()> {
        if let Some(status) = self.agent.try_status()? {
            anyhow::bail!(
                "expected node-cache to keep running after {after}, it exited ({status}):\n{}",
                self.log()
            );
        }
        Ok(())
    }

    fn rule_count(&self) -> Result<usize> {
        Ok(self.topo.node_cache_rule_lines()?.len())
    }

    fn addresses(&self) -> Result<Option<Vec<String>>> {
        Ok(self.topo.node_link_addresses(INTERFACE)?.map(|mut a| {
            a.sort();
            a
        }))
    }

    /// SIGTERM → exit 0 → no interface, no rules left.
    fn finish(mut self) -> Result<()> {
        self.assert_agent_running("the test")?;
        self.agent.signal(Signal::SIGTERM)?;
        let status = self.agent.wait_exit(DEADLINE)?;
        ensure!(
            status.success(),
            "expected exit 0 on SIGTERM, got {status}:\n{}",
            self.log()
        );
        assert_eq!(
            self.topo.node_link_addresses(INTERFACE)?,
            None,
            "expected no interface after SIGTERM"
        );
        let left = self.topo.node_cache_rule_lines()?;
        assert!(
            left.is_empty(),
            "expected no rules after SIGTERM, found {left:#?}"
        );
        Ok(())
    }
}

fn expected_addresses() -> Option<Vec<String>> {
    let mut a = vec![
        addrs::LINK_LOCAL.to_string(),
        addrs::KUBE_DNS_SVC.to_string(),
    ];
    a.sort();
    Some(a)
}

fn swap_stub_domains(files: &AgentFiles, json: &str) -> Result<()> {
    write_configmap_volume(&files.kube_dns, &[("stubDomains", json)])
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn kube_dns_configmap_swap_and_base_corefile_rewrite_take_effect() -> Result<()> {
    let _serial = serial();
    // Start with no stub domain: db.corp.internal goes to the upstream, which does not know it.
    let run = Run::start(&[], |_, files| swap_stub_domains(files, "{}"))?;
    ensure!(
        run.a(addrs::LINK_LOCAL, names::STUB).is_empty(),
        "expected {} unanswered before the stub domain exists",
        names::STUB
    );

    swap_stub_domains(&run.files, &stub_json())?;
    let swapped = Instant::now();
    wait_until(
        "the new stub domain to be answered",
        Duration::from_secs(5),
        || Ok(run.a(addrs::LINK_LOCAL, names::STUB) == [ip(names::STUB_IP)]),
    )
    .with_context(|| {
        format!(
            "expected a pod's query for {} answered within 5 s of the kubelet-style ConfigMap \
             swap adding stub domain {}\nrendered Corefile:\n{}\nagent log:\n{}",
            names::STUB,
            names::STUB_DOMAIN,
            read(&run.files.conf),
            run.log()
        )
    })?;
    let took = swapped.elapsed();
    figure("ConfigMap swap → new stub domain answered", took);
    assert!(
        took < Duration::from_secs(1),
        "expected the stub domain answered within 1 s of the swap, took {took:?}"
    );
    // CoreDNS's reload hands its listeners to the new servers, and the old ones may still
    // read a query or two from them until they stop: wait, briefly, rather than sample once.
    wait_until(
        "the stub domain at the kube-dns IP too",
        Duration::from_secs(1),
        || Ok(run.a(addrs::KUBE_DNS_SVC, names::STUB) == [ip(names::STUB_IP)]),
    )?;

    // A plain in-place rewrite of the base Corefile: a new zone served from a hosts entry.
    let (zone, name, answer) = ("reload.test", "probe.reload.test", "192.0.2.99");
    ensure!(
        run.a(addrs::LINK_LOCAL, name).is_empty(),
        "expected {name} unknown before"
    );
    let base = format!(
        "{}\n{zone}:53 {{\n    errors\n    bind {} {}\n    hosts {{\n        {answer} {name}\n    }}\n}}\n",
        addon_corefile_iptables_mode()?,
        addrs::LINK_LOCAL,
        addrs::KUBE_DNS_SVC
    );
    std::fs::write(&run.files.base, base)?;
    let rewritten = Instant::now();
    wait_until(
        "the base Corefile's new zone to be answered",
        Duration::from_secs(5),
        || Ok(run.a(addrs::LINK_LOCAL, name) == [ip(answer)]),
    )
    .with_context(|| {
        format!(
            "expected {name} answered within 5 s of rewriting the base Corefile in place \
             (new zone {zone})\nrendered Corefile:\n{}\nagent log:\n{}",
            read(&run.files.conf),
            run.log()
        )
    })?;
    figure(
        "base Corefile rewrite → new zone answered",
        rewritten.elapsed(),
    );
    // The earlier change is still in force.
    assert_eq!(run.a(addrs::LINK_LOCAL, names::STUB), [ip(names::STUB_IP)]);
    run.finish()
}

#[test]
fn bad_configmap_is_counted_last_good_config_serves_and_a_good_one_recovers() -> Result<()> {
    let _serial = serial();
    let mut run = Run::start(&[], |_, _| Ok(()))?;
    assert_eq!(run.a(addrs::LINK_LOCAL, names::STUB), [ip(names::STUB_IP)]);

    swap_stub_domains(&run.files, r#"{"corp.internal": ["10.244.2.3"]"#)?;
    run.wait_metric(
        r#"coredns_nodecache_setup_errors_total{errortype="configmap"}"#,
        |v| v >= 1.0,
        "≥ 1 after a ConfigMap with invalid JSON",
    )?;
    // The last good Corefile keeps serving, stub domain included.
    for server in [addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC] {
        run.wait_answering(server, Duration::from_secs(2))
            .with_context(|| format!("expected {server} to keep answering with a bad ConfigMap"))?;
        assert_eq!(
            run.a(server, names::STUB),
            [ip(names::STUB_IP)],
            "expected the last good config's stub domain still answered at {server}"
        );
    }
    let conf = read(&run.files.conf);
    assert!(
        conf.contains(names::STUB_DOMAIN),
        "expected the rendered Corefile to keep the last good stub block:\n{conf}"
    );
    run.assert_agent_running("a bad ConfigMap")?;

    // A later good ConfigMap (no stub domains) is applied: the name goes to the upstream again.
    swap_stub_domains(&run.files, "{}")?;
    let swapped = Instant::now();
    wait_until("the stub domain to be gone", Duration::from_secs(5), || {
        let reply = run.q.query(dns(addrs::LINK_LOCAL), names::STUB, PROBE);
        Ok(reply.is_ok_and(|r| !r.a.contains(&ip(names::STUB_IP))))
    })
    .with_context(|| {
        format!(
            "expected a good ConfigMap after the bad one to be applied (stub domain removed)\n\
             rendered Corefile:\n{}\nagent log:\n{}",
            read(&run.files.conf),
            run.log()
        )
    })?;
    figure(
        "good ConfigMap after a bad one → applied",
        swapped.elapsed(),
    );
    // And back again, to be sure changes keep flowing.
    swap_stub_domains(&run.files, &stub_json())?;
    wait_until("the stub domain to be back", Duration::from_secs(5), || {
        Ok(run.a(addrs::LINK_LOCAL, names::STUB) == [ip(names::STUB_IP)])
    })
    .context("expected the stub domain answered again after a further good ConfigMap")?;
    run.finish()
}

#[test]
fn coredns_sigkill_is_restarted_and_answers_again() -> Result<()> {
    let _serial = serial();
    let mut run = Run::start(&[], |_, _| Ok(()))?;
    let old = run.coredns_pid()?;
    kill(Pid::from_raw(old), Signal::SIGKILL)?;
    let killed = Instant::now();
    wait_until(
        "the killed CoreDNS to be gone",
        Duration::from_secs(5),
        || Ok(!alive(old)),
    )?;
    run.wait_answering(addrs::LINK_LOCAL, Duration::from_secs(5))
        .with_context(|| {
            format!(
                "expected CoreDNS restarted and answering within 5 s of its SIGKILL (target \
                 500 ms)\nagent log:\n{}",
                run.log()
            )
        })?;
    let took = killed.elapsed();
    figure("CoreDNS SIGKILL → answering again", took);
    if took > Duration::from_millis(500) {
        eprintln!("note: above the 500 ms target");
    }
    run.assert_agent_running("CoreDNS was killed")?;
    wait_until(
        "a new CoreDNS pid in the pidfile",
        Duration::from_secs(5),
        || {
            let pid = run.coredns_pid()?;
            Ok(pid != old && alive(pid))
        },
    )
    .context("expected the restarted CoreDNS to rewrite the pidfile")?;
    run.wait_answering(addrs::KUBE_DNS_SVC, Duration::from_secs(2))?;
    assert_eq!(
        run.rule_count()?,
        24,
        "expected the rules to stay through a quick restart"
    );
    run.wait_metric(
        r#"coredns_nodecache_coredns_restarts_total{reason="exited"}"#,
        |v| v >= 1.0,
        "≥ 1 after CoreDNS was SIGKILLed",
    )?;
    run.finish()
}

/// Makes sure a CoreDNS the test stopped does not linger, whatever the agent did with it.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        if is_coredns(self.0) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
}

#[test]
fn coredns_sigstop_is_detected_and_replaced() -> Result<()> {
    let _serial = serial();
    let mut run = Run::start(&[], |_, _| Ok(()))?;
    let old = run.coredns_pid()?;
    let _resume = Resume(old);
    kill(Pid::from_raw(old), Signal::SIGSTOP)?;
    let stopped = Instant::now();
    wait_until(
        "a hung CoreDNS to be replaced",
        Duration::from_secs(10),
        || {
            Ok(
                run.a(addrs::LINK_LOCAL, names::CLUSTER) == [ip(names::CLUSTER_IP)]
                    && run.coredns_pid().is_ok_and(|pid| pid != old),
            )
        },
    )
    .with_context(|| {
        format!(
            "expected the agent's probes to find CoreDNS hung (SIGSTOP) and replace it, \
             answering again within 10 s\nagent log:\n{}",
            run.log()
        )
    })?;
    figure("CoreDNS SIGSTOP → answering again", stopped.elapsed());
    wait_until(
        "the hung CoreDNS to be killed",
        Duration::from_secs(5),
        || Ok(!alive(old)),
    )
    .with_context(|| format!("expected the agent to kill the hung CoreDNS (pid {old})"))?;
    run.assert_agent_running("CoreDNS hung")?;
    run.wait_metric(
        r#"coredns_nodecache_coredns_restarts_total{reason="hung"}"#,
        |v| v >= 1.0,
        "≥ 1 after CoreDNS was SIGSTOPped",
    )?;
    run.wait_answering(addrs::KUBE_DNS_SVC, Duration::from_secs(2))?;
    run.finish()
}

#[test]
fn crash_loop_fails_open_to_kube_dns_and_recovers() -> Result<()> {
    let _serial = serial();
    let mut run = Run::start(&[], |_, _| Ok(()))?;
    let good = addon_corefile_iptables_mode()?;
    // A template CoreDNS refuses at startup (a reload keeps the old config; a start fails).
    let rendered_at = modified(&run.files.conf);
    std::fs::write(
        &run.files.base,
        format!("{good}\nbroken.test:53 {{\n    nosuchplugin\n}}\n"),
    )?;
    // Polled with stat only: reading a file in a watched directory is itself a file event.
    wait_until(
        "the broken Corefile to be rendered",
        Duration::from_secs(5),
        || {
            Ok(modified(&run.files.conf) != rendered_at
                && read(&run.files.conf).contains("nosuchplugin"))
        },
    )
    .with_context(|| {
        format!(
            "expected the agent to render the changed base Corefile\n{}",
            run.log()
        )
    })?;
    run.wait_answering(addrs::LINK_LOCAL, Duration::from_secs(2))
        .context("expected the running CoreDNS to keep its config after a bad reload")?;

    kill(Pid::from_raw(run.coredns_pid()?), Signal::SIGKILL)?;
    let killed = Instant::now();
    wait_until("the rules to be withdrawn", Duration::from_secs(10), || {
        Ok(run.rule_count()? == 0)
    })
    .with_context(|| {
        format!(
            "expected the agent to fail open (remove its 24 rules) within 10 s (target ~3 s) \
             while every CoreDNS restart fails\nagent log:\n{}",
            run.log()
        )
    })?;
    figure("crash loop → fail open (rules removed)", killed.elapsed());
    run.assert_agent_running("a crash loop")?;
    run.wait_metric(
        "coredns_nodecache_fail_open",
        |v| v == 1.0,
        "= 1 while failed open",
    )?;
    eprintln!(
        "interface while failed open: {:?}",
        run.topo.node_link_addresses(INTERFACE)?
    );

    // Pods reach kube-dns through kube-proxy's DNAT again.
    let dnat_before = run.topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?;
    run.wait_answering(addrs::KUBE_DNS_SVC, Duration::from_secs(5))
        .context(
            "expected a pod's query to the kube-dns IP answered by kube-dns while failed open",
        )?;
    let dnat_after = run.topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?;
    assert!(
        dnat_after > dnat_before,
        "expected the answer to come through kube-proxy's DNAT (packets {dnat_before} → {dnat_after})"
    );

    // A good template again: the next restart succeeds, the rules come back.
    std::fs::write(&run.files.base, &good)?;
    let restored = Instant::now();
    wait_until("the rules to be back", Duration::from_secs(20), || {
        Ok(run.rule_count()? == 24)
    })
    .with_context(|| {
        format!(
            "expected CoreDNS to start with the restored base Corefile and the 24 rules back \
             within 20 s\nagent log:\n{}",
            run.log()
        )
    })?;
    figure("good base Corefile → rules back", restored.elapsed());
    run.wait_metric(
        "coredns_nodecache_fail_open",
        |v| v == 0.0,
        "= 0 after recovery",
    )?;
    run.wait_answering(addrs::KUBE_DNS_SVC, Duration::from_secs(5))?;
    let dnat = run.topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?;
    for _ in 0..5 {
        assert_eq!(
            run.a(addrs::KUBE_DNS_SVC, names::CLUSTER),
            [ip(names::CLUSTER_IP)]
        );
    }
    assert_eq!(
        run.topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?,
        dnat,
        "expected pods' queries to the kube-dns IP answered by node-cache again, not DNATed"
    );
    assert_eq!(
        run.topo.rules_as_saved()?,
        GOLDEN_RULES,
        "expected one copy of each rule"
    );
    run.finish()
}

#[test]
fn flushed_addresses_are_restored_within_a_second() -> Result<()> {
    let _serial = serial();
    let run = Run::start(&["-syncinterval", "1s"], |_, _| Ok(()))?;
    run.topo.node.ip(&["addr", "flush", "dev", INTERFACE])?;
    let flushed = Instant::now();
    wait_until("the addresses to be back", Duration::from_secs(5), || {
        Ok(run.addresses()? == expected_addresses())
    })
    .with_context(|| {
        format!(
            "expected both local IPs back on {INTERFACE} after `ip addr flush`\nagent log:\n{}",
            run.log()
        )
    })?;
    let took = flushed.elapsed();
    figure("address flush → addresses back", took);
    run.wait_answering(addrs::LINK_LOCAL, Duration::from_secs(5))
        .context("expected queries answered again after the address flush")?;
    figure("address flush → answering again", flushed.elapsed());
    assert!(
        took < Duration::from_secs(1),
        "expected the addresses back within 1 s, took {took:?}"
    );
    run.finish()
}

#[test]
fn deleted_interface_is_restored_within_a_second() -> Result<()> {
    let _serial = serial();
    let run = Run::start(&["-syncinterval", "1s"], |_, _| Ok(()))?;
    run.topo.node.ip(&["link", "del", INTERFACE])?;
    let deleted = Instant::now();
    wait_until(
        "the interface and addresses to be back",
        Duration::from_secs(5),
        || Ok(run.addresses()? == expected_addresses()),
    )
    .with_context(|| {
        format!(
            "expected {INTERFACE} and both local IPs back after `ip link del`\nagent log:\n{}",
            run.log()
        )
    })?;
    let took = deleted.elapsed();
    figure("link delete → link and addresses back", took);
    for server in [addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC] {
        run.wait_answering(server, Duration::from_secs(5))
            .with_context(|| format!("expected {server} answered again after the link delete"))?;
    }
    figure("link delete → answering again", deleted.elapsed());
    assert!(
        took < Duration::from_secs(1),
        "expected the link back within 1 s, took {took:?}"
    );
    run.finish()
}

#[test]
fn flushed_rules_are_restored_within_two_sync_intervals() -> Result<()> {
    let _serial = serial();
    let run = Run::start(&["-syncinterval", "1s"], |_, _| Ok(()))?;
    for table in ["raw", "filter"] {
        run.topo.node.exec("iptables", &["-w", "-t", table, "-F"])?;
    }
    let flushed = Instant::now();
    wait_until("the 24 rules to be back", Duration::from_secs(5), || {
        Ok(run.rule_count()? == 24)
    })
    .with_context(|| {
        format!(
            "expected node-cache's 24 rules back after `iptables -F` of raw and filter\n\
             agent log:\n{}",
            run.log()
        )
    })?;
    let took = flushed.elapsed();
    figure("rules flush → 24 rules back", took);
    assert!(
        took < Duration::from_secs(2),
        "expected the rules back within 2 × syncinterval (2 s), took {took:?}"
    );
    assert_eq!(
        run.topo.rules_as_saved()?,
        GOLDEN_RULES,
        "expected one copy of each rule"
    );
    run.wait_answering(addrs::KUBE_DNS_SVC, Duration::from_secs(2))?;
    run.finish()
}
