//! A Kubernetes node in miniature, made of namespaces:
//!
//! ```text
//!   pod (10.244.0.2, fd00:244::2) ──veth── node ──veth── kube-dns pod (10.244.1.2: CoreDNS as kube-dns)
//!                              │  kube-proxy-style DNAT: 10.96.0.10, 10.96.0.11 → 10.244.1.2
//!                              └──veth── upstream (10.244.2.2: "the internet's" DNS,
//!                                                  10.244.2.3: a stub-domain server)
//! ```
//!
//! The node's `/etc/resolv.conf` (seen by processes started with `Netns::command`) points at
//! the upstream, so nothing ever leaves the namespaces this topology made.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{coredns_binary, unique_tag, wait_until, Dig, Netns, Process, TempDir, Transport};

pub mod addrs {
    pub const POD_GW: &str = "10.244.0.1";
    pub const POD: &str = "10.244.0.2";
    pub const KUBE_DNS_GW: &str = "10.244.1.1";
    pub const KUBE_DNS_POD: &str = "10.244.1.2";
    pub const UPSTREAM_GW: &str = "10.244.2.1";
    pub const UPSTREAM: &str = "10.244.2.2";
    pub const STUB_SERVER: &str = "10.244.2.3";
    /// The addon's link-local listen IP.
    pub const LINK_LOCAL: &str = "169.254.20.10";
    /// The kube-dns Service ClusterIP (what pods have in resolv.conf in iptables mode).
    pub const KUBE_DNS_SVC: &str = "10.96.0.10";
    /// The `kube-dns-upstream` Service ClusterIP node-cache forwards cluster names to.
    pub const KUBE_DNS_UPSTREAM_SVC: &str = "10.96.0.11";
    pub const SERVICE_CIDR: &str = "10.96.0.0/12";
    /// The pod's and the node's IPv6 addresses on their link, for dual-stack tests.
    pub const POD6_GW: &str = "fd00:244::1";
    pub const POD6: &str = "fd00:244::2";
    /// An IPv6 listen IP for node-cache (dual-stack `-localip`).
    pub const LOCAL6: &str = "fd00::10";
}

/// Names and answers the topology's DNS servers know.
pub mod names {
    pub const CLUSTER: &str = "kubernetes.default.svc.cluster.local";
    pub const CLUSTER_IP: &str = "10.0.0.1";
    pub const CLUSTER_PTR: &str = "1.0.0.10.in-addr.arpa";
    pub const EXTERNAL: &str = "www.example.com";
    pub const EXTERNAL_IP: &str = "192.0.2.80";
    pub const STUB_DOMAIN: &str = "corp.internal";
    pub const STUB: &str = "db.corp.internal";
    pub const STUB_IP: &str = "192.0.2.53";
}

pub struct Topology {
    pub tag: String,
    // Processes first: they must die before their namespaces go.
    kube_dns: Option<Process>,
    upstream: Option<Process>,
    pub pod: Netns,
    pub node: Netns,
    pub kube_dns_ns: Netns,
    pub upstream_ns: Netns,
    pub dir: TempDir,
    pub coredns: PathBuf,
}

fn veth(a: &Netns, a_if: &str, a_ip: &str, b: &Netns, b_if: &str, b_ip: &str) -> Result<()> {
    crate::run(std::process::Command::new("ip").args([
        "link",
        "add",
        "name",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]))?;
    a.ip(&["addr", "add", &format!("{a_ip}/24"), "dev", a_if])?;
    b.ip(&["addr", "add", &format!("{b_ip}/24"), "dev", b_if])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// kube-proxy (iptables mode) in miniature: the Service IPs DNAT to the kube-dns pod, both for
/// traffic routed through the node (pods) and generated on it (host network, node-cache itself).
fn kube_proxy_rules(node: &Netns) -> Result<()> {
    for svc in [addrs::KUBE_DNS_SVC, addrs::KUBE_DNS_UPSTREAM_SVC] {
        for chain in ["PREROUTING", "OUTPUT"] {
            for proto in ["udp", "tcp"] {
                node.exec(
                    "iptables",
                    &[
                        "-t",
                        "nat",
                        "-A",
                        chain,
                        "-d",
                        &format!("{svc}/32"),
                        "-p",
                        proto,
                        "--dport",
                        "53",
                        "-j",
                        "DNAT",
                        "--to-destination",
                        &format!("{}:53", addrs::KUBE_DNS_POD),
                    ],
                )?;
            }
        }
    }
    Ok(())
}

const KUBE_DNS_COREFILE: &str = r#".:53 {
    bind 10.244.1.2
    errors
    hosts {
        10.0.0.1 kubernetes.default.svc.cluster.local
        10.96.0.10 kube-dns.kube-system.svc.cluster.local
        ttl 30
        fallthrough
    }
    forward . 10.244.2.2
}
"#;

