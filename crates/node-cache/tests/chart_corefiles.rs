//! Every Corefile the Helm chart renders (the golden files of `make chart-check`,
//! `crates/addon-manifests/tests/golden/chart/`) is one that the pinned CoreDNS accepts and
//! serves through node-cache: the cache knobs (prefetch, serve_stale), the AAAA filter,
//! `log`, forward options and extra server blocks are real CoreDNS syntax, not only text
//! the chart prints.

use std::path::PathBuf;

use anyhow::{Context, Result};
use testbed::fixture::{Node, DEADLINE};
use testbed::topology::names;
use testbed::{wait_until, workspace_root, Transport};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
/// node-cache's rules per local IP (SPEC §3).
const RULES_PER_IP: usize = 12;

fn goldens() -> Result<Vec<PathBuf>> {
    let dir = workspace_root().join("crates/addon-manifests/tests/golden/chart");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "Corefile"));
    files.sort();
    Ok(files)
}

/// The addresses the Corefile's first `bind` line names: what the chart passes as -localip.
fn bind_ips(corefile: &str) -> Option<Vec<String>> {
    corefile.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("bind")).then(|| words.map(str::to_string).collect())
    })
}

#[test]
fn coredns_serves_every_corefile_the_chart_renders() -> Result<()> {
    let node = Node::builder(NODE_CACHE).kube_dns(&[]).build()?;
    let goldens = goldens()?;
    assert!(goldens.len() >= 8, "{goldens:?}");
    for golden in goldens {
        let case = golden.file_stem().unwrap().to_string_lossy().into_owned();
        let corefile = std::fs::read_to_string(&golden)?;
        let ips = bind_ips(&corefile).with_context(|| format!("{case}: no bind line"))?;
        node.topo.write_base_corefile(&corefile)?;
        let mut agent = node.agent().local_ips(&ips.join(",")).spawn()?;
        // The rules go in only once CoreDNS answers: a Corefile CoreDNS refuses never gets there.
        wait_until(&format!("{case}: CoreDNS serving"), DEADLINE, || {
            if let Some(status) = agent.try_status()? {
                anyhow::bail!("node-cache exited ({status})");
            }
            Ok(node.rule_count()? == RULES_PER_IP * ips.len())
        })
        .with_context(|| format!("{case}:\n{}", agent.log()))?;
        // Names outside the cluster go to the node's resolver unless the case set upstreams.
        if corefile.contains("forward . __PILLAR__UPSTREAM__SERVERS__") {
            let answer = node.query(&ips[0], names::EXTERNAL, "A", Transport::Udp)?;
            assert_eq!(answer, [names::EXTERNAL_IP], "{case}:\n{}", agent.log());
        }
        agent.finish().with_context(|| case.clone())?;
    }
    Ok(())
}
