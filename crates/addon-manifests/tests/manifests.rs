//! The shipped manifests (`manifests/*.yaml`) and what `hack/install.sh` renders from them:
//! every object is typed and free of unknown fields, and the DaemonSet keeps the upstream
//! addon's contract (flags, volumes, probe, privileges).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use addon_manifests::{check, Error, FieldProblem, Object};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Container;

mod common;
use common::{configmap, daemonsets, downward_env, liveness_http, rbac, DOWNWARD_ENV};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn addon_text() -> String {
    std::fs::read_to_string(repo().join("manifests/nodelocaldns.yaml")).expect("read manifest")
}

fn checked(text: &str) -> Vec<Object> {
    check(text).unwrap_or_else(|e| panic!("manifest check failed:\n{e}"))
}

fn daemonset(objects: &[Object]) -> &DaemonSet {
    daemonsets(objects).first().copied().expect("a DaemonSet")
}

fn container(ds: &DaemonSet) -> &Container {
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

fn corefile(objects: &[Object]) -> &str {
    configmap(objects)
        .data
        .as_ref()
        .and_then(|d| d.get("Corefile"))
        .expect("Corefile key")
}

#[test]
fn every_manifest_is_typed_and_has_no_unknown_field() {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("manifests"))
        .expect("manifests/")
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests found");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if let Err(e) = check(&text) {
            panic!("{}:\n{e}", file.display());
        }
    }
}

#[test]
fn the_addon_has_the_upstream_objects() {
    let ids: Vec<String> = checked(&addon_text()).iter().map(Object::id).collect();
    assert_eq!(
        ids,
        [
            "ServiceAccount/node-local-dns",
            "Service/kube-dns-upstream",
            "ConfigMap/node-local-dns",
            "DaemonSet/node-local-dns",
            "Service/node-local-dns",
            "Role/node-local-dns",
            "RoleBinding/node-local-dns",
        ]
    );
}

/// node-cache's API mode needs to read two ConfigMaps and the upstream Service, by name, and
/// to write its pod's Events (events.k8s.io/v1, the API node-cache uses); nothing else (no
/// Secrets, no other ConfigMap, no other writes), bound to the DaemonSet's ServiceAccount only.
#[test]
fn the_role_grants_the_api_mode_only_what_it_reads_by_name() {
    let objects = checked(&addon_text());
    let (role, binding) = rbac(&objects);
    assert_eq!(
        serde_json::to_value(&role.rules).unwrap(),
        serde_json::json!([
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["node-local-dns", "kube-dns"],
                "verbs": ["get", "list", "watch"]
            },
            {
                "apiGroups": [""],
                "resources": ["services"],
                "resourceNames": ["kube-dns-upstream"],
                "verbs": ["get", "list", "watch"]
            },
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}
        ])
    );
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, role.metadata.name.clone().unwrap());
    let subjects: Vec<(String, String, Option<String>)> = binding
        .subjects
        .iter()
        .flatten()
        .map(|s| (s.kind.clone(), s.name.clone(), s.namespace.clone()))
        .collect();
    let ds = daemonset(&objects);
    let sa = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        subjects,
        [(
            "ServiceAccount".to_string(),
            sa.service_account_name.clone().unwrap(),
            Some("kube-system".to_string())
        )]
    );
}

#[test]
fn a_misspelt_field_is_caught_with_its_path() {
    let cases = [
        (
            "hostNetwork: true",
            "hostNetwrok: true",
            "spec.template.spec.hostNetwrok",
        ),
        (
            "livenessProbe:",
            "livenesProbe:",
            "spec.template.spec.containers[0].livenesProbe",
        ),
        (
            "          initialDelaySeconds: 60",
            "          initialDelaySecond: 60",
            "spec.template.spec.containers[0].livenessProbe.initialDelaySecond",
        ),
    ];
    for (right, wrong, path) in cases {
        let text = addon_text();
        assert!(
            text.contains(right),
            "fixture line {right:?} not in the manifest"
        );
        let errors = check(&text.replacen(right, wrong, 1)).expect_err(wrong).0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        match &errors[0] {
            Error::Fields { id, problems, .. } => {
                assert_eq!(id, "DaemonSet/node-local-dns");
                assert_eq!(problems, &[FieldProblem::Unknown { path: path.into() }]);
            }
            other => panic!("{wrong}: unexpected error {other}"),
        }
    }
}

#[test]
fn a_field_at_the_wrong_level_is_caught() {
    // `capabilities` belongs under securityContext, not beside it.
    let text = addon_text().replacen(
        "          allowPrivilegeEscalation: false\n          capabilities:",
        "          allowPrivilegeEscalation: false\n        capabilities:",
        1,
    );
    let errors = check(&text).expect_err("misplaced").0;
    assert!(
        errors[0].to_string().contains("containers[0].capabilities"),
        "{}",
        errors[0]
    );
}

#[test]
fn the_configmap_corefile_is_the_base_template() {
    let template = std::fs::read_to_string(repo().join("templates/Corefile.base")).unwrap();
    let body: String = template
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(corefile(&checked(&addon_text())), body);
}

