//! node-cache end to end: the real binary in a node namespace of a throwaway topology, a real
//! CoreDNS child, real netlink and iptables; queries from a pod namespace with dig.

use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::Signal;
use testbed::agent::{
    coredns_host_pid, node_http_get, pod_query, start_node_cache, wait_rules, AgentFiles, INTERFACE,
};
use testbed::topology::names;
use testbed::{addrs, wait_until, Topology, Transport};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
const GOLDEN_RULES: &str =
    include_str!("../../netsetup/tests/golden/rules-169.254.20.10_10.96.0.10.iptables-save");
const DEADLINE: Duration = Duration::from_secs(20);

fn assert_node_clean(topo: &Topology) -> Result<()> {
    assert_eq!(
        topo.node_link_addresses(INTERFACE)?,
        None,
        "interface left behind"
    );
    let left = topo.node_cache_rule_lines()?;
    assert!(left.is_empty(), "rules left behind: {left:#?}");
    Ok(())
}

/// A topology with node-cache running on the addon's flags (plus `extra`), its rules in place.
fn running_agent(extra: &[&str]) -> Result<(Topology, AgentFiles, testbed::Process)> {
    let topo = Topology::build()?;
    let files = AgentFiles::addon(&topo)?;
    let mut args = files.args(&topo.coredns);
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut agent = start_node_cache(&topo, NODE_CACHE.as_ref(), &args)?;
    wait_rules(&topo, &mut agent, DEADLINE)?;
    Ok((topo, files, agent))
}

#[test]
fn serves_pod_dns_through_both_local_ips_and_tears_down() -> Result<()> {
    let (topo, _files, mut agent) = running_agent(&[])?;

    // Exactly upstream's rules, byte for byte, so either agent removes the other's.
    assert_eq!(topo.rules_as_saved()?, GOLDEN_RULES);
    assert_eq!(
        topo.node_link_addresses(INTERFACE)?,
        Some(vec![addrs::LINK_LOCAL.into(), addrs::KUBE_DNS_SVC.into()])
    );

    let dnat_before = topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?;
    for server in [addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC] {
        for transport in [Transport::Udp, Transport::Tcp] {
            let q = |name: &str, qtype: &str| pod_query(&topo, server, name, qtype, transport);
            let ctx = format!("@{server} {transport:?}\n{}", agent.log());
            assert_eq!(
                q(names::CLUSTER, "A")?,
                [names::CLUSTER_IP],
                "cluster name {ctx}"
            );
            assert_eq!(
                q(names::EXTERNAL, "A")?,
                [names::EXTERNAL_IP],
                "external name {ctx}"
            );
            assert_eq!(
                q(names::CLUSTER_PTR, "PTR")?,
                [format!("{}.", names::CLUSTER)],
                "PTR {ctx}"
            );
            assert_eq!(q(names::STUB, "A")?, [names::STUB_IP], "stub domain {ctx}");
        }
    }
    // Answered by node-cache: kube-proxy's DNAT for the kube-dns IP never saw a pod's query.
    assert_eq!(
        topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?,
        dnat_before
    );

    let metrics = node_http_get(&topo, "http://127.0.0.1:9353/metrics")?;
    for label in [
        "iptables",
        "iptables_lock",
        "interface_add",
        "interface_check",
        "configmap",
    ] {
        let line = format!("coredns_nodecache_setup_errors_total{{errortype=\"{label}\"}} 0");
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }

    agent.signal(Signal::SIGTERM)?;
    let status = agent.wait_exit(DEADLINE)?;
    assert!(status.success(), "exit {status}:\n{}", agent.log());
    assert_node_clean(&topo)?;
    // With node-cache gone, the pod's queries to the kube-dns IP reach kube-dns again.
    assert_eq!(
        pod_query(
            &topo,
            addrs::KUBE_DNS_SVC,
            names::CLUSTER,
            "A",
            Transport::Udp
        )?,
        [names::CLUSTER_IP]
    );
    assert!(topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)? > dnat_before);
    Ok(())
}

#[test]
fn skipteardown_leaves_interface_and_rules() -> Result<()> {
    let (topo, _files, mut agent) = running_agent(&["-skipteardown"])?;
    agent.signal(Signal::SIGINT)?;
    assert!(agent.wait_exit(DEADLINE)?.success(), "{}", agent.log());
    assert_eq!(topo.node_cache_rule_lines()?.len(), 24);
    assert_eq!(
        topo.node_link_addresses(INTERFACE)?,
        Some(vec![addrs::LINK_LOCAL.into(), addrs::KUBE_DNS_SVC.into()])
    );
    Ok(())
}

