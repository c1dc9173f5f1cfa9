//! The Helm chart (`charts/node-local-dns`): `helm template` for every values file of its
//! `ci/` matrix, each output typed with no unknown field (the ServiceMonitor against a
//! declared shape of its own), the rendered Corefile against a golden file per case
//! (`tests/golden/chart/<case>.Corefile`; `UPDATE_GOLDEN=1` rewrites them), and the defaults
//! equal to what `hack/install.sh` applies, so chart and manifest cannot drift apart.
//!
//! Helm comes from `$HELM_BINARY`, else from `hack/helm.sh` (pinned, cached under `.cache/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use addon_manifests::{check, diff, Object};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod common;
use common::{configmap, daemonsets, downward_env, liveness_http, rbac, DOWNWARD_ENV};

const RELEASE: &str = "node-local-dns";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn chart() -> PathBuf {
    repo().join("charts/node-local-dns")
}

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os("HELM_BINARY") {
            return PathBuf::from(path);
        }
        let out = Command::new(repo().join("hack/helm.sh"))
            .output()
            .expect("run hack/helm.sh");
        assert!(
            out.status.success(),
            "hack/helm.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(stdout.lines().last().expect("a path").trim())
    })
}

fn helm_template(args: &[&str]) -> Output {
    Command::new(helm())
        .args(["template", RELEASE])
        .arg(chart())
        .args(args)
        .output()
        .expect("run helm template")
}

/// `helm template` with the case's values file (`ci/<case>-values.yaml`) and `extra` args.
fn render(case: &str, extra: &[&str]) -> String {
    let values = chart().join(format!("ci/{case}-values.yaml"));
    let mut args = vec!["-f", values.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = helm_template(&args);
    assert!(
        out.status.success(),
        "helm template ({case}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The cases of the matrix: every `ci/<case>-values.yaml`.
fn cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(chart().join("ci"))
        .expect("charts/node-local-dns/ci")
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix("-values.yaml").map(str::to_string)
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "the matrix shrank: {cases:?}");
    cases
}

// ---- A ServiceMonitor's declared shape (no k8s-openapi type exists for the CRD) ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMonitorSpec {
    namespace_selector: NamespaceSelector,
    selector: LabelSelector,
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceSelector {
    match_names: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    port: String,
    path: String,
    honor_labels: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scrape_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    relabelings: Vec<Relabel>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    metric_relabelings: Vec<Relabel>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Relabel {
    action: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    source_labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replacement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
}

/// One rendering, checked: the addon's kinds through `addon_manifests::check`, ServiceMonitors
/// through their declared shape, nothing else allowed.
struct Rendered {
    objects: Vec<Object>,
    monitors: Vec<ServiceMonitor>,
}

fn checked(case: &str, text: &str) -> Rendered {
    let mut addon_docs = Vec::new();
    let mut monitors = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{case}: YAML: {e}"));
        if value.is_null() {
            continue;
        }
        if value.get("kind").and_then(Value::as_str) == Some("ServiceMonitor") {
            let monitor: ServiceMonitor = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("{case}: ServiceMonitor: {e}"));
            let problems = diff(&value, &serde_json::to_value(&monitor).unwrap());
            assert!(problems.is_empty(), "{case}: ServiceMonitor: {problems:?}");
            assert_eq!(monitor.api_version, "monitoring.coreos.com/v1");
            monitors.push(monitor);
        } else {
            addon_docs.push(serde_norway::to_string(&value).unwrap());
        }
    }
    let objects = check(&addon_docs.join("---\n"))
        .unwrap_or_else(|e| panic!("{case}: typed manifest check failed:\n{e}"));
    Rendered { objects, monitors }
}

impl Rendered {
    fn daemonsets(&self) -> Vec<&DaemonSet> {
        daemonsets(&self.objects)
    }

    fn service(&self, name: &str) -> Option<&Service> {
        self.objects.iter().find_map(|o| match o {
            Object::Service(s) if s.metadata.name.as_deref() == Some(name) => Some(&**s),
            _ => None,
        })
    }

    fn corefile(&self) -> &str {
        configmap(&self.objects)
            .data
            .as_ref()
            .and_then(|d| d.get("Corefile"))
            .expect("its Corefile key")
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.objects.iter().map(Object::id).collect();
        ids.sort();
        ids
    }
}

