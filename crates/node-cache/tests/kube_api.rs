//! node-cache's Kubernetes API mode against a real kube-apiserver and etcd: the two started
//! alone in the test topology's node namespace (on its loopback, so nothing else on the machine
//! can collide with their ports), node-cache run as a pod on that node with a kubeconfig, and
//! ConfigMaps and Services changed with `kubectl apply`. Timed: API write → a pod's answer.
//!
//! The binaries come from the lab's build (`hack/kube-lab/build.sh`, cached in
//! `.cache/kube-lab/bin`; about 10 minutes the first time), so these tests are `#[ignore]`d in
//! `make test` and run by `make kube-api-test`, which builds them first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use testbed::pod::Pod;
use testbed::topology::{names, write_configmap_volume};
use testbed::{addrs, wait_until, workspace_root, Dig, Netns, Process, Topology, Transport};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
const DEADLINE: Duration = Duration::from_secs(30);
const NAMESPACE: &str = "kube-system";
/// Tokens the apiserver takes (`--token-auth-file`): an admin for kubectl, the DaemonSet's
/// ServiceAccount as RBAC sees it, and a user with no permission at all.
const ADMIN: &str = "admin-token";
const SERVICE_ACCOUNT: &str = "node-local-dns-token";
const NOBODY: &str = "nobody-token";

/// etcd and kube-apiserver in the node namespace, killed on drop.
struct ApiServer<'t> {
    node: &'t Netns,
    dir: PathBuf,
    kubectl: PathBuf,
    apiserver: Option<Process>,
    _etcd: Process,
}

/// The lab's binaries: `$KUBE_LAB_BIN`, else `.cache/kube-lab/bin`, built when missing.
fn lab_bin() -> Result<PathBuf> {
    let bin = std::env::var_os("KUBE_LAB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/kube-lab/bin"));
    if !(bin.join("kube").is_file() && bin.join("etcd").is_file()) {
        let script = workspace_root().join("hack/kube-lab/build.sh");
        let status = Command::new(&script)
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        ensure!(status.success(), "{} failed: {status}", script.display());
    }
    Ok(bin)
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kubeconfig(path: &Path, ca: &Path, token: &str) -> Result<()> {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: t, cluster: {{server: \"https://127.0.0.1:6443\", \
             certificate-authority: \"{}\"}}}}]\n\
             users: [{{name: u, user: {{token: \"{token}\"}}}}]\n\
             contexts: [{{name: t, context: {{cluster: t, user: u, namespace: {NAMESPACE}}}}}]\n\
             current-context: t\n",
            ca.display()
        ),
    )?;
    Ok(())
}

impl<'t> ApiServer<'t> {
    fn start(topo: &'t Topology) -> Result<Self> {
        let bin = lab_bin()?;
        let dir = topo.path("kube-api");
        std::fs::create_dir_all(dir.join("pki"))?;
        let key = dir.join("pki/sa.key");
        let public = dir.join("pki/sa.pub");
        run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048"))?;
        run(Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public))?;
        std::fs::write(
            dir.join("pki/tokens.csv"),
            format!(
                "{ADMIN},admin,admin,system:masters\n\
                 {SERVICE_ACCOUNT},system:serviceaccount:{NAMESPACE}:node-local-dns,sa,\
                 \"system:serviceaccounts,system:serviceaccounts:{NAMESPACE}\"\n\
                 {NOBODY},nobody,nobody\n"
            ),
        )?;
        // Writes to ConfigMaps and Services are audited: their timestamps (microseconds, this
        // machine's clock) are the API write the timings start from.
        let policy = dir.join("audit-policy.yaml");
        std::fs::write(
            &policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
             - level: Metadata\n  verbs: [create, update, patch]\n  resources:\n  \
             - group: \"\"\n    resources: [configmaps, services]\n- level: None\n",
        )?;
        let mut etcd = topo.node.command(bin.join("etcd"));
        etcd.arg("--data-dir").arg(dir.join("etcd")).args([
            "--name=t",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=t=http://127.0.0.1:2380",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]);
        let etcd = Process::spawn("etcd", etcd, &dir.join("etcd.log"))?;
        let mut api = topo.node.command(bin.join("kube"));
        api.arg("kube-apiserver")
            .arg(format!("--cert-dir={}", dir.join("pki").display()))
            .arg(format!("--service-account-key-file={}", public.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                key.display()
            ))
            .arg(format!(
                "--token-auth-file={}",
                dir.join("pki/tokens.csv").display()
            ))
            .args([
                "--etcd-servers=http://127.0.0.1:2379",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--secure-port=6443",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/12",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ])
            .arg(format!("--audit-policy-file={}", policy.display()))
            .arg(format!(
                "--audit-log-path={}",
                dir.join("audit.log").display()
            ));
        let apiserver = Process::spawn("kube-apiserver", api, &dir.join("apiserver.log"))?;
        let lab = Self {
            node: &topo.node,
            kubectl: bin.join("kube"),
            dir,
            apiserver: Some(apiserver),
            _etcd: etcd,
        };
        let ca = lab.dir.join("pki/apiserver.crt");
        wait_until("the apiserver's certificate", DEADLINE, || Ok(ca.is_file()))
            .with_context(|| lab.logs())?;
        for (name, token) in [
            ("admin", ADMIN),
            ("node-cache", SERVICE_ACCOUNT),
            ("nobody", NOBODY),
        ] {
            kubeconfig(&lab.kubeconfig(name), &ca, token)?;
        }
        wait_until("kube-apiserver /readyz", DEADLINE, || {
            Ok(lab.kubectl(&["get", "--raw=/readyz"]).is_ok())
        })
        .with_context(|| lab.logs())?;
        // The namespace is created a moment after /readyz.
        wait_until("namespace kube-system", DEADLINE, || {
            Ok(lab.kubectl(&["get", "namespace", NAMESPACE]).is_ok())
        })
        .with_context(|| lab.logs())?;
        Ok(lab)
    }

    fn kubeconfig(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.kubeconfig"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.node.command(&self.kubectl);
        cmd.arg("kubectl")
            .arg(format!(
                "--kubeconfig={}",
                self.kubeconfig("admin").display()
            ))
            .args(args);
        cmd
    }

    /// kubectl as the admin, in the node namespace (where the apiserver listens).
    fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(&mut self.command(args))
    }

