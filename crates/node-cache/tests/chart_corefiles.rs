//! Every Corefile the Helm chart renders (the golden files of `make chart-check`,
//! `crates/addon-manifests/tests/golden/chart/`) is one that the pinned CoreDNS accepts and
//! serves through node-cache: the cache knobs (prefetch, serve_stale), the AAAA filter,
//! `log`, forward options and extra server blocks are real CoreDNS syntax, not only text
//! the chart prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use testbed::agent::{pod_query, start_node_cache};
use testbed::topology::names;
use testbed::{wait_until, workspace_root, Topology, Transport};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
const DEADLINE: Duration = Duration::from_secs(20);
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
    let topo = Topology::build()?;
    let kube_dns = topo.write_kube_dns_configmap(&[])?;
    let goldens = goldens()?;
    assert!(goldens.len() >= 8, "{goldens:?}");
    for golden in goldens {
        let case = golden.file_stem().unwrap().to_string_lossy().into_owned();
        let corefile = std::fs::read_to_string(&golden)?;
        let ips = bind_ips(&corefile).with_context(|| format!("{case}: no bind line"))?;
        let base = topo.write_base_corefile(&corefile)?;
        let args: Vec<String> = [
            "-localip",
            &ips.join(","),
            "-upstreamsvc",
            "kube-dns-upstream",
            "-basecorefile",
            &base.display().to_string(),
            "-conf",
            &topo.path("Corefile").display().to_string(),
            "-kubednscm",
            &kube_dns.display().to_string(),
            "-pidfile",
            &topo.path("node-cache.pid").display().to_string(),
            "-coredns-binary",
            &topo.coredns.display().to_string(),
        ]
        .map(str::to_string)
        .to_vec();
        let mut agent = start_node_cache(&topo, NODE_CACHE.as_ref(), &args)?;
        // The rules go in only once CoreDNS answers: a Corefile CoreDNS refuses never gets there.
        wait_until(&format!("{case}: CoreDNS serving"), DEADLINE, || {
            if let Some(status) = agent.try_status()? {
                anyhow::bail!("node-cache exited ({status})");
            }
            Ok(topo.node_cache_rule_lines()?.len() == RULES_PER_IP * ips.len())
        })
        .with_context(|| format!("{case}:\n{}", agent.log()))?;
        // Names outside the cluster go to the node's resolver unless the case set upstreams.
        if corefile.contains("forward . __PILLAR__UPSTREAM__SERVERS__") {
            let answer = pod_query(&topo, &ips[0], names::EXTERNAL, "A", Transport::Udp)?;
            assert_eq!(answer, [names::EXTERNAL_IP], "{case}:\n{}", agent.log());
        }
        agent.signal(Signal::SIGTERM)?;
        let status = agent.wait_exit(DEADLINE)?;
        assert!(status.success(), "{case}: exit {status}\n{}", agent.log());
        assert!(
            topo.node_cache_rule_lines()?.is_empty(),
            "{case}: rules left"
        );
    }
    Ok(())
}
