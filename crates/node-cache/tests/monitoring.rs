//! `manifests/monitoring/`: every metric the Grafana dashboard and the alert rules query is
//! one that a running node-cache (on `-metrics-listen-address`) or its CoreDNS (on the
//! Corefile's `prometheus` address) really exports, checked by scraping both in a namespace
//! topology after pod traffic of every kind the dashboard shows.

use std::collections::BTreeSet;

use addon_manifests::promql::{
    dashboard_queries, exposed_names, metric_names, rule_queries, Query,
};
use anyhow::Result;
use testbed::agent::node_http_get;
use testbed::fixture::Node;
use testbed::topology::names;
use testbed::{addrs, workspace_root, Transport};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");

/// Series Prometheus makes itself for every target; no exporter has them.
const FROM_PROMETHEUS: &[&str] = &["up"];

fn monitoring_file(name: &str) -> String {
    let path = workspace_root().join("manifests/monitoring").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Queries naming a metric that `exported` lacks, as `location: name in expr` lines.
fn missing(queries: &[Query], exported: &BTreeSet<String>) -> Vec<String> {
    queries
        .iter()
        .flat_map(|q| {
            metric_names(&q.expr)
                .into_iter()
                .filter(|n| !exported.contains(n) && !FROM_PROMETHEUS.contains(&n.as_str()))
                .map(move |n| format!("{}: {n} in {}", q.location, q.expr))
        })
        .collect()
}

#[test]
fn every_dashboard_and_alert_query_names_an_exported_metric() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let mut agent = node.agent().start()?;

    // Traffic of every kind the dashboard shows: cache misses then hits, each zone, both
    // transports, an NXDOMAIN, forwards to kube-dns and to the upstream.
    for transport in [Transport::Udp, Transport::Tcp] {
        for _ in 0..2 {
            for (name, qtype) in [
                (names::CLUSTER, "A"),
                (names::EXTERNAL, "A"),
                (names::CLUSTER_PTR, "PTR"),
                (names::STUB, "A"),
                ("missing.default.svc.cluster.local", "A"),
                (names::EXTERNAL, "AAAA"),
            ] {
                node.query(addrs::LINK_LOCAL, name, qtype, transport)?;
            }
        }
    }

    let agent_metrics = agent.metrics()?;
    let coredns_metrics = node_http_get(&node.topo, "http://127.0.0.1:9253/metrics")?;
    let mut exported = exposed_names(&agent_metrics);
    exported.extend(exposed_names(&coredns_metrics));

    let dashboard_queries = dashboard_queries(&monitoring_file("node-local-dns.dashboard.json"))?;
    assert!(dashboard_queries.len() >= 10, "{dashboard_queries:#?}");
    let rule_queries = rule_queries(&monitoring_file("node-local-dns.rules.yaml"))?;
    assert!(rule_queries.len() >= 5, "{rule_queries:#?}");
    let bad: Vec<String> = missing(&dashboard_queries, &exported)
        .into_iter()
        .chain(missing(&rule_queries, &exported))
        .collect();
    assert!(
        bad.is_empty(),
        "queries naming metrics nobody exports:\n{}\nexported: {exported:?}",
        bad.join("\n")
    );

    // Everything the agent exports is on the dashboard and behind some alert.
    let agent_families: BTreeSet<String> = agent_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("coredns_nodecache_"))
        .map(str::to_string)
        .collect();
    assert!(agent_families.len() >= 4, "{agent_metrics}");
    for (what, queries) in [("dashboard", &dashboard_queries), ("alerts", &rule_queries)] {
        let queried: BTreeSet<String> =
            queries.iter().flat_map(|q| metric_names(&q.expr)).collect();
        for family in &agent_families {
            assert!(
                queried.iter().any(|n| n == family
                    || n.strip_prefix(family.as_str())
                        .is_some_and(|s| s == "_total")),
                "the {what} never query {family}"
            );
        }
    }

    agent.finish()
}
