//! 2h: kube-proxy in nftables mode.

use anyhow::{ensure, Context, Result};

use super::{install, node_clean, secs, then_remove, wait_pods, wait_resolving, DS, ROLLOUT, SEL};
use crate::lab::{wait_for, Lab, KUBERNETES_IP, KUBERNETES_NAME, KUBE_DNS_IP, SYSTEM};
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
        // hack/install.sh detects the mode from kube-proxy's ConfigMap and renders iptables
        // mode's recipe with -firewall-backend nftables.
        let said = install(lab, &[])?;
        let said = said
            .lines()
            .find(|l| l.contains("kube-proxy mode"))
            .unwrap_or_default()
            .trim()
            .to_string();
        ensure!(
            said.ends_with("kube-proxy mode: nftables"),
            "hack/install.sh did not detect nftables mode: {said:?}"
        );
        lab.rollout_status(DS, ROLLOUT)?;
        let installed = served_from_the_table(lab)?;
        // The same pods with -firewall-backend=auto: it must find kube-proxy's table itself.
        let args = lab.kubectl(&[
            "-n",
            SYSTEM,
            "get",
            DS,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ])?;
        let args: Vec<String> =
            serde_json::from_str(&args).with_context(|| format!("node-cache's args {args:?}"))?;
        let at = args
            .iter()
            .position(|a| a.starts_with("-firewall-backend"))
            .context("hack/install.sh's nftables recipe has no -firewall-backend")?;
        let patch = format!(
            "[{{\"op\":\"replace\",\"path\":\"/spec/template/spec/containers/0/args/{at}\",\"value\":\"-firewall-backend=auto\"}}]"
        );
        lab.kubectl(&[
            "-n",
            SYSTEM,
            "patch",
            DS,
            "--type=json",
            &format!("-p={patch}"),
        ])?;
        lab.rollout_status(DS, ROLLOUT)?;
        wait_pods(lab, SEL, 1)?;
        let auto = served_from_the_table(lab)?;
        ensure!(
            auto.contains("-firewall-backend=auto: table inet node-local-dns"),
            "auto did not choose nftables: {auto}"
        );
        Ok(format!("{said}; installed: {installed}; with auto: {auto}"))
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

/// Waits for node-cache's nftables table, then checks that no iptables rule of ours exists and
/// that pods resolve as in 2a; returns the line in which node-cache named its backend.
fn served_from_the_table(lab: &Lab) -> Result<String> {
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
    wait_resolving(lab)?;
    Ok(backend_line())
}
