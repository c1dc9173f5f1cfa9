//! node-cache's Kubernetes API mode against a real kube-apiserver and etcd: the two started
//! alone in the test topology's node namespace ([`testbed::kube_api`]: on its loopback, so
//! neither a running lab nor anything else on the machine can collide with their ports),
//! node-cache run as a pod on that node with a kubeconfig, and ConfigMaps and Services changed
//! with `kubectl apply` (or, for hundreds of writes, an API client in the node namespace).
//! Timed: API write → a pod's answer. The pod's Events: written, aggregated, and quiet without
//! permission.
//!
//! The binaries come from the lab's build (`hack/kube-lab/build.sh`, cached in
//! `.cache/kube-lab/bin`; about 10 minutes the first time), so these tests are `#[ignore]`d in
//! `make test` and run by `make kube-api-test`, which builds them first.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use testbed::kube_api::{configmap, timed_apply, ApiServer, Timing, NAMESPACE};
use testbed::pod::Pod;
use testbed::topology::{names, write_configmap_volume};
use testbed::{addrs, wait_until, workspace_root, Dig, Process, Topology, Transport};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
const DEADLINE: Duration = Duration::from_secs(30);
/// The agent's pod name (POD_NAME), which its Events name.
const POD: &str = "node-cache";

/// One at a time: each test runs a control plane, and the timings are the point.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn service(name: &str, cluster_ip: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "{name}", "namespace": "{NAMESPACE}"}}, "spec": {{"clusterIP": "{cluster_ip}", "ports": [{{"name": "dns", "port": 53, "protocol": "UDP"}}, {{"name": "dns-tcp", "port": 53, "protocol": "TCP"}}]}}}}"#
    )
}

/// The manifest's Role and RoleBinding, exactly as shipped.
fn manifest_rbac() -> Result<String> {
    let text = std::fs::read_to_string(workspace_root().join("manifests/nodelocaldns.yaml"))?;
    let docs: Vec<&str> = text
        .split("\n---\n")
        .filter(|d| d.contains("\nkind: Role\n") || d.contains("\nkind: RoleBinding\n"))
        .collect();
    ensure!(
        docs.len() == 2,
        "manifest: expected a Role and a RoleBinding"
    );
    Ok(docs.join("\n---\n"))
}

/// The addon's template after the operator's sed for iptables mode.
fn base_corefile() -> Result<String> {
    Ok(
        std::fs::read_to_string(workspace_root().join("templates/Corefile.base"))?
            .replace("__PILLAR__DNS__DOMAIN__", "cluster.local")
            .replace("__PILLAR__LOCAL__DNS__", addrs::LINK_LOCAL)
            .replace("__PILLAR__DNS__SERVER__", addrs::KUBE_DNS_SVC),
    )
}