fn pod(ds: &DaemonSet) -> &PodSpec {
    ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn pod_annotations(ds: &DaemonSet) -> &BTreeMap<String, String> {
    let template = &ds.spec.as_ref().unwrap().template;
    template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()
}

fn container(ds: &DaemonSet) -> &Container {
    let pod = pod(ds);
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

fn args(ds: &DaemonSet) -> Vec<&str> {
    container(ds)
        .args
        .as_deref()
        .unwrap()
        .iter()
        .map(String::as_str)
        .collect()
}

/// The value after `flag` in the container's args.
fn flag<'a>(ds: &'a DaemonSet, name: &str) -> &'a str {
    let args = container(ds).args.as_deref().unwrap();
    let i = args.iter().position(|a| a == name).unwrap_or_else(|| {
        panic!("no {name} in {args:?}");
    });
    &args[i + 1]
}

/// One server block of a Corefile, by its zone line (`.:53`).
fn server_block<'a>(corefile: &'a str, zone: &str) -> &'a str {
    let start = corefile
        .find(&format!("{zone} {{\n"))
        .filter(|&i| i == 0 || corefile.as_bytes()[i - 1] == b'\n')
        .unwrap_or_else(|| panic!("no {zone} block in\n{corefile}"));
    let rest = &corefile[start..];
    // The addon indents a server block's closing `}` like its directives, so a block ends
    // where the next zone line (unindented) starts.
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| rest[i..].starts_with(|c: char| !c.is_whitespace()))
        .unwrap_or(rest.len());
    &rest[..end]
}

// ---- hack/install.sh, the reference the defaults must equal ----

fn install_sh(args: &[&str]) -> Rendered {
    let out = Command::new("bash")
        .arg(repo().join("hack/install.sh"))
        .arg("--dry-run")
        .args(args)
        .env_remove("NODE_CACHE_IMAGE")
        .output()
        .expect("run hack/install.sh");
    assert!(
        out.status.success(),
        "install.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    checked("install.sh", &String::from_utf8(out.stdout).unwrap())
}

const CHART_IMAGE: &str = "registry.example.invalid/dns/k8s-dns-node-cache:v0.1.0";

/// The chart's `case` with its defaults, and what `hack/install.sh` renders with `install_args`
/// (and the chart's image), checked to be the same addon; both returned.
fn same_as_installed(
    case: &str,
    install_args: &[&str],
    normalise: impl Fn(&str) -> String,
) -> (Rendered, Rendered) {
    let chart = checked(case, &render(case, &[]));
    let args: Vec<&str> = install_args
        .iter()
        .copied()
        .chain(["--image", CHART_IMAGE])
        .collect();
    let manifest = install_sh(&args);
    assert_same_addon(&chart, &manifest, normalise);
    (chart, manifest)
}

/// The chart and the manifest run the same pods: every DaemonSet's pod spec and update
/// strategy are equal, as are the objects' names and the Corefile (after `normalise`).
fn assert_same_addon(chart: &Rendered, manifest: &Rendered, normalise: impl Fn(&str) -> String) {
    assert_eq!(chart.ids(), manifest.ids());
    assert_eq!(chart.corefile(), normalise(manifest.corefile()));
    let (ours, theirs) = (chart.daemonsets(), manifest.daemonsets());
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.metadata.name, b.metadata.name);
        let (sa, sb) = (a.spec.as_ref().unwrap(), b.spec.as_ref().unwrap());
        assert_eq!(sa.selector, sb.selector);
        assert_eq!(sa.update_strategy, sb.update_strategy);
        assert_eq!(
            sa.template.metadata.as_ref().unwrap().labels,
            sb.template.metadata.as_ref().unwrap().labels
        );
        assert_eq!(pod(a), pod(b), "{:?}", a.metadata.name);
    }
}

// ---- The tests ----

