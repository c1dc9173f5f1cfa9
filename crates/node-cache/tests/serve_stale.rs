//! Serve stale (issue 21): the shipped Corefile's cache lines keep a warmed cluster name
//! answering after kube-dns stops answering, past its TTL, while a name never seen fails fast
//! with SERVFAIL. Real node-cache, real CoreDNS for node-cache and for kube-dns, in the
//! throwaway topology's namespaces; kube-dns "scaled to 0" is its namespace refusing port 53, as
//! kube-proxy rejects a Service without endpoints.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use testbed::agent::addon_corefile_iptables_mode;
use testbed::fixture::{Node, DEADLINE};
use testbed::topology::names;
use testbed::{addrs, wait_until};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
/// The cluster domain's TTL cap for this test (the template's is 30 s), so "past the TTL"
/// takes seconds; the serve-stale and prefetch lines are the shipped ones.
const TTL: Duration = Duration::from_secs(2);
const SERVFAIL: u8 = 2;

fn kube_dns_refuses(node: &Node, op: &str) -> Result<()> {
    let ns = &node.topo.kube_dns_ns;
    ns.exec(
        "iptables",
        &[
            op,
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            "53",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;
    ns.exec(
        "iptables",
        &[op, "INPUT", "-p", "udp", "--dport", "53", "-j", "REJECT"],
    )?;
    Ok(())
}

#[test]
fn a_warmed_name_outlives_kube_dns_and_an_unseen_one_fails_fast() -> Result<()> {
    let shipped = addon_corefile_iptables_mode()?;
    ensure!(
        shipped.contains("serve_stale 1h verify 1s 30s 30s"),
        "the template changed"
    );
    let base = shipped.replacen("success 9984 30", "success 9984 2 1", 1);
    let node = Node::builder(NODE_CACHE).base_corefile(base).build()?;
    let agent = node.agent().start()?;
    let warm = || node.a(addrs::KUBE_DNS_SVC, names::CLUSTER) == [names::CLUSTER_IP];
    wait_until("the cluster name answered (warm)", DEADLINE, || Ok(warm()))?;

    kube_dns_refuses(&node, "-A")?;
    let down = Instant::now();
    wait_until("kube-dns to refuse", DEADLINE, || {
        Ok(node.probe(addrs::KUBE_DNS_POD, names::CLUSTER).is_err())
    })?;
    wait_until("the warmed entry to expire", TTL * 3, || {
        Ok(down.elapsed() >= TTL + Duration::from_secs(1))
    })?;

    // Two more TTLs of queries, every one answered from the stale entry.
    let (mut sent, mut failed) = (0u32, 0u32);
    while down.elapsed() < TTL * 3 + Duration::from_secs(1) {
        sent += 1;
        if !warm() {
            failed += 1;
        }
    }
    let unseen = "never-seen.default.svc.cluster.local";
    let asked = Instant::now();
    let reply = node.probe(addrs::KUBE_DNS_SVC, unseen)?;
    let took = asked.elapsed();
    eprintln!(
        "figure: kube-dns down, past the TTL: warmed name {failed} failed of {sent}; unseen \
         name rcode {} in {} ms",
        reply.rcode,
        took.as_millis()
    );
    ensure!(
        failed == 0,
        "{failed} of {sent} failed\n{}",
        agent.log_tail()
    );
    ensure!(
        reply.rcode == SERVFAIL,
        "unseen name: rcode {}",
        reply.rcode
    );
    ensure!(
        took < Duration::from_millis(100),
        "unseen name took {took:?}"
    );
    kube_dns_refuses(&node, "-D")?;
    Ok(())
}