#[test]
fn the_daemonset_keeps_the_addon_contract() {
    let objects = checked(&addon_text());
    let ds = daemonset(&objects);
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
    assert_eq!(pod.service_account_name.as_deref(), Some("node-local-dns"));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );

    let c = container(ds);
    assert!(c.image.as_deref().unwrap().contains("/k8s-dns-node-cache:"));
    assert_eq!(
        c.args.as_deref().unwrap(),
        [
            "-localip",
            "__PILLAR__LOCAL__DNS__,__PILLAR__DNS__SERVER__",
            "-conf",
            "/run/node-cache/Corefile",
            "-upstreamsvc",
            "kube-dns-upstream",
            "-pidfile",
            "/run/node-cache/node-cache.pid",
            "-readyfile",
            "/run/node-cache/ready"
        ]
    );
    // Ready only while this pod's own instance serves: the exec probe reads the same file.
    let ready = c.readiness_probe.as_ref().expect("a readinessProbe");
    assert_eq!(
        ready.exec.as_ref().and_then(|e| e.command.as_deref()),
        Some(
            &[
                "/node-cache",
                "-readyfile",
                "/run/node-cache/ready",
                "-checkready"
            ]
            .map(String::from)[..]
        )
    );
    // Peers on the node are labelled by pod name, and the API mode's Events name the pod: the
    // downward API.
    assert_eq!(downward_env(c), DOWNWARD_ENV);
    // Least privilege: nothing of the runtime's default set, only what node-cache uses
    // (crates/node-cache/tests/privileges.rs runs the agent with exactly this set).
    let security = c.security_context.as_ref().unwrap();
    let caps = security.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(
        caps.add.as_deref().unwrap(),
        [
            "NET_ADMIN",
            "NET_RAW",
            "NET_BIND_SERVICE",
            "SETUID",
            "SETGID",
            "KILL"
        ]
    );
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));

    let probe = liveness_http(c);
    assert_eq!(probe.host.as_deref(), Some("__PILLAR__LOCAL__DNS__"));
    assert_eq!(probe.path.as_deref(), Some("/health"));
    assert_eq!(
        probe.port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080)
    );

    let mounts: Vec<(&str, &str)> = c
        .volume_mounts
        .as_deref()
        .unwrap()
        .iter()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("xtables-lock", "/run/xtables.lock"),
            ("config-volume", "/etc/coredns"),
            ("kube-dns-config", "/etc/kube-dns"),
            ("run", "/run/node-cache"),
        ]
    );
    let run = pod
        .volumes
        .as_deref()
        .unwrap()
        .iter()
        .find(|v| v.name == "run")
        .unwrap();
    assert!(
        run.empty_dir.is_some(),
        "the rendered Corefile's volume is an emptyDir"
    );
    let volumes = pod.volumes.as_deref().unwrap();
    let lock = volumes.iter().find(|v| v.name == "xtables-lock").unwrap();
    let host = lock.host_path.as_ref().unwrap();
    assert_eq!(host.path, "/run/xtables.lock");
    assert_eq!(host.type_.as_deref(), Some("FileOrCreate"));
    let kube_dns = volumes
        .iter()
        .find(|v| v.name == "kube-dns-config")
        .unwrap();
    let cm = kube_dns.config_map.as_ref().unwrap();
    assert_eq!((cm.name.as_str(), cm.optional), ("kube-dns", Some(true)));
    let config = volumes.iter().find(|v| v.name == "config-volume").unwrap();
    let cm = config.config_map.as_ref().unwrap();
    assert_eq!(cm.name, "node-local-dns");
    let items = cm.items.as_deref().unwrap();
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("Corefile", "Corefile.base")
    );
}

// ---- hack/install.sh, offline ----

fn install(args: &[&str], path_prefix: Option<&Path>) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("hack/install.sh")).args(args);
    if let Some(dir) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    cmd.env_remove("NODE_CACHE_IMAGE");
    cmd.output().expect("run hack/install.sh")
}