const UPSTREAM_COREFILE: &str = r#".:53 {
    bind 10.244.2.2
    errors
    hosts {
        192.0.2.80 www.example.com
        ttl 30
    }
}
corp.internal:53 {
    bind 10.244.2.3
    errors
    hosts {
        192.0.2.53 db.corp.internal
        ttl 30
    }
}
"#;

impl Topology {
    /// Builds the namespaces and starts kube-dns and the upstream, waiting until both answer.
    pub fn build() -> Result<Self> {
        let tag = unique_tag();
        let coredns = coredns_binary()?;
        let dir = TempDir::new(&tag)?;
        let ns = |role: &str| Netns::create(&format!("{tag}-{role}"));
        let mut topo = Self {
            pod: ns("pod")?,
            node: ns("node")?,
            kube_dns_ns: ns("kdns")?,
            upstream_ns: ns("up")?,
            kube_dns: None,
            upstream: None,
            tag,
            dir,
            coredns,
        };
        topo.wire().context("wiring the namespaces")?;
        topo.kube_dns = Some(topo.start_server("kube-dns", KUBE_DNS_COREFILE, true)?);
        topo.upstream = Some(topo.start_server("upstream", UPSTREAM_COREFILE, false)?);
        topo.wait_answers(&topo.kube_dns_ns, addrs::KUBE_DNS_POD, names::CLUSTER)?;
        topo.wait_answers(&topo.upstream_ns, addrs::UPSTREAM, names::EXTERNAL)?;
        topo.wait_answers(&topo.upstream_ns, addrs::STUB_SERVER, names::STUB)?;
        Ok(topo)
    }

    fn wire(&self) -> Result<()> {
        let (node, pod, kdns, up) = (&self.node, &self.pod, &self.kube_dns_ns, &self.upstream_ns);
        veth(node, "vpod", addrs::POD_GW, pod, "eth0", addrs::POD)?;
        veth(
            node,
            "vkdns",
            addrs::KUBE_DNS_GW,
            kdns,
            "eth0",
            addrs::KUBE_DNS_POD,
        )?;
        veth(node, "vup", addrs::UPSTREAM_GW, up, "eth0", addrs::UPSTREAM)?;
        up.ip(&[
            "addr",
            "add",
            &format!("{}/24", addrs::STUB_SERVER),
            "dev",
            "eth0",
        ])?;
        // IPv6 between pod and node only (node-cache's IPv6 listen IP is on the node); no
        // duplicate address detection, so the addresses are usable at once.
        node.ip(&[
            "addr",
            "add",
            &format!("{}/64", addrs::POD6_GW),
            "dev",
            "vpod",
            "nodad",
        ])?;
        pod.ip(&[
            "addr",
            "add",
            &format!("{}/64", addrs::POD6),
            "dev",
            "eth0",
            "nodad",
        ])?;
        pod.ip(&["route", "add", "default", "via", addrs::POD_GW])?;
        pod.ip(&["-6", "route", "add", "default", "via", addrs::POD6_GW])?;
        kdns.ip(&["route", "add", "default", "via", addrs::KUBE_DNS_GW])?;
        up.ip(&["route", "add", "default", "via", addrs::UPSTREAM_GW])?;
        node.ip(&[
            "route",
            "add",
            addrs::SERVICE_CIDR,
            "via",
            addrs::KUBE_DNS_POD,
        ])?;
        node.sysctl("net.ipv4.ip_forward=1")?;
        node.set_resolv_conf(addrs::UPSTREAM)?;
        kube_proxy_rules(node)
    }

