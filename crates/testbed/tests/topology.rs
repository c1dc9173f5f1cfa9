//! The topology itself works: kube-dns and the upstream answer through the node, and the
//! kube-proxy DNAT carries a pod's query to the kube-dns Service IP.

use testbed::topology::names;
use testbed::{addrs, Dig, Topology, Transport};

#[test]
fn pod_reaches_kube_dns_through_the_service_dnat() {
    let topo = Topology::build().expect("topology");
    let before = topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC).unwrap();
    let answer = Dig {
        server: addrs::KUBE_DNS_SVC,
        name: names::CLUSTER,
        qtype: "A",
        transport: Transport::Udp,
    }
    .run(&topo.pod)
    .unwrap();
    assert_eq!(answer, vec![names::CLUSTER_IP.to_string()]);
    assert!(topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC).unwrap() > before);
    let name = topo.node.name().to_string();
    drop(topo);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&name),
        "namespace {name} left behind"
    );
}
