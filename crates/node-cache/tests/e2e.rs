//! node-cache end to end: the real binary in a node namespace of a throwaway topology, a real
//! CoreDNS child, real netlink and iptables; queries from a pod namespace with dig.

use anyhow::Result;
use nix::sys::signal::Signal;
use node_cache::metrics::{ErrorType, RestartReason};
use testbed::agent::INTERFACE;
use testbed::fixture::{series, AgentRun, Node, DEADLINE};
use testbed::topology::names;
use testbed::{addrs, process, wait_until, Transport};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
const GOLDEN_RULES: &str =
    include_str!("../../netsetup/tests/golden/rules-169.254.20.10_10.96.0.10.iptables-save");

#[test]
fn serves_pod_dns_through_both_local_ips_and_tears_down() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let topo = &node.topo;
    let mut agent = node.agent().start()?;

    // Exactly upstream's rules, byte for byte, so either agent removes the other's.
    assert_eq!(topo.rules_as_saved()?, GOLDEN_RULES);
    assert_eq!(
        topo.node_link_addresses(INTERFACE)?,
        Some(vec![addrs::LINK_LOCAL.into(), addrs::KUBE_DNS_SVC.into()])
    );

    let dnat_before = topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?;
    for server in [addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC] {
        for transport in [Transport::Udp, Transport::Tcp] {
            let q = |name: &str, qtype: &str| node.query(server, name, qtype, transport);
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

    let metrics = agent.metrics()?;
    for t in ErrorType::ALL {
        let series = series::setup_errors(t.label());
        assert_eq!(
            series::sample(&metrics, &series),
            Some(0.0),
            "{series} in\n{metrics}"
        );
    }

    agent.finish()?;
    // With node-cache gone, the pod's queries to the kube-dns IP reach kube-dns again.
    assert_eq!(
        node.query(addrs::KUBE_DNS_SVC, names::CLUSTER, "A", Transport::Udp)?,
        [names::CLUSTER_IP]
    );
    assert!(topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)? > dnat_before);
    Ok(())
}

#[test]
fn skipteardown_leaves_interface_and_rules() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let mut agent = node.agent().flags(&["-skipteardown"]).start()?;
    agent.signal(Signal::SIGINT)?;
    assert!(agent.wait_exit()?.success(), "{}", agent.log());
    assert_eq!(node.rule_count()?, 24);
    assert_eq!(
        node.topo.node_link_addresses(INTERFACE)?,
        Some(vec![addrs::LINK_LOCAL.into(), addrs::KUBE_DNS_SVC.into()])
    );
    Ok(())
}

#[test]
fn restart_after_sigkill_adopts_leftovers_without_duplicates() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let mut first = node.agent().spawn()?;
    first.wait_rules()?;
    first.signal(Signal::SIGKILL)?;
    first.wait_exit()?;
    // Its CoreDNS dies with it (parent-death signal), freeing nothing we need but proving no
    // unsupervised server is left on the node.
    wait_until("the orphaned CoreDNS to die", DEADLINE, || {
        Ok(node
            .query(addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp)
            .is_err())
    })?;
    assert_eq!(node.rule_count()?, 24, "SIGKILL leaves rules behind");

    let mut second = node.agent().spawn()?;
    wait_until("the restarted agent to answer", DEADLINE, || {
        Ok(
            node.query(addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp)?
                == [names::CLUSTER_IP],
        )
    })?;
    assert_eq!(
        node.topo.rules_as_saved()?,
        GOLDEN_RULES,
        "one copy of each rule"
    );
    second.finish()
}

#[test]
fn coredns_killed_is_restarted_and_the_rules_stay() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let mut agent = node.agent().start()?;
    let mut coredns_pid = 0;
    wait_until("CoreDNS's pidfile", DEADLINE, || {
        coredns_pid = agent.coredns_pid()?;
        Ok(true)
    })?;
    process::send(coredns_pid, Signal::SIGKILL)?;
    let took = wait_until("a restarted CoreDNS to answer", DEADLINE, || {
        let answer = node.query(addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp);
        let new_pid = agent.coredns_pid()?;
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
    assert_eq!(node.topo.rules_as_saved()?, GOLDEN_RULES);
    let restarts = series::restarts(RestartReason::Exited.label());
    assert_eq!(agent.metric(&restarts)?, 1.0, "{restarts}");
    agent.finish()
}

/// The readiness probe as the kubelet runs it: `node-cache -readyfile F -checkready` inside the
/// pod (its PID and mount namespaces). Ready once the rules are in place; not ready once a
/// SIGTERM arrives; a file left behind names a process that is gone.
fn check_ready(agent: &AgentRun, file: &std::path::Path) -> Result<bool> {
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
    let node = Node::addon(NODE_CACHE)?;
    let ready = node.topo.path("ready");
    // A file left by an earlier container of the pod must not count.
    std::fs::write(&ready, "1 1\n")?;
    let ready_flag = ready.display().to_string();
    let mut agent = node.agent().flags(&["-readyfile", &ready_flag]).spawn()?;
    wait_until("the ready file", DEADLINE, || check_ready(&agent, &ready))?;
    assert_eq!(node.rule_count()?, 24, "ready means the rules are in place");
    let answer = node.query(addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp)?;
    assert_eq!(answer, [names::CLUSTER_IP]);
    agent.finish()?;
    assert!(!ready.exists(), "not ready once stopping");
    Ok(())
}
