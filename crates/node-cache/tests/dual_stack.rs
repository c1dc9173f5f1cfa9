//! Dual-stack in one process, on each packet-filter backend: `-localip` with IPv4 and IPv6
//! addresses; one CoreDNS binds both, the interface holds both, the rules exist per family,
//! and a pod's query over IPv6 to the IPv6 local IP is answered by node-cache.

use anyhow::Result;
use testbed::agent::{addon_corefile_iptables_mode, INTERFACE};
use testbed::fixture::{Node, DEADLINE};
use testbed::topology::names;
use testbed::{addrs, wait_until, Topology, Transport};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");

fn ours(listing: &str) -> usize {
    listing
        .lines()
        .filter(|l| l.contains("NodeLocal DNS Cache"))
        .count()
}

/// Our rules as the node's tools print them: (iptables, ip6tables, nft table present).
fn node_rules(topo: &Topology) -> Result<(usize, usize, bool)> {
    let v4 = ours(&topo.node.exec("iptables-save", &[])?);
    let v6 = ours(&topo.node.exec("ip6tables-save", &[])?);
    let nft = topo.node.exec("nft", &["-j", "list", "tables"])?;
    Ok((v4, v6, nft.contains("\"node-local-dns\"")))
}

fn dual_stack(backend: &str, expect_running: (usize, usize, bool)) -> Result<()> {
    // The addon's template, binding the IPv6 local IP too.
    let base = addon_corefile_iptables_mode()?.replace(
        &format!("bind {} {}", addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC),
        &format!(
            "bind {} {} {}",
            addrs::LINK_LOCAL,
            addrs::KUBE_DNS_SVC,
            addrs::LOCAL6
        ),
    );
    let node = Node::builder(NODE_CACHE).base_corefile(base).build()?;
    let topo = &node.topo;
    let local_ips = format!(
        "{},{},{}",
        addrs::LINK_LOCAL,
        addrs::KUBE_DNS_SVC,
        addrs::LOCAL6
    );
    let mut agent = node
        .agent()
        .local_ips(&local_ips)
        .flags(&[&format!("-firewall-backend={backend}")])
        .spawn()?;
    wait_until("rules of both families", DEADLINE, || {
        Ok(agent.try_status()?.is_some() || node_rules(topo)? == expect_running)
    })?;
    assert!(agent.try_status()?.is_none(), "{}", agent.log());
    assert_eq!(
        topo.node_link_addresses(INTERFACE)?,
        Some(vec![
            addrs::LINK_LOCAL.into(),
            addrs::KUBE_DNS_SVC.into(),
            addrs::LOCAL6.into()
        ])
    );
    for server in [addrs::LOCAL6, addrs::LINK_LOCAL] {
        for transport in [Transport::Udp, Transport::Tcp] {
            let answer = node.query(server, names::CLUSTER, "A", transport)?;
            assert_eq!(
                answer,
                [names::CLUSTER_IP],
                "@{server} {transport:?}\n{}",
                agent.log()
            );
        }
    }
    // SIGTERM, exit 0, and no rules of either family, no nftables table, no interface.
    agent.finish()?;
    assert_eq!(node_rules(topo)?, (0, 0, false), "rules left behind");
    Ok(())
}

#[test]
fn dual_stack_with_iptables_and_ip6tables() -> Result<()> {
    dual_stack("iptables", (24, 12, false))
}

#[test]
fn dual_stack_with_one_nftables_table() -> Result<()> {
    dual_stack("nftables", (0, 0, true))
}