    fn start_server(&self, name: &str, corefile: &str, in_kube_dns: bool) -> Result<Process> {
        let ns = if in_kube_dns {
            &self.kube_dns_ns
        } else {
            &self.upstream_ns
        };
        let conf = self.dir.path().join(format!("{name}.Corefile"));
        std::fs::write(&conf, corefile)?;
        let mut cmd = ns.command(&self.coredns);
        cmd.arg("-conf").arg(&conf);
        Process::spawn(name, cmd, &self.dir.path().join(format!("{name}.log")))
    }

    fn wait_answers(&self, ns: &Netns, server: &str, name: &str) -> Result<()> {
        let dig = Dig {
            server,
            name,
            qtype: "A",
            transport: Transport::Udp,
        };
        wait_until(
            &format!("{server} to answer {name}"),
            Duration::from_secs(20),
            || Ok(!dig.run(ns)?.is_empty()),
        )
        .map(|_| ())
    }

    /// The path of a file in this topology's scratch directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Packets kube-proxy's DNAT for `svc` has taken from pods (nat PREROUTING): a query
    /// node-cache answered never reaches it.
    pub fn dnat_packets_from_pods(&self, svc: &str) -> Result<u64> {
        let save = self.node.exec("iptables-save", &["-c", "-t", "nat"])?;
        let needle = format!("-A PREROUTING -d {svc}/32");
        let mut total = 0;
        for line in save.lines().filter(|l| l.contains(&needle)) {
            // "[packets:bytes] -A ..."
            let counters = line.split(']').next().unwrap_or("").trim_start_matches('[');
            let packets = counters.split(':').next().unwrap_or("0");
            total += packets
                .parse::<u64>()
                .with_context(|| format!("counter in {line}"))?;
        }
        Ok(total)
    }

    /// The `raw` and `filter` rule lines as the compat files hold them: table headers, `-A`
    /// lines and COMMIT, no chain policies or comments.
    pub fn rules_as_saved(&self) -> Result<String> {
        let mut out = String::new();
        for table in ["raw", "filter"] {
            for line in self.node.iptables_save(table)?.lines() {
                if line.starts_with('*') || line.starts_with("-A") || line == "COMMIT" {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        Ok(out)
    }

    /// The node's rule lines carrying node-cache's comments, in `iptables-save` form.
    pub fn node_cache_rule_lines(&self) -> Result<Vec<String>> {
        Ok(self
            .rules_as_saved()?
            .lines()
            .filter(|l| l.contains("NodeLocal DNS Cache"))
            .map(str::to_string)
            .collect())
    }

    /// The addresses on `ifname` in the node namespace, or None when the link does not exist.
    pub fn node_link_addresses(&self, ifname: &str) -> Result<Option<Vec<String>>> {
        let out = std::process::Command::new("ip")
            .args(["-n", self.node.name(), "-br", "addr", "show", "dev", ifname])
            .output()?;
        if !out.status.success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(Some(
            text.split_whitespace()
                .skip(2)
                // The kernel's own IPv6 link-local address on any link brought up.
                .filter(|a| !a.starts_with("fe80:"))
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect(),
        ))
    }

    /// Files a node-cache run needs, laid out as the DaemonSet mounts them.
    pub fn write_base_corefile(&self, text: &str) -> Result<PathBuf> {
        let path = self.path("Corefile.base");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// A kube-dns ConfigMap volume as kubelet writes it: `..data` → a timestamped dir, keys as
    /// symlinks through `..data`. Returns the mount directory.
    pub fn write_kube_dns_configmap(&self, keys: &[(&str, &str)]) -> Result<PathBuf> {
        let mount = self.path("kube-dns");
        write_configmap_volume(&mount, keys)?;
        Ok(mount)
    }
}

/// Writes (or swaps, like kubelet) a ConfigMap volume at `mount`.
pub fn write_configmap_volume(mount: &Path, keys: &[(&str, &str)]) -> Result<()> {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(mount)?;
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let data_dir = mount.join(&stamp);
    std::fs::create_dir(&data_dir)?;
    for (key, value) in keys {
        std::fs::write(data_dir.join(key), value)?;
    }
    let tmp_link = mount.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, mount.join("..data"))?;
    for (key, _) in keys {
        let link = mount.join(key);
        if link.symlink_metadata().is_err() {
            symlink(format!("..data/{key}"), &link)?;
        }
    }
    Ok(())
}