#[test]
fn every_case_renders_typed_with_its_golden_corefile() {
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/chart");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases();
    for case in &cases {
        let rendered = checked(case, &render(case, &[]));
        let golden = golden_dir.join(format!("{case}.Corefile"));
        if update {
            std::fs::create_dir_all(&golden_dir).unwrap();
            std::fs::write(&golden, rendered.corefile()).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", golden.display()));
        assert_eq!(
            rendered.corefile(),
            want,
            "{case}: the Corefile differs from {}",
            golden.display()
        );
        assert_contract(case, &rendered);
    }
    // A golden without its case is a knob that lost its test.
    let mut goldens: Vec<String> = std::fs::read_dir(&golden_dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".Corefile").map(str::to_string)
        })
        .collect();
    goldens.sort();
    assert_eq!(goldens, cases);
}

/// What holds in every rendering: the agent's privileges, volumes and probe target, and
/// `-localip` naming exactly the addresses the Corefile binds.
/// What `manifests/nodelocaldns.yaml`'s DaemonSet adds.
fn manifest_capabilities() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/nodelocaldns.yaml"
    );
    let objects = addon_manifests::check(&std::fs::read_to_string(path).unwrap()).unwrap();
    objects
        .iter()
        .find_map(|o| o.added_capabilities())
        .expect("the manifest's DaemonSet adds capabilities")
}

fn assert_contract(case: &str, r: &Rendered) {
    let sets = r.daemonsets();
    assert!(!sets.is_empty(), "{case}: no DaemonSet");
    for ds in sets {
        let p = pod(ds);
        assert_eq!(p.host_network, Some(true), "{case}");
        assert_eq!(p.dns_policy.as_deref(), Some("Default"), "{case}");
        let c = container(ds);
        let security = c.security_context.as_ref().unwrap();
        let caps = security.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(
            caps.add.as_deref().unwrap(),
            manifest_capabilities(),
            "{case}: the chart grants exactly the manifest's capabilities"
        );
        assert_eq!(security.read_only_root_filesystem, Some(true));
        let downward = downward_env(c);
        for want in DOWNWARD_ENV {
            assert!(
                downward.contains(&want),
                "{case}: {want:?} not in {downward:?}"
            );
        }
        assert!(
            c.ports.as_ref().is_none_or(|p| p.is_empty()),
            "{case}: host ports"
        );
        let mounts: Vec<&str> = c
            .volume_mounts
            .as_deref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(
            mounts,
            [
                "/run/xtables.lock",
                "/etc/coredns",
                "/etc/kube-dns",
                "/run/node-cache"
            ],
            "{case}"
        );
        assert_eq!(flag(ds, "-conf"), "/run/node-cache/Corefile");
        if case != "custom-config" {
            let local_ips = flag(ds, "-localip").replace(',', " ");
            for zone in [".:53", "in-addr.arpa:53"] {
                assert!(
                    server_block(r.corefile(), zone).contains(&format!("\n    bind {local_ips}\n")),
                    "{case}: {zone} does not bind -localip {local_ips}"
                );
            }
            let probe = liveness_http(c);
            let health = format!(
                "health {}:{}",
                probe.host.as_deref().unwrap(),
                match &probe.port {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) =>
                        p.to_string(),
                    other => panic!("{case}: probe port {other:?}"),
                }
            );
            assert!(
                r.corefile().contains(&health),
                "{case}: probe is not {health}"
            );
        }
    }
}

#[test]
fn the_defaults_are_the_manifest_as_install_sh_renders_it_for_iptables() {
    let iptables = ["--mode", "iptables", "--kube-dns-ip", "10.96.0.10"];
    let (chart, manifest) = same_as_installed("default", &iptables, str::to_string);
    // The API mode's grant, too (names, rules and subject).
    let ((role, binding), (their_role, their_binding)) =
        (rbac(&chart.objects), rbac(&manifest.objects));
    assert_eq!(role.rules, their_role.rules);
    assert_eq!(binding.subjects, their_binding.subjects);
}

#[test]
fn ipvs_mode_is_the_manifest_as_install_sh_renders_it_for_ipvs() {
    let ipvs = [
        "--mode",
        "ipvs",
        "--kube-dns-ip",
        "10.100.0.10",
        "--domain",
        "example.internal",
        "--local-ip",
        "169.254.0.53",
    ];
    // The manifest leaves the server placeholder on the bind line for node-cache to remove;
    // the chart does not write it.
    let (chart, _) =
        same_as_installed("ipvs", &ipvs, |c| c.replace(" __PILLAR__DNS__SERVER__", ""));
    assert_eq!(flag(chart.daemonsets()[0], "-localip"), "169.254.0.53");
}