#[test]
fn restart_after_sigkill_adopts_leftovers_without_duplicates() -> Result<()> {
    let topo = Topology::build()?;
    let files = AgentFiles::addon(&topo)?;
    let args = files.args(&topo.coredns);
    let mut first = start_node_cache(&topo, NODE_CACHE.as_ref(), &args)?;
    wait_rules(&topo, &mut first, DEADLINE)?;
    first.signal(Signal::SIGKILL)?;
    first.wait_exit(DEADLINE)?;
    // Its CoreDNS dies with it (parent-death signal), freeing nothing we need but proving no
    // unsupervised server is left on the node.
    wait_until("the orphaned CoreDNS to die", DEADLINE, || {
        Ok(pod_query(
            &topo,
            addrs::LINK_LOCAL,
            names::CLUSTER,
            "A",
            Transport::Udp,
        )
        .is_err())
    })?;
    assert_eq!(
        topo.node_cache_rule_lines()?.len(),
        24,
        "SIGKILL leaves rules behind"
    );

    let mut second = start_node_cache(&topo, NODE_CACHE.as_ref(), &args)?;
    wait_until("the restarted agent to answer", DEADLINE, || {
        Ok(pod_query(
            &topo,
            addrs::LINK_LOCAL,
            names::CLUSTER,
            "A",
            Transport::Udp,
        )? == [names::CLUSTER_IP])
    })?;
    assert_eq!(
        topo.rules_as_saved()?,
        GOLDEN_RULES,
        "one copy of each rule"
    );
    second.signal(Signal::SIGTERM)?;
    assert!(second.wait_exit(DEADLINE)?.success(), "{}", second.log());
    assert_node_clean(&topo)
}

#[test]
fn coredns_killed_is_restarted_and_the_rules_stay() -> Result<()> {
    let (topo, files, mut agent) = running_agent(&[])?;
    let mut coredns_pid = 0;
    wait_until("CoreDNS's pidfile", DEADLINE, || {
        coredns_pid = coredns_host_pid(&agent, &files.pidfile)? as i32;
        Ok(true)
    })?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(coredns_pid), Signal::SIGKILL)?;
    let took = wait_until("a restarted CoreDNS to answer", DEADLINE, || {
        let answer = pod_query(
            &topo,
            addrs::LINK_LOCAL,
            names::CLUSTER,
            "A",
            Transport::Udp,
        );
        let new_pid = coredns_host_pid(&agent, &files.pidfile)? as i32;
        Ok(new_pid != coredns_pid && answer.is_ok_and(|a| a == [names::CLUSTER_IP]))
    })?;
    eprintln!(
        "figure: coredns SIGKILL -> answering = {} ms",
        took.as_millis()
    );
    assert!(
        agent.try_status()?.is_none(),
        "the agent must keep running:\n{}",
        agent.log()
    );
    assert_eq!(topo.rules_as_saved()?, GOLDEN_RULES);
    let metrics = node_http_get(&topo, "http://127.0.0.1:9353/metrics")?;
    assert!(
        metrics.contains("coredns_nodecache_coredns_restarts_total{reason=\"exited\"} 1"),
        "{metrics}"
    );
    agent.signal(Signal::SIGTERM)?;
    assert!(agent.wait_exit(DEADLINE)?.success(), "{}", agent.log());
    assert_node_clean(&topo)
}

/// The readiness probe as the kubelet runs it: `node-cache -readyfile F -checkready` inside the
/// pod (its PID and mount namespaces). Ready once the rules are in place; not ready once a
/// SIGTERM arrives; a file left behind names a process that is gone.
fn check_ready(agent: &testbed::Process, file: &std::path::Path) -> Result<bool> {
    let status = std::process::Command::new("nsenter")
        .args([
            "--target",
            &agent.pid().to_string(),
            "--pid",
            "--mount",
            "--",
        ])
        .arg(NODE_CACHE)
        .arg("-readyfile")
        .arg(file)
        .arg("-checkready")
        .stdout(std::process::Stdio::null())
        .status()?;
    Ok(status.success())
}

#[test]
fn ready_only_while_serving_with_rules() -> Result<()> {
    let topo = Topology::build()?;
    let files = AgentFiles::addon(&topo)?;
    let ready = topo.path("ready");
    // A file left by an earlier container of the pod must not count.
    std::fs::write(&ready, "1 1\n")?;
    let mut args = files.args(&topo.coredns);
    args.extend(["-readyfile".to_string(), ready.display().to_string()]);
    let mut agent = start_node_cache(&topo, NODE_CACHE.as_ref(), &args)?;
    wait_until("the ready file", DEADLINE, || check_ready(&agent, &ready))?;
    assert_eq!(
        topo.node_cache_rule_lines()?.len(),
        24,
        "ready means the rules are in place"
    );
    let answer = pod_query(
        &topo,
        addrs::LINK_LOCAL,
        names::CLUSTER,
        "A",
        Transport::Udp,
    )?;
    assert_eq!(answer, [names::CLUSTER_IP]);
    agent.signal(Signal::SIGTERM)?;
    assert!(agent.wait_exit(DEADLINE)?.success(), "{}", agent.log());
    assert!(!ready.exists(), "not ready once stopping");
    Ok(())
}
