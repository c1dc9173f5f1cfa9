//! Running node-cache in a topology's node namespace with the addon manifest's flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::pod::Pod;
use crate::topology::names;
use crate::{addrs, wait_until, workspace_root, Dig, Process, Topology, Transport};

/// The addon manifest's `-localip` (SPEC §1): the link-local IP and the kube-dns IP.
pub const ADDON_LOCAL_IPS: &str = "169.254.20.10,10.96.0.10";

/// The addon manifest's `-upstreamsvc`.
pub const ADDON_UPSTREAM_SVC: &str = "kube-dns-upstream";

/// The interface name node-cache uses by default.
pub const INTERFACE: &str = "nodelocaldns";

/// The addon's base Corefile after the operator's `sed` for iptables mode: the raw template
/// from `templates/Corefile.base` with the domain, link-local IP and kube-dns IP filled in.
pub fn addon_corefile_iptables_mode() -> Result<String> {
    let raw = std::fs::read_to_string(workspace_root().join("templates/Corefile.base"))
        .context("reading templates/Corefile.base")?;
    Ok(raw
        .replace("__PILLAR__DNS__DOMAIN__", "cluster.local")
        .replace("__PILLAR__LOCAL__DNS__", addrs::LINK_LOCAL)
        .replace("__PILLAR__DNS__SERVER__", addrs::KUBE_DNS_SVC))
}

/// The addon's kube-dns ConfigMap `stubDomains`: the topology's stub domain.
pub fn addon_stub_domains() -> String {
    format!(
        r#"{{"{}": ["{}"]}}"#,
        names::STUB_DOMAIN,
        addrs::STUB_SERVER
    )
}

/// Paths of one node-cache run's files inside the topology's scratch directory.
#[derive(Clone, Debug)]
pub struct AgentFiles {
    pub base: PathBuf,
    pub conf: PathBuf,
    pub kube_dns: PathBuf,
    pub pidfile: PathBuf,
}

impl AgentFiles {
    /// The same inputs with this instance's own rendered Corefile and pidfile, as a second
    /// pod on the node (its own container filesystem) would have.
    pub fn for_instance(&self, topo: &Topology, name: &str) -> Self {
        Self {
            base: self.base.clone(),
            conf: topo.path(&format!("{name}.Corefile")),
            kube_dns: self.kube_dns.clone(),
            pidfile: topo.path(&format!("{name}.pid")),
        }
    }

    /// Writes the addon base Corefile and a kube-dns ConfigMap with the topology's stub domain.
    pub fn addon(topo: &Topology) -> Result<Self> {
        let stub = addon_stub_domains();
        Self::write(
            topo,
            &addon_corefile_iptables_mode()?,
            &[("stubDomains", &stub)],
        )
    }

    /// Writes `base` as the base Corefile and a kube-dns ConfigMap volume holding `kube_dns`.
    pub fn write(topo: &Topology, base: &str, kube_dns: &[(&str, &str)]) -> Result<Self> {
        Ok(Self {
            base: topo.write_base_corefile(base)?,
            conf: topo.path("Corefile"),
            kube_dns: topo.write_kube_dns_configmap(kube_dns)?,
            pidfile: topo.path("node-cache.pid"),
        })
    }

    /// The addon's flags plus these files, the CoreDNS binary and a metrics port.
    pub fn args(&self, coredns: &Path) -> Vec<String> {
        self.args_with(ADDON_LOCAL_IPS, ADDON_UPSTREAM_SVC, coredns)
    }

    /// Like [`AgentFiles::args`], with `-localip` and `-upstreamsvc` of the caller's.
    pub fn args_with(&self, local_ips: &str, upstream_svc: &str, coredns: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-localip".into(),
            local_ips.into(),
            "-upstreamsvc".into(),
            upstream_svc.into(),
        ];
        for (flag, value) in [
            ("-basecorefile", &self.base),
            ("-conf", &self.conf),
            ("-kubednscm", &self.kube_dns),
            ("-pidfile", &self.pidfile),
            ("-coredns-binary", &coredns.to_path_buf()),
        ] {
            args.push(flag.into());
            args.push(value.display().to_string());
        }
        args
    }
}

/// Starts `binary args...` as a pod on the node (see [`crate::pod`]): its own PID namespace,
/// the manifest's capabilities, the upstream Service's env var as the kubelet sets it. (Tests
/// start it through [`crate::fixture`].)
pub fn start_node_cache(topo: &Topology, binary: &Path, args: &[String]) -> Result<Process> {
    Pod::new("node-cache").start(topo, binary, args, &topo.path("node-cache.log"))
}

/// The host pid of the CoreDNS whose pid (as the agent's PID namespace numbers it) `pidfile`
/// holds: the agent's child with that namespace pid.
pub fn coredns_host_pid(agent: &Process, pidfile: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(pidfile)
        .with_context(|| format!("reading {}", pidfile.display()))?;
    let inner: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("pidfile holds {text:?}"))?;
    crate::process::children_of(agent.pid())
        .into_iter()
        .map(|(pid, _)| pid)
        .find(|pid| namespace_pid(*pid) == Some(inner))
        .with_context(|| format!("no child of node-cache has pid {inner} in its namespace"))
}

/// The innermost pid of `pid` (the `NSpid:` line's last field).
fn namespace_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// Waits until all 24 rules of the two addon IPs are in place, or the deadline passes.
pub fn wait_rules(topo: &Topology, agent: &mut Process, deadline: Duration) -> Result<Duration> {
    let took = wait_until("node-cache's 24 rules", deadline, || {
        Ok(agent.try_status()?.is_some() || topo.node_cache_rule_lines()?.len() == 24)
    })?;
    if let Some(status) = agent.try_status()? {
        anyhow::bail!("node-cache exited ({status}):\n{}", agent.log());
    }
    Ok(took)
}

/// One query from the pod namespace.
pub fn pod_query(
    topo: &Topology,
    server: &str,
    name: &str,
    qtype: &str,
    transport: Transport,
) -> Result<Vec<String>> {
    Dig {
        server,
        name,
        qtype,
        transport,
    }
    .run(&topo.pod)
}

/// `curl` from inside the node namespace (the metrics endpoint lives there).
pub fn node_http_get(topo: &Topology, url: &str) -> Result<String> {
    topo.node.exec("curl", &["-sS", "--max-time", "5", url])
}

/// Whether pod `pod`'s node-cache has announced that its CoreDNS answers (its abstract
/// socket `node-cache/<if>/serving/<pod>.<random>`, in the node namespace's `/proc/net/unix`).
pub fn announces_serving(topo: &Topology, pod: &str) -> Result<bool> {
    let table = topo.node.exec("cat", &["/proc/net/unix"])?;
    let prefix = format!("@node-cache/{INTERFACE}/serving/{pod}.");
    Ok(table.lines().any(|l| {
        l.split_whitespace()
            .last()
            .is_some_and(|name| name.starts_with(&prefix))
    }))
}
