//! 2i (issue 15): the Helm chart in the lab. `helm install --wait`, pods resolve as in 2a; a
//! `helm upgrade` that changes a value rolls the pods under load with 0 failed queries;
//! `helm uninstall` leaves the node clean.

use std::process::Command;

use anyhow::{ensure, Context, Result};

use super::{
    hold, node_clean, pods_resolve, secs, wait_pods, wait_resolving, wait_rules, DS, RULES, SEL,
};
use crate::lab::{output, run, Lab, KUBE_DNS_IP, SYSTEM};
use crate::load::Load;
use crate::Ctx;

const RELEASE: &str = "node-local-dns";
const CHART: &str = "charts/node-local-dns";

/// Helm, installed by hack/helm.sh (cached; `make chart-check` already ran it).
fn helm_binary(lab: &Lab) -> Result<String> {
    let out = run(Command::new(lab.root.join("hack/helm.sh")).current_dir(&lab.root))?;
    out.lines()
        .last()
        .map(str::to_string)
        .context("hack/helm.sh printed no path")
}

/// `helm ARGS` against the lab's API server (which listens only in the lab's namespace).
fn helm_cmd(lab: &Lab, helm: &str, args: &[&str]) -> Command {
    let mut c = lab.node_cmd(helm);
    c.arg("--kubeconfig")
        .arg(lab.state.join("admin.kubeconfig"))
        .args(["--namespace", SYSTEM])
        .args(args)
        .current_dir(&lab.root)
        .env("HELM_CACHE_HOME", lab.state.join("helm/cache"))
        .env("HELM_CONFIG_HOME", lab.state.join("helm/config"))
        .env("HELM_DATA_HOME", lab.state.join("helm/data"));
    c
}

fn helm(lab: &Lab, helm: &str, args: &[&str]) -> Result<String> {
    run(&mut helm_cmd(lab, helm, args))
}

/// The value an upgrade changes: the cap on external names' cache TTL, as the pods run it.
fn cache_ttl_in_effect(lab: &Lab) -> Result<String> {
    let corefile = lab.kubectl(&[
        "-n",
        SYSTEM,
        "get",
        "configmap",
        RELEASE,
        "-o",
        "jsonpath={.data.Corefile}",
    ])?;
    Ok(corefile
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cache "))
        .collect::<Vec<_>>()
        .join(", "))
}

pub fn helm_chart(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    node_clean(lab).context("the node is not clean before the Helm case")?;
    let helm_bin = helm_binary(lab)?;
    let (repository, tag) = lab
        .image
        .rsplit_once(':')
        .with_context(|| format!("the lab's image {} has no tag", lab.image))?;
    let outcome = (|| -> Result<String> {
        let installed = helm(
            lab,
            &helm_bin,
            &[
                "install",
                RELEASE,
                CHART,
                "--set",
                &format!("image.repository={repository}"),
                "--set",
                &format!("image.tag={tag}"),
                "--set",
                &format!("config.dnsServer={KUBE_DNS_IP}"),
                "--wait",
                "--timeout",
                "120s",
            ],
        )
        .context("helm install --wait")?;
        ensure!(
            installed.contains("STATUS: deployed"),
            "helm install did not report deployed: {installed}"
        );
        lab.only_pod(SEL)
            .context("helm install --wait returned without a node-cache pod")?;
        wait_rules(lab, RULES, secs(30))?;
        wait_resolving(lab)?;
        let before = cache_ttl_in_effect(lab)?;

        let load = Load::start(lab, "helm-upgrade")?;
        let upgraded = helm(
            lab,
            &helm_bin,
            &[
                "upgrade",
                RELEASE,
                CHART,
                "--reuse-values",
                "--set",
                "config.cacheTTL=20",
                "--wait",
                "--timeout",
                "120s",
            ],
        );
        let gone = upgraded
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|_| {
                lab.rollout_status(DS, secs(120))?;
                wait_pods(lab, SEL, 1)
            });
        hold(secs(2));
        let result = load.stop(lab)?;
        println!(
            "helm upgrade: failed/sent {}/{}",
            result.failed(),
            result.sent()
        );
        upgraded.context("helm upgrade --wait")?;
        gone?;
        result.check_lossless("during the helm upgrade")?;
        let after = cache_ttl_in_effect(lab)?;
        ensure!(
            after.contains("cache 20") && !before.contains("cache 20"),
            "the upgrade's cacheTTL=20 is not in the Corefile: before [{before}], after [{after}]"
        );
        wait_rules(lab, RULES, secs(10))?;
        pods_resolve(lab)?;
        Ok(format!(
            "helm install --wait: deployed, pods resolve at both IPs; helm upgrade --set config.cacheTTL=20 rolled ({before} -> {after}): {}",
            result.detail()
        ))
    })();
    // helm uninstall, as an operator removes a Helm release; the node must end clean.
    if outcome.is_err() {
        println!("{}", lab.dump("2i-before-removal"));
    }
    let removed = output(&mut helm_cmd(
        lab,
        &helm_bin,
        &["uninstall", RELEASE, "--wait", "--timeout", "120s"],
    ))
    .and_then(|out| {
        ensure!(
            out.status.success() || String::from_utf8_lossy(&out.stderr).contains("not found"),
            "helm uninstall failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        wait_pods(lab, SEL, 0)?;
        node_clean(lab)
    });
    let detail = outcome?;
    removed.context("helm uninstall")?;
    Ok(format!("{detail}; helm uninstall left the node clean"))
}
