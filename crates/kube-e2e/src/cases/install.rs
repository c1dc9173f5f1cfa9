//! Setup, 2a (hack/install.sh) and 2b (the upstream-shaped DaemonSet with our image).

use std::time::Instant;

use anyhow::{ensure, Context, Result};

use super::{
    hold, install, node_clean, roll, secs, then_remove, wait_resolving, wait_rules, DS, LINK,
    ROLLOUT, RULES, SEL,
};
use crate::lab::{
    read, wait_for, EXTERNAL_IP, EXTERNAL_NAME, KUBERNETES_IP, KUBERNETES_NAME, KUBE_DNS_IP,
    LOCAL_IP,
};
use crate::load::Load;
use crate::Ctx;

pub fn setup(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    let pods = read(&lab.wrapper_dir().join("manifests/testpods.yaml"))?;
    // A pod is refused until its namespace's default ServiceAccount exists.
    lab.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e2e\n",
    )?;
    wait_for(secs(30), "ServiceAccount e2e/default", || {
        Ok(lab
            .kubectl(&["-n", "e2e", "get", "serviceaccount", "default"])
            .is_ok()
            .then_some(()))
    })?;
    lab.kubectl_stdin(&["apply", "-f", "-"], &pods)?;
    lab.kubectl(&[
        "-n",
        "e2e",
        "wait",
        "--for=condition=Ready",
        "pod",
        "--all",
        "--timeout=120s",
    ])?;
    // kube-proxy programs the kube-dns Service a moment after its endpoints appear.
    wait_for(secs(30), "answer from kube-dns through kube-proxy", || {
        Ok(lab
            .expect_answer("client", KUBE_DNS_IP, KUBERNETES_NAME, KUBERNETES_IP)
            .is_ok()
            .then_some(()))
    })?;
    lab.expect_answer("client", KUBE_DNS_IP, EXTERNAL_NAME, EXTERNAL_IP)?;
    Ok(format!(
        "pods load, client, client-local Ready; kube-dns answers {KUBERNETES_NAME} and {EXTERNAL_NAME} at {KUBE_DNS_IP} through kube-proxy"
    ))
}

/// 2b and issue 16's first line: upstream's manifest, only the image swapped.
pub fn drop_in(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    node_clean(lab).context("the node is not clean before the drop-in")?;
    let manifest = read(
        &lab.wrapper_dir()
            .join("manifests/upstream-nodelocaldns.yaml"),
    )?
    .replace("__PILLAR__LOCAL__DNS__", LOCAL_IP)
    .replace("__PILLAR__DNS__DOMAIN__", "cluster.local")
    .replace("__PILLAR__DNS__SERVER__", KUBE_DNS_IP)
    .replace("registry.k8s.io/dns/k8s-dns-node-cache:1.26.5", &lab.image);
    lab.kubectl_stdin(&["apply", "-f", "-"], &manifest)?;
    let outcome = (|| -> Result<String> {
        lab.rollout_status(DS, ROLLOUT)?;
        let t = Instant::now();
        let rules_ok = wait_rules(lab, RULES, secs(30));
        let rules_after = t.elapsed();
        let rules = lab.rules()?;
        let resolving = wait_resolving(lab);
        let load = Load::start(lab, "dropin")?;
        hold(secs(5));
        let steady = load.stop(lab)?;
        println!(
            "drop-in upstream-shaped: rules={rules} failed/sent {}/{}",
            steady.failed(),
            steady.sent()
        );
        rules_ok.context("upstream's manifest with our image never installed the rules")?;
        resolving?;
        steady.check_lossless("while serving")?;
        // Upstream's own strategy, printed for comparison: the old pod goes before the new
        // one starts (and its declared host ports keep a surge pod off the node anyway).
        let load = Load::start(lab, "dropin-roll")?;
        roll(lab, DS, SEL)?;
        hold(secs(2));
        let rolled = load.stop(lab)?;
        println!(
            "upstream-shaped rollout (maxUnavailable, not asserted): failed/sent {}/{} ({})",
            rolled.failed(),
            rolled.sent(),
            rolled.detail()
        );
        Ok(format!(
            "{rules} rules {rules_after:.1?} after the rollout was done; pods resolve at both IPs; steady load {}",
            steady.detail()
        ))
    })();
    then_remove(lab, "2b", outcome)
}

/// 2a: the project's manifest through hack/install.sh, with its own detection.
pub fn install_case(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    let log = install(lab, &[])?;
    ensure!(
        log.contains("kube-proxy mode: iptables")
            && log.contains(&format!("kube-dns Service IP: {KUBE_DNS_IP}")),
        "hack/install.sh did not detect iptables mode and {KUBE_DNS_IP}: {}",
        log.trim()
    );
    let t = Instant::now();
    lab.rollout_status(DS, ROLLOUT)?;
    let ready = t.elapsed();
    wait_rules(lab, RULES, secs(30))?;
    let links = lab.links(LINK)?;
    ensure!(links.len() == 1, "links called {LINK}: {links:?}");
    // ClusterFirst: resolv.conf names the kube-dns IP; busybox's resolver, not dnsload.
    let conf = lab.exec("client", &["cat", "/etc/resolv.conf"])?;
    ensure!(
        conf.contains(&format!("nameserver {KUBE_DNS_IP}")),
        "client's resolv.conf: {conf}"
    );
    let conf = lab.exec("client-local", &["cat", "/etc/resolv.conf"])?;
    ensure!(
        conf.contains(&format!("nameserver {LOCAL_IP}")),
        "client-local's resolv.conf: {conf}"
    );
    for (pod, name, want) in [
        ("client", KUBERNETES_NAME, KUBERNETES_IP),
        ("client", EXTERNAL_NAME, EXTERNAL_IP),
        ("client-local", KUBERNETES_NAME, KUBERNETES_IP),
        ("client-local", EXTERNAL_NAME, EXTERNAL_IP),
    ] {
        let out = lab.exec(pod, &["nslookup", name])?;
        ensure!(
            out.contains(want),
            "nslookup {name} in {pod} printed no {want}: {out}"
        );
    }
    // Proof that node-cache answered the kube-dns IP: its CoreDNS counted the queries and
    // kube-proxy's DNAT to kube-dns saw none of them.
    let requests = lab.coredns_requests("127.0.0.1:9253")?;
    let dnat = lab.dnat_packets(KUBE_DNS_IP)?;
    let load = Load::start_to(lab, "proof", &[KUBE_DNS_IP])?;
    hold(secs(1));
    let proof = load.stop(lab)?;
    let counted = lab.coredns_requests("127.0.0.1:9253")? - requests;
    let dnat_moved = lab.dnat_packets(KUBE_DNS_IP)? - dnat;
    let sent = proof.sent();
    ensure!(
        proof.failed() == 0,
        "queries to {KUBE_DNS_IP} failed: {}",
        proof.detail()
    );
    ensure!(
        counted >= sent as f64,
        "node-cache's CoreDNS counted {counted} requests for {sent} queries to {KUBE_DNS_IP}"
    );
    ensure!(
        dnat_moved == 0,
        "kube-proxy's DNAT for {KUBE_DNS_IP} matched {dnat_moved} packets"
    );
    Ok(format!(
        "detected iptables mode and {KUBE_DNS_IP}; DaemonSet Ready in {ready:.1?}; {RULES} rules, one {LINK} link; nslookup of {KUBERNETES_NAME} and {EXTERNAL_NAME} via {KUBE_DNS_IP} and {LOCAL_IP}; {sent} queries to {KUBE_DNS_IP}: node-cache's CoreDNS counted {counted}, kube-proxy's DNAT 0"
    ))
}
