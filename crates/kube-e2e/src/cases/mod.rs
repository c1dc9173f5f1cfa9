//! The cases, one file per theme; this module holds what they share (waits, install and
//! removal, the pod-side checks). Each case returns what it saw (the PASS line) or why it
//! failed; the four lines issue 16 names are printed by their cases whatever the outcome, so a
//! failing run still shows them.

mod config;
mod faults;
mod helm;
mod install;
mod nftables;
mod rollouts;

pub use config::config_maps;
pub use faults::{kills, uninstall_under_load};
pub use helm::helm_chart;
pub use install::{drop_in, install_case, setup};
pub use nftables::nftables;
pub use rollouts::{ha_update, ready_means_serving, surge_rollouts};

use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::lab::{
    wait_for, Lab, EXTERNAL_IP, EXTERNAL_NAME, KUBERNETES_IP, KUBERNETES_NAME, KUBE_DNS_IP,
    LOCAL_IP, SYSTEM,
};

const DS: &str = "daemonset/node-local-dns";
const DS_B: &str = "daemonset/node-local-dns-b";
const SEL: &str = "k8s-app=node-local-dns";
const SEL_B: &str = "k8s-app=node-local-dns-b";
/// 12 rules per local IP, as upstream installs them.
const RULES: usize = 24;
const LINK: &str = "nodelocaldns";
/// The lab's second resolver (env.sh STUB_IP) and what it answers for stub.test and nlcm.test.
const STUB_IP: &str = "10.79.0.54";
const STUB_ANSWER: &str = "192.0.2.54";
const ROLLOUT: Duration = Duration::from_secs(120);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A measurement window: the load runs while nothing else happens (not a synchronisation).
fn hold(d: Duration) {
    std::thread::sleep(d);
}

fn wait_rules(lab: &Lab, want: usize, limit: Duration) -> Result<()> {
    let mut last = usize::MAX;
    wait_for(limit, &format!("{want} node-cache rules"), || {
        last = lab.rules()?;
        Ok((last == want).then_some(()))
    })
    .with_context(|| format!("{last} rules in the node"))
}

/// Waits until every node-cache pod of `selector` has gone (a rollout's old pod after its
/// handover, or all of them after a delete).
fn wait_pods(lab: &Lab, selector: &str, want: usize) -> Result<()> {
    wait_for(secs(90), &format!("{want} pod(s) for {selector}"), || {
        Ok((lab.pods(SYSTEM, selector)?.len() == want).then_some(()))
    })
}

fn install(lab: &Lab, extra: &[&str]) -> Result<String> {
    let mut args = vec!["--image", &lab.image];
    args.extend(extra);
    let out = lab.script("hack/install.sh", &args)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.success(),
        "hack/install.sh {args:?} failed: {}",
        stderr.trim()
    );
    Ok(stderr)
}

/// Removes node-cache as an operator would (the HA twin first, then hack/uninstall.sh) and
/// checks that the node is clean: no rule, nftables table or interface.
fn remove_addon(lab: &Lab) -> Result<()> {
    lab.kubectl(&[
        "-n",
        SYSTEM,
        "delete",
        DS_B,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
    ])?;
    let out = lab.script("hack/uninstall.sh", &[])?;
    ensure!(
        out.status.success(),
        "hack/uninstall.sh failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    wait_pods(lab, SEL, 0)?;
    wait_pods(lab, SEL_B, 0)?;
    node_clean(lab)
}

/// Ends a case that installed the addon: on failure the node's state and logs are saved first
/// (removal would erase them), then the addon is removed and the node checked clean.
fn then_remove(lab: &Lab, id: &str, outcome: Result<String>) -> Result<String> {
    if outcome.is_err() {
        println!("{}", lab.dump(&format!("{id}-before-removal")));
    }
    let removed = remove_addon(lab);
    let detail = outcome?;
    removed.context("removing the addon afterwards")?;
    Ok(detail)
}

fn node_clean(lab: &Lab) -> Result<()> {
    wait_for(
        secs(20),
        "clean node (no rules, nftables table or interface)",
        || {
            Ok(
                (lab.rules()? == 0 && !lab.nft_table()? && lab.links(LINK)?.is_empty())
                    .then_some(()),
            )
        },
    )
    .with_context(|| {
        format!(
            "left on the node: {} rules, nftables table {}, links {:?}",
            lab.rules().unwrap_or(usize::MAX),
            lab.nft_table().unwrap_or(true),
            lab.links(LINK).unwrap_or_default()
        )
    })
}

/// Pods resolve through node-cache as in 2a: ClusterFirst at the kube-dns IP (cluster and
/// external names) and the link-local IP.
fn pods_resolve(lab: &Lab) -> Result<()> {
    lab.expect_answer("client", KUBE_DNS_IP, KUBERNETES_NAME, KUBERNETES_IP)?;
    lab.expect_answer("client", KUBE_DNS_IP, EXTERNAL_NAME, EXTERNAL_IP)?;
    lab.expect_answer("client-local", LOCAL_IP, KUBERNETES_NAME, KUBERNETES_IP)?;
    lab.expect_answer("client-local", LOCAL_IP, EXTERNAL_NAME, EXTERNAL_IP)
}

/// Waits until pods resolve as in 2a: a Service the addon creates (kube-dns-upstream, node-cache's
/// path to kube-dns) reaches kube-proxy's rules a moment after the apply, and a load started
/// before that would count kube-proxy's delay against node-cache.
fn wait_resolving(lab: &Lab) -> Result<()> {
    wait_for(secs(30), "answers at both local IPs", || {
        Ok(pods_resolve(lab).is_ok().then_some(()))
    })
    .and_then(|_| pods_resolve(lab))
}

fn restart(lab: &Lab, ds: &str) -> Result<()> {
    lab.kubectl(&["-n", SYSTEM, "rollout", "restart", ds])?;
    Ok(())
}

/// Restarts a DaemonSet and waits for the rollout and for its old pod to be gone.
fn roll(lab: &Lab, ds: &str, selector: &str) -> Result<()> {
    restart(lab, ds)?;
    lab.rollout_status(ds, ROLLOUT)?;
    wait_pods(lab, selector, 1)
}
