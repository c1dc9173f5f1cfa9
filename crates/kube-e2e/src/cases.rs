//! The cases. Each returns what it saw (the PASS line) or why it failed; the four lines issue 16
//! names are printed by their cases whatever the outcome, so a failing run still shows them.

use std::collections::HashSet;
use std::io::BufReader;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::lab::{
    dns_addr, kill, pids_named, read, wait_for, Lab, Pod, EXTERNAL_IP, EXTERNAL_NAME,
    KUBERNETES_IP, KUBERNETES_NAME, KUBE_DNS_IP, LOCAL_IP, SYSTEM,
};
use crate::load::Load;
use crate::Ctx;

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
        steady.check_rate()?;
        ensure!(
            steady.failed() == 0,
            "queries failed while serving: {}",
            steady.detail()
        );
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
    result.check_rate()?;
    ensure!(
        result.failed() == 0,
        "queries failed during the rollouts: {}",
        result.detail()
    );
    wait_rules(lab, RULES, secs(10))?;
    Ok(format!(
        "rollouts took {}; {}",
        times.join(", "),
        result.detail()
    ))
}

pub fn ready_means_serving(ctx: &Ctx) -> Result<String> {
    match ctx.ready_means_serving.borrow_mut().take() {
        Some(r) => r,
        None => bail!("not observed: 2d is checked during 2c's first rollout"),
    }
}

/// Runs dnsload's `until` in client-local, applies `change`, and returns the seconds from the
/// apply to the first answer that shows it.
fn time_to_answer(lab: &Lab, zone: &str, change: impl FnOnce() -> Result<()>) -> Result<f64> {
    let mut cmd = lab.kubectl_cmd(&[
        "-n",
        "e2e",
        "exec",
        "client-local",
        "--",
        "dnsload",
        "until",
        LOCAL_IP,
        zone,
        STUB_ANSWER,
        "150",
    ]);
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let applied = std::time::SystemTime::now();
    change()?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "no answer under {zone} from {STUB_IP} through {LOCAL_IP}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let at: u64 = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("answered_at_ms="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("dnsload until printed {text:?}"))?;
    let applied_ms = applied.duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    Ok(at.saturating_sub(applied_ms) as f64 / 1000.0)
}

/// 2e: kubectl apply of the kube-dns ConfigMap (stubDomains) and of the node-local-dns
/// ConfigMap; the time from each apply to the first pod answer showing it.
pub fn config_maps(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    lab.only_pod(SEL).context("2e needs the addon installed")?;
    let stub = time_to_answer(lab, "stub.test", || {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-dns\n  namespace: kube-system\ndata:\n  stubDomains: |\n    {{\"stub.test\": [\"{STUB_IP}\"]}}\n"
        );
        lab.kubectl_stdin(&["apply", "-f", "-"], &cm).map(|_| ())
    })?;
    println!("kube-dns ConfigMap (stubDomains stub.test) applied: first answer through {LOCAL_IP} after {stub:.1}s");
    let block = format!(
        "nlcm.test:53 {{\n    errors\n    bind {LOCAL_IP} {KUBE_DNS_IP}\n    forward . {STUB_IP}\n}}\n"
    );
    let cm = lab.json(&["-n", SYSTEM, "get", "configmap", "node-local-dns"])?;
    let corefile = cm["data"]["Corefile"]
        .as_str()
        .context("node-local-dns ConfigMap has no Corefile")?;
    let mut changed = cm.clone();
    changed["data"]["Corefile"] = Value::String(format!("{corefile}{block}"));
    for key in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
    ] {
        if let Some(m) = changed["metadata"].as_object_mut() {
            m.remove(key);
        }
    }
    let nlcm = time_to_answer(lab, "nlcm.test", || {
        lab.kubectl_stdin(&["apply", "-f", "-"], &changed.to_string())
            .map(|_| ())
    })?;
    println!("node-local-dns ConfigMap (a nlcm.test block) applied: first answer through {LOCAL_IP} after {nlcm:.1}s");
    Ok(format!("kube-dns ConfigMap -> answer {stub:.1}s; node-local-dns ConfigMap -> answer {nlcm:.1}s (kubelet's volume sync plus node-cache's reload)"))
}

/// How long after `since` the node gets an answer for the cluster name at `ip`.
fn answered_again(lab: &Lab, ip: &str, since: Instant, limit: Duration) -> Result<Duration> {
    let socket = lab.node_socket()?;
    let mut id = kube_e2e::dns::first_id();
    loop {
        id = id.wrapping_add(1);
        if let Ok(r) = kube_e2e::dns::query(
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
        result.check_rate()?;
        ensure!(
            result.failed() == 0,
            "queries failed during the HA update: {}",
            result.detail()
        );
        wait_rules(lab, RULES, secs(10))?;
        pods_resolve(lab)?;
        Ok(format!(
            "node-local-dns then node-local-dns-b rolled; {}",
            result.detail()
        ))
    })();
    then_remove(lab, "2c-ha", outcome)
}

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