fn stub_domains(server: &str) -> String {
    format!(r#"{{"{}": ["{server}"]}}"#, names::STUB_DOMAIN)
}

/// The pod's A records for `name` at the link-local IP; Err when no answer came.
fn a(topo: &Topology, name: &str) -> Result<Vec<String>> {
    Dig {
        server: addrs::LINK_LOCAL,
        name,
        qtype: "A",
        transport: Transport::Udp,
    }
    .run(&topo.pod)
}

/// node-cache as a pod on the node, with the mounted files and `kubeconfig`.
struct Agent {
    process: Process,
    conf: PathBuf,
    kube_dns: PathBuf,
}

impl Agent {
    fn start(
        topo: &Topology,
        kubeconfig: &Path,
        upstream_svc: &str,
        kube_dns: &str,
    ) -> Result<Self> {
        let base = topo.write_base_corefile(&base_corefile()?)?;
        let kube_dns_dir = topo.write_kube_dns_configmap(&[("stubDomains", kube_dns)])?;
        let conf = topo.path("Corefile");
        let logs = topo.path("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join("node-cache.log");
        if log.exists() {
            std::fs::remove_file(&log)?;
        }
        let args: Vec<String> = [
            "-localip",
            &format!("{},{}", addrs::LINK_LOCAL, addrs::KUBE_DNS_SVC),
            "-conf",
            &conf.display().to_string(),
            "-basecorefile",
            &base.display().to_string(),
            "-kubednscm",
            &kube_dns_dir.display().to_string(),
            "-upstreamsvc",
            upstream_svc,
            "-coredns-binary",
            &topo.coredns.display().to_string(),
            "-kubeconfig",
            &kubeconfig.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let env = [("POD_NAMESPACE", NAMESPACE.to_string())];
        let pod = Pod {
            env: &env,
            ..Pod::new(POD)
        };
        let process = pod.start(topo, Path::new(NODE_CACHE), &args, &log)?;
        Ok(Self {
            process,
            conf,
            kube_dns: kube_dns_dir,
        })
    }

    fn wait_answering(&self, topo: &Topology) -> Result<()> {
        wait_until("node-cache to answer", DEADLINE, || {
            Ok(a(topo, names::CLUSTER).is_ok_and(|a| a == [names::CLUSTER_IP]))
        })
        .with_context(|| self.process.log())?;
        Ok(())
    }

    fn wait_log(&self, what: &str) -> Result<()> {
        wait_until(&format!("{what:?} in node-cache's log"), DEADLINE, || {
            Ok(self.process.log().contains(what))
        })
        .with_context(|| self.process.log())?;
        Ok(())
    }

    /// Kubelet's swap of the kube-dns ConfigMap volume.
    fn write_volume(&self, stub_domains: &str) -> Result<()> {
        write_configmap_volume(&self.kube_dns, &[("stubDomains", stub_domains)])
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(what: &str, timings: &[Timing]) -> (Duration, Duration) {
    let writes: Vec<Duration> = timings.iter().map(|t| t.from_write).collect();
    let kubectl: Vec<Duration> = timings.iter().map(|t| t.from_kubectl).collect();
    let (m, max) = (median(writes.clone()), *writes.iter().max().unwrap());
    println!(
        "{what}: API write → answered, {} runs: median {:.0} ms, min {:.0} ms, max {:.0} ms \
         (from kubectl's start: median {:.0} ms, max {:.0} ms)",
        timings.len(),
        m.as_secs_f64() * 1e3,
        writes.iter().min().unwrap().as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        median(kubectl.clone()).as_secs_f64() * 1e3,
        kubectl.iter().max().unwrap().as_secs_f64() * 1e3,
    );
    (m, max)
}

#[test]
#[ignore = "needs kube-apiserver and etcd: make kube-api-test"]
fn configmap_changes_through_the_api_are_answered_within_a_second() -> Result<()> {
    let _serial = serial();
    let topo = Topology::build()?;
    let mut api = ApiServer::start(&topo)?;
    api.apply(&manifest_rbac()?)?;
    let base = base_corefile()?;
    api.apply(&configmap("node-local-dns", &[("Corefile", &base)]))?;
    let stub = stub_domains(addrs::STUB_SERVER);
    let upstream = stub_domains(addrs::UPSTREAM);
    api.apply(&configmap("kube-dns", &[("stubDomains", &stub)]))?;
    // The volume lags: it still has an older stubDomains. The first Corefile is the API's.
    let agent = Agent::start(
        &topo,
        &api.kubeconfig("node-cache"),
        "kube-dns-upstream",
        &upstream,
    )?;
    agent.wait_answering(&topo)?;
    assert_eq!(a(&topo, names::STUB)?, [names::STUB_IP]);
    let log = agent.process.log();
    assert_eq!(
        log.matches("wrote Corefile").count(),
        1,
        "one render at startup, from the API's data\n{log}"
    );

    // stubDomains: the stub domain's server swapped back and forth (the stub server knows
    // the name; the upstream answers NXDOMAIN).
    let mut timings = Vec::new();
    for round in 0..8 {
        let (keys, want): (&str, &[&str]) = if round % 2 == 0 {
            (&upstream, &[])
        } else {
            (&stub, &[names::STUB_IP])
        };
        let t = timed_apply(
            &api,
            ("configmaps", "kube-dns"),
            &configmap("kube-dns", &[("stubDomains", keys)]),
            || a(&topo, names::STUB).is_ok_and(|a| a == want),
        )
        .with_context(|| format!("round {round}\n{}", agent.process.log()))?;
        timings.push(t);
    }
    let (stub_median, stub_max) = report("kube-dns stubDomains", &timings);

    // The node-local-dns template: a new zone each time, with an answer of its own.
    let mut timings = Vec::new();
    for round in 0..5 {
        let name = format!("r{round}.api.test");
        let ip = format!("192.0.2.{}", 100 + round);
        let template = format!(
            "{base}\napi.test:53 {{\n    bind {}\n    hosts {{\n        {ip} {name}\n    }}\n}}\n",
            addrs::LINK_LOCAL
        );
        let t = timed_apply(
            &api,
            ("configmaps", "node-local-dns"),
            &configmap("node-local-dns", &[("Corefile", &template)]),
            || a(&topo, &name).is_ok_and(|a| a == [ip.as_str()]),
        )
        .with_context(|| format!("template round {round}\n{}", agent.process.log()))?;
        timings.push(t);
    }
    let (template_median, template_max) = report("node-local-dns Corefile", &timings);
    for (median, max) in [(stub_median, stub_max), (template_median, template_max)] {
        assert!(median < Duration::from_millis(300), "median {median:?}");
        assert!(max < Duration::from_secs(1), "max {max:?}");
    }

    // The API's stubDomains (the upstream) are newer than the volume's (the stub server).
    api.apply(&configmap("kube-dns", &[("stubDomains", &upstream)]))?;
    wait_until("the API's stubDomains", DEADLINE, || {
        Ok(a(&topo, names::STUB).is_ok_and(|a| a.is_empty()))
    })?;
    // The apiserver goes down, and the lagging volume swaps in its old content: the
    // configuration must not move back to it.
    agent.write_volume(&stub)?;
    api.stop_apiserver();
    agent.wait_log("using the mounted ConfigMaps, retrying with back-off")?;
    agent.write_volume(&stub)?;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(1) {
        let answer = a(&topo, names::STUB)?;
        assert!(
            answer.is_empty(),
            "the stale volume replaced the API's newer stubDomains: {answer:?}\n{}",
            agent.process.log()
        );
    }
    // The volume catches up to what the API said; from then on it is the source.
    agent.write_volume(&upstream)?;
    agent.wait_log("the kube-dns ConfigMap: the mounted volume caught up")?;
    agent.write_volume(&stub)?;
    wait_until("the volume's newer stubDomains", DEADLINE, || {
        Ok(a(&topo, names::STUB).is_ok_and(|a| a == [names::STUB_IP]))
    })
    .with_context(|| agent.process.log())?;
    Ok(())
}

#[test]
#[ignore = "needs kube-apiserver and etcd: make kube-api-test"]
fn a_forbidden_api_is_said_once_and_the_mounted_files_serve() -> Result<()> {
    let _serial = serial();
    let topo = Topology::build()?;
    let api = ApiServer::start(&topo)?;
    // What the API holds differs from the volume: only the volume may be served.
    api.apply(&configmap(
        "kube-dns",
        &[("stubDomains", &stub_domains(addrs::UPSTREAM))],
    ))?;
    let stub = stub_domains(addrs::STUB_SERVER);
    // A Service only the API could tell, and no access: an error, as upstream's missing
    // variable is (not a wait that would never end): kubelet's restart brings the variable.
    let svc = format!("{NAMESPACE}/kube-dns-upstream");
    let mut lone = Agent::start(&topo, &api.kubeconfig("nobody"), &svc, &stub)?;
    let status = lone.process.wait_exit(DEADLINE)?;
    let log = lone.process.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("__PILLAR__CLUSTER__DNS__"), "{log}");
    assert!(!log.contains("waiting for the Service"), "{log}");
    drop(lone);

    let agent = Agent::start(&topo, &api.kubeconfig("nobody"), "kube-dns-upstream", &stub)?;
    agent.wait_answering(&topo)?;
    agent.wait_log("403 Forbidden")?;
    assert_eq!(a(&topo, names::STUB)?, [names::STUB_IP]);
    // The volume still drives changes, as upstream.
    agent.write_volume(&stub_domains(addrs::UPSTREAM))?;
    wait_until("the volume's change", DEADLINE, || {
        Ok(a(&topo, names::STUB).is_ok_and(|a| a.is_empty()))
    })
    .with_context(|| agent.process.log())?;
    let log = agent.process.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Kubernetes API:"))
        .collect();
    assert_eq!(said.len(), 1, "one line for a forbidden API, got:\n{log}");
    // Quiet: no warning or error (but this kernel's lack of a dummy link type).
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| !l.contains("no dummy link type"))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}\n{log}");

    // No permission for Events either: said once, however many there would be.
    for i in 0..3 {
        agent.write_volume(&invalid_stub_domains(i))?;
        agent.wait_log(&format!("swap-{i}.invalid.test"))?;
    }
    agent.wait_log("Kubernetes Events on this pod are not written (403")?;
    std::thread::sleep(Duration::from_secs(2)); // a retry or two
    let log = agent.process.log();
    assert_eq!(log.matches("Kubernetes Events").count(), 1, "{log}");
    Ok(())
}

#[test]
#[ignore = "needs kube-apiserver and etcd: make kube-api-test"]
fn the_upstream_service_is_found_and_followed_through_the_api() -> Result<()> {
    let _serial = serial();
    let topo = Topology::build()?;
    let api = ApiServer::start(&topo)?;
    api.apply(&manifest_rbac()?)?;
    // Started before its Service exists (no <SVC>_SERVICE_HOST for another namespace's).
    let svc = format!("{NAMESPACE}/kube-dns-upstream");
    let agent = Agent::start(
        &topo,
        &api.kubeconfig("node-cache"),
        &svc,
        &stub_domains(addrs::STUB_SERVER),
    )?;
    agent.wait_log("waiting for the Service through the Kubernetes API")?;
    api.apply(&service("kube-dns-upstream", addrs::KUBE_DNS_UPSTREAM_SVC))?;
    agent.wait_answering(&topo)?;
    // Recreated with another ClusterIP: re-rendered.
    api.kubectl(&["delete", "service", "kube-dns-upstream"])?;
    let t = timed_apply(
        &api,
        ("services", "kube-dns-upstream"),
        &service("kube-dns-upstream", "10.96.0.12"),
        || std::fs::read_to_string(&agent.conf).is_ok_and(|c| c.contains("forward . 10.96.0.12")),
    )
    .with_context(|| agent.process.log())?;
    report("recreated Service → rendered", &[t]);
    Ok(())
}

/// `f` with an admin API client, run on a thread in the node namespace (where the apiserver
/// listens).
fn with_client<T, F>(
    api: &ApiServer,
    f: impl FnOnce(kube::Client) -> F + Send + 'static,
) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>>,
{
    let kubeconfig = api.kubeconfig("admin");
    api.on_node(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let file = kube::config::Kubeconfig::read_from(&kubeconfig)?;
            let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
            f(kube::Client::try_from(config)?).await
        })
    })
}