#[test]
fn the_ha_twin_is_the_manifest_as_install_sh_renders_it_with_ha() {
    let ha = ["--ha", "--mode", "iptables", "--kube-dns-ip", "10.96.0.10"];
    let (chart, _) = same_as_installed("ha", &ha, str::to_string);
    let names: Vec<&str> = chart
        .daemonsets()
        .iter()
        .map(|d| d.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["node-local-dns", "node-local-dns-b"]);
    // The metrics Service selects the first DaemonSet's pods only, as the manifest's.
    let selector = chart
        .service("node-local-dns")
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .selector
        .clone();
    assert_eq!(
        selector,
        Some(BTreeMap::from([(
            "k8s-app".to_string(),
            "node-local-dns".to_string()
        )]))
    );
}

#[test]
fn nftables_mode_takes_the_kube_dns_ip_with_the_nftables_backend() {
    let nftables = ["--mode", "nftables", "--kube-dns-ip", "10.96.0.10"];
    let (r, _) = same_as_installed("nftables", &nftables, str::to_string);
    let ds = r.daemonsets()[0];
    assert_eq!(flag(ds, "-localip"), "169.254.20.10,10.96.0.10");
    assert!(
        args(ds).contains(&"-firewall-backend=nftables"),
        "{:?}",
        args(ds)
    );
    // An explicit backend wins over the mode's.
    let r = checked(
        "nftables",
        &render("nftables", &["--set", "config.firewallBackend=auto"]),
    );
    let a = args(r.daemonsets()[0]);
    assert!(a.contains(&"-firewall-backend=auto"), "{a:?}");
    assert!(!a.contains(&"-firewall-backend=nftables"), "{a:?}");
}