fn rendered(args: &[&str], path_prefix: Option<&Path>) -> String {
    let out = install(args, path_prefix);
    assert!(
        out.status.success(),
        "install.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const IMAGE: &str = "registry.example.invalid/mirror/k8s-dns-node-cache:v9.9.9";

#[test]
fn install_renders_iptables_mode_like_the_upstream_recipe() {
    let text = rendered(
        &[
            "--dry-run",
            "--mode",
            "iptables",
            "--kube-dns-ip",
            "10.96.0.10",
            "--image",
            IMAGE,
        ],
        None,
    );
    let objects = checked(&text);
    let c = container(daemonset(&objects));
    assert_eq!(c.image.as_deref(), Some(IMAGE));
    assert_eq!(c.args.as_deref().unwrap()[1], "169.254.20.10,10.96.0.10");
    let probe = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.host.as_deref(), Some("169.254.20.10"));
    let corefile = corefile(&objects);
    assert!(corefile.starts_with("cluster.local:53 {"));
    assert!(corefile.contains("bind 169.254.20.10 10.96.0.10\n"));
    assert!(corefile.contains("health 169.254.20.10:8080\n"));
    // What node-cache itself fills stays for it.
    assert!(corefile.contains("forward . __PILLAR__CLUSTER__DNS__ {"));
    assert!(corefile.contains("forward . __PILLAR__UPSTREAM__SERVERS__\n"));
    for gone in [
        "__PILLAR__LOCAL__DNS__",
        "__PILLAR__DNS__DOMAIN__",
        "__PILLAR__DNS__SERVER__",
    ] {
        assert!(
            !text.contains(gone),
            "{gone} left in the iptables rendering"
        );
    }
}

#[test]
fn install_renders_ipvs_mode_like_the_upstream_recipe() {
    let text = rendered(
        &[
            "--dry-run",
            "--mode",
            "ipvs",
            "--kube-dns-ip",
            "10.96.0.10",
            "--domain",
            "example.internal",
            "--local-ip",
            "169.254.0.53",
        ],
        None,
    );
    let objects = checked(&text);
    let c = container(daemonset(&objects));
    // Without --image the manifest's own reference stays.
    assert!(c.image.as_deref().unwrap().contains("/k8s-dns-node-cache:"));
    assert_eq!(c.args.as_deref().unwrap()[1], "169.254.0.53");
    let corefile = corefile(&objects);
    assert!(corefile.starts_with("example.internal:53 {"));
    assert!(corefile.contains("forward . 10.96.0.10 {"));
    // The bind line keeps the server placeholder; node-cache removes it when rendering.
    assert!(corefile.contains("bind 169.254.0.53 __PILLAR__DNS__SERVER__\n"));
    assert!(!text.contains("__PILLAR__CLUSTER__DNS__"));
}

/// A scratch directory removed on drop, also when the test panics.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("addon-manifests-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn install_detects_mode_and_kube_dns_ip_with_kubectl() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("kubectl");
    let kubectl = dir.0.join("kubectl");
    std::fs::write(
        &kubectl,
        "#!/bin/sh\ncase \"$*\" in\n\
         *'configmap kube-proxy'*) printf 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\\nkind: KubeProxyConfiguration\\nmode: \"ipvs\"\\n' ;;\n\
         *'service kube-dns'*) printf '10.100.0.10' ;;\n\
         *) echo \"unexpected kubectl $*\" >&2; exit 1 ;;\n\
         esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = install(&["--dry-run"], Some(&dir.0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("kube-proxy mode: ipvs"), "{stderr}");
    assert!(
        stderr.contains("kube-dns Service IP: 10.100.0.10"),
        "{stderr}"
    );
    let objects = checked(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        container(daemonset(&objects)).args.as_deref().unwrap()[1],
        "169.254.20.10"
    );
    assert!(corefile(&objects).contains("forward . 10.100.0.10 {"));
}

#[test]
fn install_refuses_values_that_are_not_what_they_claim() {
    for args in [
        &[
            "--dry-run",
            "--mode",
            "iptables",
            "--kube-dns-ip",
            "10.96.0.10|x",
        ][..],
        &[
            "--dry-run",
            "--mode",
            "userspace",
            "--kube-dns-ip",
            "10.96.0.10",
        ][..],
        &[
            "--dry-run",
            "--mode",
            "iptables",
            "--kube-dns-ip",
            "10.96.0.10",
            "--domain",
            "a b",
        ][..],
        &[
            "--dry-run",
            "--mode",
            "iptables",
            "--kube-dns-ip",
            "10.96.0.10",
            "--image",
            "x|y",
        ][..],
        &["--dry-run", "--bogus"][..],
    ] {
        let out = install(args, None);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(out.stdout.is_empty(), "{args:?} printed manifests");
    }
}

#[test]
fn the_daemonset_rolls_out_by_surge_and_declares_no_host_ports() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let objects = checked(&addon_text());
    let ds = daemonset(&objects);
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .expect("a rolling update");
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    // hostNetwork turns container ports into host ports, which would keep the surge pod off
    // the node while the old one runs.
    assert!(container(ds).ports.as_ref().is_none_or(|p| p.is_empty()));
}

#[test]
fn install_ha_adds_a_twin_daemonset_with_a_disjoint_selector() {
    let text = rendered(
        &[
            "--dry-run",
            "--ha",
            "--mode",
            "iptables",
            "--kube-dns-ip",
            "10.96.0.10",
        ],
        None,
    );
    let objects = checked(&text);
    let sets = daemonsets(&objects);
    assert_eq!(sets.len(), 2);
    let names: Vec<&str> = sets
        .iter()
        .map(|d| d.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["node-local-dns", "node-local-dns-b"]);
    let selector = |d: &DaemonSet| {
        d.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .clone()
            .unwrap()
    };
    assert_ne!(
        selector(sets[0]),
        selector(sets[1]),
        "neither may adopt the other's pods"
    );
    // Same container and the same shared ConfigMaps and ServiceAccount.
    assert_eq!(container(sets[0]), container(sets[1]));
    let pod = |d: &DaemonSet| d.spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert_eq!(pod(sets[0]).volumes, pod(sets[1]).volumes);
    assert_eq!(
        pod(sets[0]).service_account_name,
        pod(sets[1]).service_account_name
    );
}