    /// `kubectl apply -f -` of `yaml`.
    fn apply(&self, yaml: &str) -> Result<()> {
        use std::io::Write;
        let mut child = self
            .command(&["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(yaml.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "kubectl apply: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// When the apiserver completed the last write to `resource` `name` (its audit log).
    fn write_time(&self, resource: &str, name: &str) -> Result<SystemTime> {
        let log = std::fs::read_to_string(self.dir.join("audit.log"))?;
        let event = log
            .lines()
            .rev()
            .find(|l| {
                l.contains("\"stage\":\"ResponseComplete\"")
                    && l.contains(&format!("\"resource\":\"{resource}\""))
                    && l.contains(&format!("\"name\":\"{name}\""))
            })
            .with_context(|| format!("no audited write of {resource} {name}"))?;
        let stamp = event
            .split("\"stageTimestamp\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .context("audit event without stageTimestamp")?;
        parse_utc(stamp)
    }

    fn logs(&self) -> String {
        let tail = |p: &str| {
            let text = std::fs::read_to_string(self.dir.join(p)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!(
            "etcd.log:\n{}\napiserver.log:\n{}",
            tail("etcd.log"),
            tail("apiserver.log")
        )
    }

    /// The apiserver goes away (etcd stays): what node-cache sees when the control plane is
    /// down.
    fn stop_apiserver(&mut self) {
        self.apiserver = None;
    }
}

/// One at a time: each test runs a control plane, and the timings are the point.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A JSON string literal.
fn json(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A ConfigMap in kube-system, as JSON (which `kubectl apply` reads like YAML).
fn configmap(name: &str, keys: &[(&str, &str)]) -> String {
    let data: Vec<String> = keys
        .iter()
        .map(|(k, v)| format!("{}: {}", json(k), json(v)))
        .collect();
    format!(
        r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "{name}", "namespace": "{NAMESPACE}"}}, "data": {{{}}}}}"#,
        data.join(", ")
    )
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
        let process = Pod::new("node-cache").start(topo, Path::new(NODE_CACHE), &args, &log)?;
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

/// One timed change: from kubectl's start and from its return (the write acknowledged) to
/// the first answer `check` accepts.
struct Timing {
    from_kubectl: Duration,
    from_write: Duration,
}

/// `kubectl apply` of `yaml` (which writes `resource` `name`), then waits for `check`.
fn timed_apply(
    api: &ApiServer,
    (resource, name): (&str, &str),
    yaml: &str,
    mut check: impl FnMut() -> bool,
) -> Result<Timing> {
    let start = Instant::now();
    api.apply(yaml)?;
    wait_until("the change to be answered", Duration::from_secs(5), || {
        Ok(check())
    })?;
    let answered = SystemTime::now();
    let from_kubectl = start.elapsed();
    let written = api.write_time(resource, name)?;
    Ok(Timing {
        from_kubectl,
        from_write: answered.duration_since(written)?,
    })
}

/// An RFC 3339 UTC timestamp as the apiserver writes it (`2026-12-01T03:20:00.123456Z`).
fn parse_utc(stamp: &str) -> Result<SystemTime> {
    let bad = || anyhow::anyhow!("timestamp {stamp:?}: not YYYY-MM-DDTHH:MM:SS[.frac]Z");
    let (date, time) = stamp
        .strip_suffix('Z')
        .and_then(|s| s.split_once('T'))
        .ok_or_else(bad)?;
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let d: Vec<i64> = date.split('-').map(num).collect::<Result<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(num).collect::<Result<_>>()?;
    ensure!(d.len() == 3 && t.len() == 3, bad());
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1])
    } else {
        (d[0], d[1])
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    let nanos = num(&format!("{frac:0<9}")[..9])?;
    Ok(SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(secs)?)
        + Duration::from_nanos(u64::try_from(nanos)?))
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