#[test]
fn the_aaaa_filter_is_the_documented_snippet_in_the_non_cluster_block_only() {
    let snippet: String = std::fs::read_to_string(repo().join("templates/aaaa-filter.Corefile"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(snippet.contains("template ANY AAAA"), "{snippet}");
    let r = checked("no-ipv6-lookups", &render("no-ipv6-lookups", &[]));
    let corefile = r.corefile();
    assert!(
        server_block(corefile, ".:53").contains(&snippet),
        "the .:53 block lacks the snippet:\n{corefile}"
    );
    assert_eq!(corefile.matches("template ").count(), 1, "{corefile}");
    let off = checked("default", &render("default", &[]));
    assert!(!off.corefile().contains("template "));
}

#[test]
fn operator_values_reach_the_daemonset_service_and_servicemonitor() {
    let r = checked("operator", &render("operator", &[]));
    let ds = r.daemonsets()[0];
    let c = container(ds);
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.invalid/mirror/k8s-dns-node-cache:v9.9.9")
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        args(ds),
        [
            "-localip",
            "169.254.20.10,10.96.0.10",
            "-conf",
            "/run/node-cache/Corefile",
            "-upstreamsvc",
            "coredns-upstream",
            "-pidfile",
            "/run/node-cache/node-cache.pid",
            "-readyfile",
            "/run/node-cache/ready",
            "-firewall-backend=auto",
            "-health-port=8081",
            "-setupinterface=false",
            "-skipteardown=true",
            "-syncinterval=30s",
            "-coredns-uid=0",
        ]
    );
    let liveness = c.liveness_probe.as_ref().unwrap();
    assert_eq!(liveness.period_seconds, Some(20));
    assert_eq!(liveness.failure_threshold, Some(5));
    assert_eq!(liveness.initial_delay_seconds, Some(60));
    let readiness = c.readiness_probe.as_ref().expect("a readiness probe");
    assert_eq!(
        readiness.exec.as_ref().unwrap().command.as_deref().unwrap(),
        [
            "/node-cache",
            "-readyfile=/run/node-cache/ready",
            "-checkready"
        ]
    );
    let p = pod(ds);
    assert_eq!(p.priority_class_name.as_deref(), Some("node-dns-critical"));
    assert_eq!(p.tolerations.as_ref().unwrap().len(), 1);
    assert_eq!(
        p.image_pull_secrets.as_ref().unwrap()[0].name,
        "mirror-pull"
    );
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "128Mi");
    assert!(r.corefile().contains("health 169.254.20.10:8081\n"));

    // Its own upstream Service: the chart makes none.
    assert!(r.service("kube-dns-upstream").is_none());
    // The ServiceMonitor scrapes both ports under the jobs the alerts and dashboard name,
    // and the pods carry no scrape annotations (Prometheus would scrape them twice).
    let annotations = pod_annotations(ds);
    assert!(
        !annotations.contains_key("prometheus.io/scrape"),
        "{annotations:?}"
    );
    assert_eq!(annotations["example.invalid/team"], "dns");
    let service = r.service("node-local-dns").expect("the metrics Service");
    let ports: Vec<(&str, i32)> = service
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_deref()
        .unwrap()
        .iter()
        .map(|p| (p.name.as_deref().unwrap(), p.port))
        .collect();
    assert_eq!(ports, [("metrics", 9253), ("agent-metrics", 9353)]);
    let [monitor] = &r.monitors[..] else {
        panic!("one ServiceMonitor, got {}", r.monitors.len());
    };
    assert_eq!(
        monitor.metadata.labels.as_ref().unwrap()["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        monitor.spec.selector.match_labels,
        service
            .metadata
            .labels
            .as_ref()
            .map(|l| BTreeMap::from([("k8s-app".to_string(), l["k8s-app"].clone())]))
    );
    let jobs: Vec<(&str, &str)> = monitor
        .spec
        .endpoints
        .iter()
        .map(|e| {
            let job = e
                .relabelings
                .iter()
                .find(|r| r.target_label.as_deref() == Some("job"))
                .and_then(|r| r.replacement.as_deref())
                .unwrap();
            (e.port.as_str(), job)
        })
        .collect();
    assert_eq!(
        jobs,
        [
            ("metrics", "node-local-dns"),
            ("agent-metrics", "node-local-dns-agent")
        ]
    );
    for e in &monitor.spec.endpoints {
        assert_eq!(e.interval.as_deref(), Some("30s"));
        assert!(e
            .relabelings
            .iter()
            .any(|r| r.source_labels == ["__meta_kubernetes_pod_node_name"]
                && r.target_label.as_deref() == Some("node")));
        assert_eq!(e.metric_relabelings[0].regex.as_deref(), Some("go_.*"));
    }
}

#[test]
fn a_changed_corefile_rolls_the_pods() {
    // `helm upgrade --wait` then returns once every node serves the new Corefile.
    let checksum = |extra: &[&str]| {
        let r = checked("default", &render("default", extra));
        pod_annotations(r.daemonsets()[0])["checksum/config"].clone()
    };
    let before = checksum(&[]);
    assert_eq!(before, checksum(&["--set", "resources.requests.cpu=30m"]));
    assert_ne!(before, checksum(&["--set", "config.cacheTTL=10"]));
}

#[test]
fn values_that_are_not_what_they_claim_are_refused_by_name() {
    // values.schema.json refuses most by their path (`/config/...`); the templates' own
    // `fail`s name the value as `config.…` (both run on `helm template` and `helm lint`).
    for (set, named) in [
        ("config.kubeProxyMode=userspace", "/config/kubeProxyMode"),
        ("config.firewallBackend=ipfw", "/config/firewallBackend"),
        ("config.commProtocol=udp_only", "/config/commProtocol"),
        (
            "config.upstreamCommProtocol=tls",
            "/config/upstreamCommProtocol",
        ),
        (
            "config.serveStale.enabled=true,config.serveStale.refreshMode=later",
            "/config/serveStale/refreshMode",
        ),
        (
            "config.serveStale.preferPositive=some",
            "/config/serveStale/preferPositive",
        ),
        (
            "config.serveStale.responseTTL=500ms",
            "/config/serveStale/responseTTL",
        ),
        (
            "config.serveStale.failureRecheck=soon",
            "/config/serveStale/failureRecheck",
        ),
        (
            "config.prefetch.percentage=5%",
            "/config/prefetch/percentage",
        ),
        ("config.prefetch.amount=many", "/config/prefetch/amount"),
        (
            "config.clusterCache.denialTTL=-1",
            "/config/clusterCache/denialTTL",
        ),
        ("config.cacheTtl=30", "cacheTtl"),
    ] {
        let out = helm_template(&["--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(stderr.contains(named), "{set}: {stderr}");
    }
}