/// A stubDomains node-cache refuses, naming swap `i`.
fn invalid_stub_domains(i: usize) -> String {
    format!(r#"{{"swap-{i}.invalid.test": []}}"#)
}

/// The pod's Events with `reason`: (name, count).
fn events(api: &ApiServer, reason: &'static str) -> Result<Vec<(String, i32)>> {
    with_client(api, move |client| async move {
        let list = Api::<Event>::namespaced(client, NAMESPACE)
            .list(&ListParams::default())
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(POD))
            .map(|e| {
                let count = e.series.as_ref().map_or(1, |s| s.count);
                (e.metadata.name.unwrap_or_default(), count)
            })
            .collect())
    })
}

#[test]
#[ignore = "needs kube-apiserver and etcd: make kube-api-test"]
fn a_thousand_invalid_configmap_swaps_are_one_event_counting_them() -> Result<()> {
    const SWAPS: usize = 1000;
    let _serial = serial();
    let topo = Topology::build()?;
    let api = ApiServer::start(&topo)?;
    api.apply(&manifest_rbac()?)?;
    api.apply(&configmap(
        "node-local-dns",
        &[("Corefile", &base_corefile()?)],
    ))?;
    let stub = stub_domains(addrs::STUB_SERVER);
    api.apply(&configmap("kube-dns", &[("stubDomains", &stub)]))?;
    let agent = Agent::start(
        &topo,
        &api.kubeconfig("node-cache"),
        "kube-dns-upstream",
        &stub,
    )?;
    agent.wait_answering(&topo)?;

    // As fast as the apiserver takes them, each a different mistake.
    let started = Instant::now();
    with_client(&api, |client| async move {
        let configmaps = Api::<ConfigMap>::namespaced(client, NAMESPACE);
        for i in 0..SWAPS {
            let change = ConfigMap {
                data: Some(BTreeMap::from([(
                    "stubDomains".to_string(),
                    invalid_stub_domains(i),
                )])),
                ..Default::default()
            };
            configmaps
                .patch("kube-dns", &PatchParams::default(), &Patch::Merge(&change))
                .await?;
        }
        Ok(())
    })?;
    let written = started.elapsed();
    // The watch delivers the writes in order: once the last is refused, every one node-cache
    // saw has been (a burst may reach it as fewer renders).
    agent.wait_log(&format!("swap-{}.invalid.test", SWAPS - 1))?;
    let refused = agent
        .process
        .log()
        .matches("kube-dns ConfigMap (API): ")
        .count();
    let mut seen = Vec::new();
    wait_until("the Event to count every refusal", DEADLINE, || {
        seen = events(&api, "InvalidConfigMap")?;
        Ok(seen.iter().map(|(_, c)| *c as usize).sum::<usize>() == refused)
    })
    .with_context(|| format!("{refused} refusals, Events {seen:?}"))?;
    println!(
        "{SWAPS} invalid kube-dns swaps written in {:.1} s; node-cache refused {refused} renders; \
         Event objects: {}, counts {:?}",
        written.as_secs_f64(),
        seen.len(),
        seen.iter().map(|(_, c)| c).collect::<Vec<_>>()
    );
    assert!(
        refused >= SWAPS / 10,
        "{refused} refusals for {SWAPS} swaps"
    );
    assert_eq!(seen.len(), 1, "one Event for the whole burst: {seen:?}");

    // CoreDNS killed: restarted, and said on the pod.
    let coredns = testbed::process::children_of(agent.process.pid())
        .into_iter()
        .find(|(_, comm)| comm == "coredns")
        .context("no CoreDNS under node-cache")?;
    testbed::process::send(coredns.0, nix::sys::signal::Signal::SIGKILL)?;
    wait_until("a CoreDNSExited Event", DEADLINE, || {
        Ok(!events(&api, "CoreDNSExited")?.is_empty())
    })
    .with_context(|| agent.process.log())?;
    agent.wait_answering(&topo)?;
    Ok(())
}
