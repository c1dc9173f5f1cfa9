//! 2f and 2g: CoreDNS and node-cache killed inside the pod; uninstall under load.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::{hold, node_clean, secs, wait_pods, wait_rules, LINK, RULES, SEL};
use crate::lab::{
    dns_addr, kill, pids_named, wait_for, Lab, KUBERNETES_NAME, KUBE_DNS_IP, LOCAL_IP,
};
use crate::load::Load;
use crate::Ctx;

/// How long after `since` the node gets an answer for the cluster name at `ip`.
fn answered_again(lab: &Lab, ip: &str, since: Instant, limit: Duration) -> Result<Duration> {
    let socket = lab.node_socket()?;
    let mut id = dns_query::first_id();
    loop {
        id = id.wrapping_add(1);
        if let Ok(r) = dns_query::query(
            &socket,
            id,
            dns_addr(ip),
            KUBERNETES_NAME,
            Duration::from_millis(100),
        ) {
            if r.is_answer() {
                return Ok(since.elapsed());
            }
        }
        ensure!(
            since.elapsed() < limit,
            "no answer at {ip} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 2f: CoreDNS killed from the host (answered again within 1 s, no container restart); the
/// node-cache container killed (kubelet restarts it; interface and rules adopted, not doubled).
pub fn kills(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    let pod = lab.only_pod(SEL).context("2f needs the addon installed")?;
    let coredns = pids_named(&pod.uid, "coredns")?;
    ensure!(
        coredns.len() == 1,
        "CoreDNS processes of {}: {coredns:?}",
        pod.name
    );
    let t = Instant::now();
    kill(coredns[0], "CoreDNS")?;
    let back = answered_again(lab, LOCAL_IP, t, secs(10))?;
    answered_again(lab, KUBE_DNS_IP, Instant::now(), secs(5))?;
    let after = lab.only_pod(SEL)?;
    let new_coredns = pids_named(&after.uid, "coredns")?;
    ensure!(
        back < secs(1),
        "CoreDNS killed: answered again only after {back:.2?}"
    );
    ensure!(
        after.restarts == pod.restarts,
        "restartCount {} -> {} after CoreDNS was killed",
        pod.restarts,
        after.restarts
    );
    ensure!(
        !new_coredns.contains(&coredns[0]) && !new_coredns.is_empty(),
        "CoreDNS pids {coredns:?} -> {new_coredns:?}"
    );

    let links = lab.links(LINK)?;
    ensure!(links.len() == 1, "links called {LINK} before: {links:?}");
    let agent = pids_named(&pod.uid, "node-cache")?;
    ensure!(
        agent.len() == 1,
        "node-cache processes of {}: {agent:?}",
        pod.name
    );
    let t = Instant::now();
    kill(agent[0], "node-cache")?;
    wait_for(secs(90), "node-cache container restarted and Ready", || {
        let p = lab.only_pod(SEL)?;
        Ok((p.restarts == pod.restarts + 1 && p.ready).then_some(()))
    })?;
    let restarted = t.elapsed();
    answered_again(lab, LOCAL_IP, Instant::now(), secs(10))?;
    wait_rules(lab, RULES, secs(30))?;
    // Watch a few sync passes' worth: the adopted state must stay single.
    let until = Instant::now() + secs(3);
    while Instant::now() < until {
        let (rules, now) = (lab.rules()?, lab.links(LINK)?);
        ensure!(
            rules == RULES,
            "{rules} rules after the restart (wanted {RULES})"
        );
        ensure!(
            now == links,
            "links called {LINK}: {links:?} before, {now:?} after the restart"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    answered_again(lab, KUBE_DNS_IP, Instant::now(), secs(5))?;
    Ok(format!(
        "CoreDNS SIGKILL: answered again after {back:.0?}, restartCount {}; node-cache SIGKILL: restarted by kubelet and Ready after {restarted:.1?}, {RULES} rules and link index {} kept",
        after.restarts, links[0]
    ))
}

/// 2g and issue 16's delete line: hack/uninstall.sh while pods query; the kube-dns IP must keep
/// answering (through kube-proxy to kube-dns once node-cache is gone); nothing left on the node.
pub fn uninstall_under_load(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    lab.only_pod(SEL).context("2g needs the addon installed")?;
    let load = Load::start(lab, "delete")?;
    hold(secs(2));
    let out = lab.script("hack/uninstall.sh", &[]);
    hold(secs(2));
    let result = load.stop(lab)?;
    let kdns = result.of(KUBE_DNS_IP);
    println!(
        "delete under load: kube-dns IP failed/sent {}/{}",
        kdns.failed, kdns.sent
    );
    let out = out?;
    ensure!(
        out.status.success(),
        "hack/uninstall.sh failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    result.check_rate()?;
    ensure!(
        kdns.failed == 0,
        "queries to the kube-dns IP failed: {}",
        result.detail()
    );
    node_clean(lab)?;
    wait_pods(lab, SEL, 0)?;
    let local = result.of(LOCAL_IP);
    Ok(format!(
        "kube-dns IP {}/{} failed; link-local IP {}/{} failed (nothing serves it once node-cache is gone: expected); no rule, table or {LINK} left",
        kdns.failed, kdns.sent, local.failed, local.sent
    ))
}
