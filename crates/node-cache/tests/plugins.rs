//! CoreDNS's plugin set seen from outside (issue 13): `-plugins` lists what the binary has, and
//! a template naming a plugin outside it is refused with one line naming the plugin and the
//! template's line: at start before anything is set up or started, on a change while the last
//! good Corefile keeps serving. The real binary in a throwaway topology, a real CoreDNS.

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use testbed::agent::{
    addon_corefile_iptables_mode, node_http_get, start_node_cache, wait_rules, AgentFiles,
    INTERFACE,
};
use testbed::topology::names;
use testbed::{addrs, coredns_binary, wait_until, Querier, Topology};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
const DEADLINE: Duration = Duration::from_secs(20);
const METRICS: &str = "http://127.0.0.1:9353/metrics";
const CONFIGMAP_ERRORS: &str = r#"coredns_nodecache_setup_errors_total{errortype="configmap"}"#;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A plugin the CoreDNS under test lacks: `kubernetes` for node-cache's build; a name no
/// CoreDNS has if the binary is a full release build.
fn absent_plugin() -> Result<String> {
    let plugins = coredns_child::version::coredns_plugins(&coredns_binary()?)?;
    Ok(["kubernetes", "etcd", "no_such_plugin"]
        .into_iter()
        .find(|name| !plugins.contains(name))
        .expect("no CoreDNS has no_such_plugin")
        .to_owned())
}

/// The addon's template with `plugin` added to the cluster domain's block; the line it is on.
fn template_naming(plugin: &str) -> Result<(String, usize)> {
    let addon = addon_corefile_iptables_mode()?;
    let mut lines: Vec<String> = addon.lines().map(str::to_owned).collect();
    let errors = lines
        .iter()
        .position(|l| l.trim() == "errors")
        .context("the addon template has an errors line")?;
    lines.insert(errors + 1, format!("    {plugin} cluster.local"));
    Ok((lines.join("\n") + "\n", errors + 2))
}

/// The agent's log lines that name the refusal.
fn refusals(log: &str, plugin: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("plugin \"{plugin}\" is not in this CoreDNS build")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn plugins_flag_lists_the_binarys_plugins() -> Result<()> {
    let coredns = coredns_binary()?;
    let out = Command::new(NODE_CACHE)
        .arg("-plugins")
        .arg("-coredns-binary")
        .arg(&coredns)
        .output()?;
    ensure!(out.status.success(), "{out:?}");
    let listed = corefile::PluginSet::from_listing(&String::from_utf8_lossy(&out.stdout));
    for needed in [
        "bind",
        "cache",
        "errors",
        "forward",
        "health",
        "prometheus",
        "template",
    ] {
        ensure!(listed.contains(needed), "-plugins lacks {needed}: {out:?}");
    }
    assert_eq!(
        listed,
        coredns_child::version::coredns_plugins(&coredns)?,
        "-plugins is the binary's own list"
    );
    Ok(())
}

#[test]
fn unknown_plugin_at_start_is_refused_before_anything_is_set_up() -> Result<()> {
    let _serial = serial();
    let plugin = absent_plugin()?;
    let topo = Topology::build()?;
    let files = AgentFiles::addon(&topo)?;
    let (template, line) = template_naming(&plugin)?;
    std::fs::write(&files.base, &template)?;

    let mut agent = start_node_cache(&topo, NODE_CACHE.as_ref(), &files.args(&topo.coredns))?;
    let status = agent.wait_exit(DEADLINE)?;
    let log = agent.log();
    ensure!(
        !status.success(),
        "expected a failing exit, got {status}:\n{log}"
    );
    let refused = refusals(&log, &plugin);
    ensure!(
        refused.len() == 1,
        "expected one line refusing {plugin:?}, got {refused:#?}:\n{log}"
    );
    let expected = format!(
        "-basecorefile {}: line {line}: plugin \"{plugin}\"",
        files.base.display()
    );
    ensure!(
        refused[0].contains(&expected),
        "expected the line to name the template and its line ({expected}), got {:?}",
        refused[0]
    );
    // Nothing started, nothing written, nothing set up.
    ensure!(
        !files.conf.exists() && !files.pidfile.exists(),
        "expected no rendered Corefile and no CoreDNS pidfile:\n{log}"
    );
    ensure!(
        !log.contains("CoreDNS started"),
        "expected CoreDNS never started:\n{log}"
    );
    assert_eq!(topo.node_link_addresses(INTERFACE)?, None, "no interface");
    assert_eq!(
        topo.node_cache_rule_lines()?,
        Vec::<String>::new(),
        "no rules"
    );
    Ok(())
}

#[test]
fn unknown_plugin_on_a_change_keeps_the_last_good_corefile_serving() -> Result<()> {
    let _serial = serial();
    let plugin = absent_plugin()?;
    let topo = Topology::build()?;
    let files = AgentFiles::addon(&topo)?;
    let mut agent = start_node_cache(&topo, NODE_CACHE.as_ref(), &files.args(&topo.coredns))?;
    wait_rules(&topo, &mut agent, DEADLINE)?;
    let q = Querier::new(&topo.pod)?;
    let cluster_ip: std::net::Ipv4Addr = names::CLUSTER_IP.parse()?;
    let answers = || {
        q.a_records(
            std::net::SocketAddr::new(addrs::LINK_LOCAL.parse().expect("an IP"), 53),
            names::CLUSTER,
            Duration::from_millis(200),
        ) == [cluster_ip]
    };
    wait_until("node-cache to answer", DEADLINE, || Ok(answers()))?;
    let served = std::fs::read_to_string(&files.conf)?;

    let (template, line) = template_naming(&plugin)?;
    std::fs::write(&files.base, &template)?;
    wait_until("the refusal to be logged and counted", DEADLINE, || {
        let metrics = node_http_get(&topo, METRICS)?;
        Ok(!refusals(&agent.log(), &plugin).is_empty()
            && metrics
                .lines()
                .any(|l| l == format!("{CONFIGMAP_ERRORS} 1")))
    })
    .with_context(|| format!("agent log:\n{}", agent.log()))?;
    let refused = refusals(&agent.log(), &plugin);
    ensure!(
        refused[0].contains(&format!("line {line}: plugin \"{plugin}\""))
            && refused[0].contains("keeping the last good Corefile"),
        "{refused:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(&files.conf)?,
        served,
        "the served Corefile is unchanged"
    );
    ensure!(answers(), "expected answers with the last good Corefile");
    ensure!(agent.try_status()?.is_none(), "{}", agent.log());

    agent.signal(Signal::SIGTERM)?;
    let status = agent.wait_exit(DEADLINE)?;
    ensure!(status.success(), "{status}:\n{}", agent.log());
    assert_eq!(topo.node_link_addresses(INTERFACE)?, None, "no interface");
    Ok(())
}
