//! 2c and 2d: surge rollouts under load, the HA pair updated one DaemonSet at a time, and
//! Ready meaning serving.

use std::collections::HashSet;
use std::io::BufReader;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use super::{
    hold, install, node_clean, pods_resolve, restart, roll, secs, then_remove, wait_pods,
    wait_resolving, wait_rules, DS, DS_B, ROLLOUT, RULES, SEL, SEL_B,
};
use crate::lab::{pids_named, wait_for, Lab, Pod, KUBE_DNS_IP, LOCAL_IP, SYSTEM};
use crate::load::Load;
use crate::Ctx;

/// 2d's check at the moment a new pod is first seen Ready: its own CoreDNS holds sockets on
/// both local IPs and the rules are in place.
fn serving_at_ready(lab: &Lab, pod: &Pod) -> Result<String> {
    let ours: HashSet<i32> = pids_named(&pod.uid, "coredns")?.into_iter().collect();
    ensure!(
        !ours.is_empty(),
        "pod {} Ready with no CoreDNS process",
        pod.name
    );
    for ip in [LOCAL_IP, KUBE_DNS_IP] {
        let owners = lab.udp53_owners(ip)?;
        ensure!(
            owners.iter().any(|p| ours.contains(p)),
            "pod {} Ready while its CoreDNS {ours:?} held no socket on {ip}:53 (owners {owners:?})",
            pod.name
        );
    }
    let rules = lab.rules()?;
    ensure!(
        rules == RULES,
        "pod {} Ready with {rules} rules in the node",
        pod.name
    );
    Ok(format!(
        "at the first sight of {} Ready its CoreDNS {ours:?} held {LOCAL_IP}:53 and {KUBE_DNS_IP}:53, {rules} rules",
        pod.name
    ))
}

/// Watches the DaemonSet's pods through a rollout and checks the first new pod seen Ready.
fn watch_first_ready(
    lab: &Lab,
    old: &HashSet<String>,
    tx: mpsc::Sender<Result<String>>,
) -> Result<std::process::Child> {
    let mut cmd = lab.kubectl_cmd(&[
        "-n", SYSTEM, "get", "pods", "-l", SEL, "--watch", "-o", "json",
    ]);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().context("kubectl watch's stdout")?;
    let old = old.clone();
    let lab = lab.clone();
    std::thread::spawn(move || {
        let stream =
            serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>();
        for v in stream {
            let Ok(v) = v else { break };
            let pod = Pod::from_json(&v);
            if !old.contains(&pod.uid) && pod.ready && !pod.deleting {
                let _ = tx.send(serving_at_ready(&lab, &pod));
                return;
            }
        }
        let _ = tx.send(Err(anyhow::anyhow!(
            "the watch ended before a new pod was Ready"
        )));
    });
    Ok(child)
}

/// 2c (surge): three rollout restarts in a row under load, 0 failed; 2d observed on the first.
pub fn surge_rollouts(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    lab.only_pod(SEL)
        .context("2c needs the addon installed by 2a")?;
    let ds = lab.json(&["-n", SYSTEM, "get", DS])?;
    let probe = ds["spec"]["template"]["spec"]["containers"][0]["readinessProbe"].clone();
    let min_ready = ds["spec"]["minReadySeconds"].as_u64().unwrap_or(0);
    let load = Load::start(lab, "surge")?;
    let mut times = Vec::new();
    let mut outcome = Ok(());
    for i in 1..=3 {
        let old: HashSet<String> = lab.pods(SYSTEM, SEL)?.into_iter().map(|p| p.uid).collect();
        let t = Instant::now();
        let step = if i == 1 {
            let (tx, rx) = mpsc::channel();
            let mut watch = watch_first_ready(lab, &old, tx)?;
            let r = roll(lab, DS, SEL);
            let seen = rx.recv_timeout(secs(5)).unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "no new pod was seen Ready during the rollout"
                ))
            });
            let _ = watch.kill();
            let _ = watch.wait();
            let seen = if probe.is_null() {
                seen.and_then(|s| -> Result<String> {
                    bail!("the DaemonSet has no readinessProbe, so Ready does not depend on serving (this time: {s})")
                })
            } else {
                seen.map(|s| format!("{s}; readinessProbe {probe}, minReadySeconds {min_ready}"))
            };
            *ctx.ready_means_serving.borrow_mut() = Some(seen);
            r
        } else {
            roll(lab, DS, SEL)
        };
        if let Err(e) = step {
            outcome = Err(e.context(format!("rollout {i}")));
            break;
        }
        times.push(format!("{:.1?}", t.elapsed()));
    }
    hold(secs(2));
    let result = load.stop(lab)?;
    *ctx.surge.borrow_mut() = Some((result.failed(), result.sent()));
    println!(
        "surge rollout x{}: failed/sent {}/{}",
        times.len(),
        result.failed(),
        result.sent()
    );
    outcome?;
    result.check_lossless("during the rollouts")?;
    wait_rules(lab, RULES, secs(10))?;
    Ok(format!(
        "rollouts took {}; {}",
        times.join(", "),
        result.detail()
    ))
}

