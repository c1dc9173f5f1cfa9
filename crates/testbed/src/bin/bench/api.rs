//! The ConfigMap table: a stubDomains change until a pod's query for the new stub domain is
//! answered, through kubelet's volume (the file swap node-cache watches) and through the
//! Kubernetes API (a real kube-apiserver and etcd in the node namespace, node-cache watching
//! with `-kubeconfig`), over 5 runs each. The API figure starts at the apiserver's audited write,
//! so kubectl's own start-up is not counted (it is shown beside). kubelet's own lag before the
//! swap (its sync period plus cache TTL, a minute or more by default) is not in the volume
//! figure: it is what the API path saves.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use testbed::agent::addon_stub_domains;
use testbed::fixture::Node;
use testbed::kube_api::{configmap, lab_bin_built, timed_apply, ApiServer};
use testbed::topology::{names, write_configmap_volume};
use testbed::{addrs, wait_until};

const RUNS: usize = 5;

/// Waits until the stub domain is answered (`present`) or unknown.
fn wait_stub(node: &Node, present: bool) -> Result<()> {
    let want: &[&str] = if present { &[names::STUB_IP] } else { &[] };
    wait_until("the stub domain's answer", Duration::from_secs(10), || {
        Ok(node.a(addrs::LINK_LOCAL, names::STUB) == want)
    })?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The volume path: the kube-dns ConfigMap's volume swapped, as kubelet swaps it.
fn volume_runs(node: &Node) -> Result<Vec<f64>> {
    let files = &node.files;
    write_configmap_volume(&files.kube_dns, &[("stubDomains", "{}")])?;
    let mut agent = node.agent().spawn()?;
    let mut figures = Vec::new();
    for _ in 0..RUNS {
        write_configmap_volume(&files.kube_dns, &[("stubDomains", "{}")])?;
        wait_stub(node, false)?;
        write_configmap_volume(&files.kube_dns, &[("stubDomains", &addon_stub_domains())])?;
        let swapped = Instant::now();
        wait_stub(node, true)?;
        figures.push(ms(swapped.elapsed()));
    }
    agent.terminate()?;
    Ok(figures)
}

/// The API path: `kubectl apply` of the kube-dns ConfigMap; (from the write, from kubectl's
/// start).
fn api_runs(node: &Node) -> Result<(Vec<f64>, Vec<f64>)> {
    let api = ApiServer::start(&node.topo)?;
    let base = std::fs::read_to_string(&node.files.base)?;
    api.apply(&configmap("node-local-dns", &[("Corefile", &base)]))?;
    api.apply(&configmap("kube-dns", &[("stubDomains", "{}")]))?;
    // The volume stays without stub domains: only the API brings them.
    write_configmap_volume(&node.files.kube_dns, &[("stubDomains", "{}")])?;
    let kubeconfig = api.kubeconfig("admin").display().to_string();
    let mut agent = node.agent().flags(&["-kubeconfig", &kubeconfig]).spawn()?;
    let (mut from_write, mut from_kubectl) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        api.apply(&configmap("kube-dns", &[("stubDomains", "{}")]))?;
        wait_stub(node, false)?;
        let change = configmap("kube-dns", &[("stubDomains", &addon_stub_domains())]);
        let t = timed_apply(&api, ("configmaps", "kube-dns"), &change, || {
            node.a(addrs::LINK_LOCAL, names::STUB) == [names::STUB_IP]
        })
        .with_context(|| agent.log_tail())?;
        from_write.push(ms(t.from_write));
        from_kubectl.push(ms(t.from_kubectl));
    }
    agent.terminate()?;
    Ok((from_write, from_kubectl))
}

fn row(name: &str, figures: Result<Vec<f64>>) {
    match figures {
        Ok(figures) => {
            let (median, min, max) = super::spread(figures);
            println!("| {name:<52} | {median:>9.1} | {min:>9.1} | {max:>9.1} | ms  |");
        }
        Err(e) => println!("| {name:<52} | n/a ({})", super::first_line(&e)),
    }
}

pub fn table(node: &Node) -> Result<()> {
    println!(
        "kube-dns ConfigMap change → new stub domain answered at {}, {RUNS} runs each",
        addrs::LINK_LOCAL
    );
    println!(
        "| {:<52} | {:>9} | {:>9} | {:>9} | {:<3} |",
        "path", "median", "min", "max", ""
    );
    println!("{}", super::separator(&[52, 9, 9, 9, 3]));
    row("volume: kubelet's file swap → answered", volume_runs(node));
    if lab_bin_built().is_none() {
        println!(
            "| {:<52} | n/a (no kube-apiserver and etcd built: make kube-api-test builds them)",
            "API: kubectl apply (audited write) → answered"
        );
        return Ok(());
    }
    match api_runs(node) {
        Ok((from_write, from_kubectl)) => {
            row(
                "API: kubectl apply (audited write) → answered",
                Ok(from_write),
            );
            row(
                "API: kubectl apply (kubectl's start) → answered",
                Ok(from_kubectl),
            );
        }
        Err(e) => row("API: kubectl apply (audited write) → answered", Err(e)),
    }
    Ok(())
}
