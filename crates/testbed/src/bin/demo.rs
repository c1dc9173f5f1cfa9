//! `make demo`: node-cache with the addon manifest's flags in front of a real CoreDNS, in a
//! throwaway namespace topology. Shows pod queries answered, the interface and the rules, then
//! SIGTERM and a clean node. Everything it makes is removed on exit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use testbed::agent::{pod_query, start_node_cache, wait_rules, AgentFiles, INTERFACE};
use testbed::topology::names;
use testbed::{addrs, Topology, Transport};

fn main() -> Result<()> {
    let binary = PathBuf::from(
        std::env::var_os("NODE_CACHE_BINARY")
            .context("NODE_CACHE_BINARY is not set (run `make demo`)")?,
    );
    println!(
        "== building the topology: pod, node, kube-dns pod, upstream DNS (network namespaces)"
    );
    let topo = Topology::build()?;
    println!(
        "   pod {} → node; kube-dns pod {} (CoreDNS, behind kube-proxy-style DNAT for {} and {});\n   upstream DNS {} (www.example.com) and a stub-domain server {} (corp.internal)",
        addrs::POD, addrs::KUBE_DNS_POD, addrs::KUBE_DNS_SVC, addrs::KUBE_DNS_UPSTREAM_SVC,
        addrs::UPSTREAM, addrs::STUB_SERVER
    );
    let files = AgentFiles::addon(&topo)?;
    let args = files.args(&topo.coredns);
    println!(
        "\n== starting node-cache in the node namespace:\n   {} {}",
        binary.display(),
        args.join(" ")
    );
    let started = Instant::now();
    let mut agent = start_node_cache(&topo, &binary, &args)?;
    let took = wait_rules(&topo, &mut agent, Duration::from_secs(30))?;
    println!("   rules in place {} ms after start", took.as_millis());

    println!("\n== interface {INTERFACE} in the node namespace");
    println!(
        "{}",
        topo.node
            .ip(&["-br", "addr", "show", "dev", INTERFACE])?
            .trim_end()
    );
    println!("\n== node-cache's rules (iptables-save, raw and filter)");
    for line in topo.node_cache_rule_lines()? {
        println!("   {line}");
    }

    println!("\n== queries from the pod namespace (dig)");
    let dnat_before = topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?;
    let queries = [
        (names::CLUSTER, "A"),
        (names::EXTERNAL, "A"),
        (names::CLUSTER_PTR, "PTR"),
        (names::STUB, "A"),
    ];
    println!(
        "   {:<15} {:<4} {:<38} {:<5} answer",
        "server", "", "name", "type"
    );
    for server in [addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC] {
        for transport in [Transport::Udp, Transport::Tcp] {
            for (name, qtype) in queries {
                let answer = pod_query(&topo, server, name, qtype, transport)
                    .map(|a| a.join(" "))
                    .unwrap_or_else(|e| format!("FAILED: {e}"));
                let t = if transport == Transport::Udp {
                    "udp"
                } else {
                    "tcp"
                };
                println!("   {server:<15} {t:<4} {name:<38} {qtype:<5} {answer}");
            }
        }
    }
    let dnat_after = topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?;
    println!(
        "   kube-proxy DNAT packets for {} during the queries: {} (node-cache answered them all)",
        addrs::KUBE_DNS_SVC,
        dnat_after - dnat_before
    );

    println!("\n== SIGTERM to node-cache");
    let stop = Instant::now();
    agent.signal(Signal::SIGTERM)?;
    let status = agent.wait_exit(Duration::from_secs(30))?;
    println!(
        "   exited ({status}) after {} ms",
        stop.elapsed().as_millis()
    );
    println!(
        "   interface left: {:?}; node-cache rules left: {}",
        topo.node_link_addresses(INTERFACE)?,
        topo.node_cache_rule_lines()?.len()
    );
    println!(
        "\n== node-cache's log (with CoreDNS's)\n{}",
        agent.log().trim_end()
    );
    println!(
        "\n== done in {:.1} s; removing the namespaces",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