/// 2d: what 2c's first rollout saw (the new pod's own CoreDNS answered when it turned Ready),
/// and the converse: a new pod whose CoreDNS cannot serve stays unready.
pub fn ready_means_serving(ctx: &Ctx) -> Result<String> {
    let seen = match ctx.ready_means_serving.borrow_mut().take() {
        Some(r) => r?,
        None => bail!("not observed: 2d is checked during 2c's first rollout"),
    };
    let unready = unready_until_serving(&ctx.lab)?;
    Ok(format!("{seen}; {unready}"))
}

fn set_corefile(lab: &Lab, corefile: &str) -> Result<()> {
    let patch = serde_json::json!({ "data": { "Corefile": corefile } }).to_string();
    lab.kubectl(&[
        "-n",
        SYSTEM,
        "patch",
        "configmap",
        "node-local-dns",
        "--type=merge",
        "-p",
        &patch,
    ])
    .map(|_| ())
}

/// A rollout whose new pod gets a Corefile CoreDNS rejects (node-cache's own checks pass it):
/// the new pod runs but stays unready, so the surge rollout waits with the old pod serving;
/// once the Corefile is fixed the new pod turns Ready and the rollout completes.
fn unready_until_serving(lab: &Lab) -> Result<String> {
    let old = lab.only_pod(SEL)?;
    let cm = lab.json(&["-n", SYSTEM, "get", "configmap", "node-local-dns"])?;
    let good = cm["data"]["Corefile"]
        .as_str()
        .context("node-local-dns ConfigMap has no Corefile")?
        .to_string();
    // CoreDNS refuses a cache block with a capacity that is not a number (node-cache checks
    // plugin names, not their arguments), at start and at reload alike. The shipped Corefile's
    // cache has a block (serve_stale, prefetch); an operator's may be the bare line.
    let bad = if good.contains("cache 30 {\n") {
        good.replacen(
            "cache 30 {\n",
            "cache 30 {\n        success not-a-number\n",
            1,
        )
    } else {
        good.replacen(
            "cache 30\n",
            "cache 30 {\n        success not-a-number\n    }\n",
            1,
        )
    };
    ensure!(bad != good, "no `cache 30` in the Corefile to break");
    set_corefile(lab, &bad)?;
    let stalled = (|| -> Result<String> {
        restart(lab, DS)?;
        let new = wait_for(secs(60), "the rollout's new pod", || {
            Ok(lab
                .pods(SYSTEM, SEL)?
                .into_iter()
                .find(|p| p.name != old.name && !p.deleting))
        })?;
        let rejected = |l: &str| l.contains("CoreDNS exited");
        wait_for(
            secs(60),
            "the new pod's CoreDNS refusing its Corefile",
            || {
                let log = lab
                    .kubectl(&["-n", SYSTEM, "logs", &new.name])
                    .unwrap_or_default();
                Ok(log.lines().any(rejected).then_some(()))
            },
        )?;
        // A measurement window of five readiness periods (2 s each).
        hold(secs(10));
        let pods = lab.pods(SYSTEM, SEL)?;
        let now = pods
            .iter()
            .find(|p| p.name == new.name)
            .context("the new pod vanished")?;
        ensure!(
            !now.ready,
            "{} turned Ready although its CoreDNS cannot start",
            new.name
        );
        ensure!(
            pods.iter()
                .any(|p| p.name == old.name && p.ready && !p.deleting),
            "the old pod {} stopped serving while the new one was unready",
            old.name
        );
        pods_resolve(lab)?;
        Ok(new.name)
    })();
    set_corefile(lab, &good)?;
    let new = stalled?;
    let fixed = Instant::now();
    lab.rollout_status(DS, ROLLOUT)?;
    wait_pods(lab, SEL, 1)?;
    let ready_after = fixed.elapsed();
    wait_rules(lab, RULES, secs(10))?;
    pods_resolve(lab)?;
    Ok(format!(
        "{new}, whose CoreDNS rejected its Corefile, stayed unready for 10 s while {} served; \
         Ready and rolled {ready_after:.1?} after the Corefile was fixed",
        old.name
    ))
}

/// 2c (HA) and issue 16's HA line: install --ha, update one DaemonSet, then the other, under load.
pub fn ha_update(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    node_clean(lab).context("the node is not clean before the HA install")?;
    let outcome = (|| -> Result<String> {
        install(lab, &["--ha"])?;
        lab.rollout_status(DS, ROLLOUT)?;
        lab.rollout_status(DS_B, ROLLOUT)?;
        wait_rules(lab, RULES, secs(30))?;
        lab.only_pod(SEL)?;
        lab.only_pod(SEL_B)?;
        wait_resolving(lab)?;
        let load = Load::start(lab, "ha")?;
        let steps = roll(lab, DS, SEL).and_then(|_| roll(lab, DS_B, SEL_B));
        hold(secs(2));
        let result = load.stop(lab)?;
        println!(
            "ha update: failed/sent {}/{}",
            result.failed(),
            result.sent()
        );
        steps?;
        result.check_lossless("during the HA update")?;
        wait_rules(lab, RULES, secs(10))?;
        pods_resolve(lab)?;
        Ok(format!(
            "node-local-dns then node-local-dns-b rolled; {}",
            result.detail()
        ))
    })();
    then_remove(lab, "2c-ha", outcome)
}
