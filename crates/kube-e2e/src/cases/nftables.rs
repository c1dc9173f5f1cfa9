//! 2h: kube-proxy in nftables mode.

use anyhow::{ensure, Context, Result};

use super::{install, node_clean, pods_resolve, secs, then_remove, wait_pods, DS, ROLLOUT, SEL};
use crate::lab::{wait_for, KUBERNETES_IP, KUBERNETES_NAME, KUBE_DNS_IP, SYSTEM};
use crate::Ctx;

/// 2h: kube-proxy in nftables mode; node-cache with -firewall-backend=auto chooses its own
/// nftables table and pods resolve as in 2a. IPVS: only when the kernel has it.
pub fn nftables(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    node_clean(lab).context("the node is not clean before the nftables case")?;
    let switch = |mode: &str| -> Result<()> {
        let script = lab.wrapper_dir().join("proxy.sh");
        lab.inside(&[script.to_str().context("proxy.sh's path")?, mode])
            .map(|_| ())
    };
    switch("nftables")?;
    let outcome = (|| -> Result<String> {
        ensure!(
            lab.node_ok(&["nft", "list", "table", "ip", "kube-proxy"])?,
            "kube-proxy in nftables mode made no ip kube-proxy table"
        );
        wait_for(secs(30), "kube-dns through nftables kube-proxy", || {
            Ok(lab
                .expect_answer("client", KUBE_DNS_IP, KUBERNETES_NAME, KUBERNETES_IP)
                .is_ok()
                .then_some(()))
        })?;
        // hack/install.sh's own detection first; where it does not know nftables mode,
        // upstream's iptables recipe is the one for it (node-cache binds the kube-dns IP).
        let detected = lab.script("hack/install.sh", &["--dry-run", "--image", &lab.image])?;
        let said = String::from_utf8_lossy(&detected.stderr)
            .lines()
            .find(|l| l.contains("mode"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let how = if detected.status.success() {
            install(lab, &[])?;
            "detected"
        } else {
            install(lab, &["--mode", "iptables"])?;
            "refused, so --mode iptables"
        };
        lab.kubectl(&[
            "-n", SYSTEM, "patch", DS, "--type=json",
            "-p=[{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"-firewall-backend=auto\"}]",
        ])?;
        lab.rollout_status(DS, ROLLOUT)?;
        wait_pods(lab, SEL, 1)?;
        let backend_line = || {
            lab.kubectl(&["-n", SYSTEM, "logs", DS])
                .ok()
                .and_then(|l| {
                    l.lines()
                        .find(|l| l.contains("-firewall-backend"))
                        .map(|l| l.trim().to_string())
                })
                .unwrap_or_else(|| "(no -firewall-backend line in node-cache's log)".into())
        };
        wait_for(secs(30), "node-cache's nftables table", || {
            Ok(lab.nft_table()?.then_some(()))
        })
        .with_context(|| format!("node-cache chose: {}", backend_line()))?;
        let rules = lab.rules()?;
        ensure!(
            rules == 0,
            "{rules} iptables rules besides the nftables table"
        );
        pods_resolve(lab)?;
        let why = backend_line();
        Ok(format!(
            "hack/install.sh in nftables mode: {said:?} ({how}); table inet node-local-dns, 0 iptables rules, pods resolve at both IPs; node-cache: {why}"
        ))
    })();
    let removed = then_remove(lab, "2h", outcome);
    let back = switch("iptables");
    let detail = removed?;
    back.context("switching kube-proxy back to iptables")?;
    let ipvs = if std::path::Path::new("/proc/net/ip_vs").exists() {
        "IPVS: this kernel has ip_vs but the lab does not run kube-proxy in IPVS mode"
    } else {
        "IPVS: not run, this kernel has no ip_vs (no /proc/net/ip_vs, no modules)"
    };
    println!("{ipvs}");
    Ok(detail)
}
