//! The AAAA filter (`templates/aaaa-filter.Corefile`, the chart's `config.noIPv6Lookups`)
//! without the chart: the snippet pasted into the addon's `.:53` block, served by the real
//! node-cache and CoreDNS, asked with dig from the pod namespace. Names outside the cluster
//! domain get NOERROR and no AAAA record; their A records, and the cluster domain's AAAA
//! records, come through as before.
//!
//! The topology's kube-dns and upstream know no AAAA records, so an empty answer would prove
//! nothing: a dual-stack server of this test's own ("world", in the upstream namespace) holds
//! A and AAAA records for a cluster name and an external name, and node-cache forwards both
//! the cluster domain (as the upstream Service) and everything else (as the kube-dns
//! ConfigMap's upstreamNameservers) to it.

use anyhow::{bail, Context, Result};
use testbed::agent::addon_corefile_iptables_mode;
use testbed::fixture::{Node, DEADLINE};
use testbed::topology::names;
use testbed::{addrs, wait_until, workspace_root, Netns, Process};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");

const WORLD: &str = "10.244.2.4";
const CLUSTER_AAAA: &str = "fd00:96::1";
const EXTERNAL_AAAA: &str = "2001:db8::80";

fn world_corefile() -> String {
    format!(
        ".:53 {{
    bind {WORLD}
    errors
    hosts {{
        {cluster_ip} {cluster}
        {CLUSTER_AAAA} {cluster}
        {external_ip} {external}
        {EXTERNAL_AAAA} {external}
        ttl 30
    }}
}}
",
        cluster_ip = names::CLUSTER_IP,
        cluster = names::CLUSTER,
        external_ip = names::EXTERNAL_IP,
        external = names::EXTERNAL,
    )
}

/// The snippet as documented, comments dropped.
fn snippet() -> Result<String> {
    let text = std::fs::read_to_string(workspace_root().join("templates/aaaa-filter.Corefile"))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect())
}

/// The addon's template (iptables mode) with the snippet at the end of its `.:53` block, where
/// the documentation tells operators to paste it.
fn filtered_template() -> Result<String> {
    let base = addon_corefile_iptables_mode()?;
    let start = base.find("\n.:53 {\n").context("no .:53 block")?;
    // The addon closes a server block with an indented `}` as its last line.
    let close = base[start..]
        .rfind("    }\n")
        .map(|i| start + i)
        .context("no end of the .:53 block")?;
    Ok(format!(
        "{}{}{}",
        &base[..close],
        snippet()?,
        &base[close..]
    ))
}

/// One dig answer: the response code and the answer records' data.
#[derive(Debug, PartialEq)]
struct Answer {
    rcode: String,
    data: Vec<String>,
}

fn dig(ns: &Netns, server: &str, name: &str, qtype: &str, tcp: bool) -> Result<Answer> {
    let at = format!("@{server}");
    let mut args = vec![
        at.as_str(),
        name,
        qtype,
        "+noall",
        "+comments",
        "+answer",
        "+time=1",
        "+tries=1",
    ];
    if tcp {
        args.push("+tcp");
    }
    let out = ns.exec("dig", &args)?;
    let Some(rcode) = out.lines().find_map(|l| {
        l.split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .map(str::to_string)
    }) else {
        bail!("dig {}: no response\n{out}", args.join(" "));
    };
    let data = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect();
    Ok(Answer { rcode, data })
}

fn noerror(data: &[&str]) -> Answer {
    Answer {
        rcode: "NOERROR".into(),
        data: data.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn aaaa_for_names_outside_the_cluster_domain_is_answered_empty() -> Result<()> {
    // The operator's files: the addon template with the snippet, and the kube-dns ConfigMap
    // sending names outside the cluster to the world server.
    let node = Node::builder(NODE_CACHE)
        .base_corefile(filtered_template()?)
        .kube_dns(&[("upstreamNameservers", &format!(r#"["{WORLD}"]"#))])
        .build()?;
    let topo = &node.topo;
    topo.upstream_ns
        .ip(&["addr", "add", &format!("{WORLD}/24"), "dev", "eth0"])?;
    let world_conf = topo.path("world.Corefile");
    std::fs::write(&world_conf, world_corefile())?;
    let mut cmd = topo.upstream_ns.command(&topo.coredns);
    cmd.arg("-conf").arg(&world_conf);
    let _world = Process::spawn("world", cmd, &topo.path("world.log"))?;
    wait_until("the world server to answer", DEADLINE, || {
        Ok(
            dig(&topo.upstream_ns, WORLD, names::EXTERNAL, "AAAA", false)?
                == noerror(&[EXTERNAL_AAAA]),
        )
    })?;

    let mut agent = node
        .agent()
        .upstream_svc("world")
        .env("WORLD_SERVICE_HOST", WORLD)
        .spawn()?;
    agent.wait_rules()?;
    let rendered = std::fs::read_to_string(&node.files.conf)?;
    assert!(
        rendered.contains("template ANY AAAA"),
        "the rendered Corefile lost the snippet:\n{rendered}"
    );

    for server in [addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC] {
        for tcp in [false, true] {
            let ctx = format!("@{server} tcp={tcp}\n{}", agent.log());
            let q = |name: &str, qtype: &str| dig(&topo.pod, server, name, qtype, tcp);
            assert_eq!(q(names::EXTERNAL, "AAAA")?, noerror(&[]), "{ctx}");
            assert_eq!(
                q(names::EXTERNAL, "A")?,
                noerror(&[names::EXTERNAL_IP]),
                "{ctx}"
            );
            assert_eq!(
                q(names::CLUSTER, "AAAA")?,
                noerror(&[CLUSTER_AAAA]),
                "{ctx}"
            );
            assert_eq!(
                q(names::CLUSTER, "A")?,
                noerror(&[names::CLUSTER_IP]),
                "{ctx}"
            );
        }
    }

    // Without the snippet the same path does carry the external AAAA record: it is the
    // filter that removed it (node-cache reloads CoreDNS on the template's change).
    std::fs::write(
        topo.path("Corefile.base.new"),
        addon_corefile_iptables_mode()?,
    )?;
    std::fs::rename(topo.path("Corefile.base.new"), &node.files.base)?;
    wait_until(
        "the external AAAA record without the filter",
        DEADLINE,
        || {
            Ok(
                dig(&topo.pod, addrs::LINK_LOCAL, names::EXTERNAL, "AAAA", false)?
                    == noerror(&[EXTERNAL_AAAA]),
            )
        },
    )
    .with_context(|| agent.log())?;

    agent.finish()
}
