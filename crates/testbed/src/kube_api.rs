//! A Kubernetes control plane for tests and benchmarks: etcd and kube-apiserver started alone
//! in a topology's node namespace (on its loopback, so neither a running lab nor anything else on
//! the machine can collide with their ports), token users for kubectl and the agent, and the
//! timing of an API write (the apiserver's audit log) to the answer it leads to.
//!
//! The binaries come from the lab's build (`hack/kube-lab/build.sh`, cached in
//! `.cache/kube-lab/bin`; about 10 minutes the first time).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};

use crate::{run, wait_until, workspace_root, Netns, Process, Topology};

const DEADLINE: Duration = Duration::from_secs(30);
/// The namespace the addon lives in, and the kubeconfigs' default.
pub const NAMESPACE: &str = "kube-system";
/// Tokens the apiserver takes (`--token-auth-file`): an admin for kubectl, the DaemonSet's
/// ServiceAccount as RBAC sees it, and a user with no permission at all.
const ADMIN: &str = "admin-token";
const SERVICE_ACCOUNT: &str = "node-local-dns-token";
const NOBODY: &str = "nobody-token";

/// etcd and kube-apiserver in the node namespace, killed on drop.
pub struct ApiServer<'t> {
    node: &'t Netns,
    dir: PathBuf,
    kubectl: PathBuf,
    apiserver: Option<Process>,
    _etcd: Process,
}

/// The lab's binaries: `$KUBE_LAB_BIN`, else `.cache/kube-lab/bin`; None when not built.
pub fn lab_bin_built() -> Option<PathBuf> {
    let bin = std::env::var_os("KUBE_LAB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/kube-lab/bin"));
    (bin.join("kube").is_file() && bin.join("etcd").is_file()).then_some(bin)
}

/// The lab's binaries, built when missing.
pub fn lab_bin() -> Result<PathBuf> {
    if let Some(bin) = lab_bin_built() {
        return Ok(bin);
    }
    let script = workspace_root().join("hack/kube-lab/build.sh");
    let status = Command::new(&script)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(status.success(), "{} failed: {status}", script.display());
    lab_bin_built().context("hack/kube-lab/build.sh built no kube and etcd")
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
    pub fn start(topo: &'t Topology) -> Result<Self> {
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

    /// The kubeconfig of `who`: "admin" (system:masters), "node-cache" (the DaemonSet's
    /// ServiceAccount) or "nobody" (no permission at all).
    pub fn kubeconfig(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.kubeconfig"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
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
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(&mut self.command(args))
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<()> {
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
    pub fn write_time(&self, resource: &str, name: &str) -> Result<SystemTime> {
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

    pub fn logs(&self) -> String {
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

    /// Runs `f` on a thread of its own inside the node namespace, where the apiserver listens:
    /// an API client made there reaches it, while the rest of the process stays where it is.
    pub fn on_node<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let name = self.node.name().to_string();
        crate::isolated::on_own_thread(move || {
            crate::querier::enter_netns(&name)?;
            f()
        })
    }

    /// The apiserver goes away (etcd stays): what node-cache sees when the control plane is
    /// down.
    pub fn stop_apiserver(&mut self) {
        self.apiserver = None;
    }
}

/// A JSON string literal.
pub fn json(text: &str) -> String {
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
pub fn configmap(name: &str, keys: &[(&str, &str)]) -> String {
    let data: Vec<String> = keys
        .iter()
        .map(|(k, v)| format!("{}: {}", json(k), json(v)))
        .collect();
    format!(
        r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "{name}", "namespace": "{NAMESPACE}"}}, "data": {{{}}}}}"#,
        data.join(", ")
    )
}

/// One timed change: from kubectl's start and from its return (the write acknowledged) to
/// the first answer `check` accepts.
pub struct Timing {
    pub from_kubectl: Duration,
    pub from_write: Duration,
}

/// `kubectl apply` of `yaml` (which writes `resource` `name`), then waits for `check`.
pub fn timed_apply(
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
pub fn parse_utc(stamp: &str) -> Result<SystemTime> {
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
