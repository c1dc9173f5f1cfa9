//! node-cache started the way a container runtime starts it in a pod: PID 1 of a PID namespace
//! of its own (so every instance has the same pid, as every pod's has), root with exactly a
//! pod's capability set, and the pod's environment (the upstream Service's variable, the
//! downward API's POD_NAME). The emulation must fail where the cluster fails.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::topology::addrs;
use crate::{workspace_root, Process, Topology};

/// The capabilities a container runtime grants by default (containerd's and CRI-O's list).
pub const RUNTIME_DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// How long the launcher may take to exec node-cache.
const EXEC_DEADLINE: Duration = Duration::from_secs(10);

/// Whose securityContext the pod has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capabilities {
    /// `manifests/nodelocaldns.yaml`: drop ALL, add its list, `allowPrivilegeEscalation: false`.
    Manifest,
    /// Upstream's addon: the runtime's defaults plus NET_ADMIN, privilege escalation allowed.
    UpstreamShaped,
}

impl Capabilities {
    pub const ALL: [Capabilities; 2] = [Capabilities::Manifest, Capabilities::UpstreamShaped];

    /// The set, upper case without `CAP_`, as Kubernetes spells it.
    pub fn names(self) -> Result<Vec<String>> {
        match self {
            Capabilities::Manifest => manifest_capabilities(),
            Capabilities::UpstreamShaped => Ok(RUNTIME_DEFAULT_CAPABILITIES
                .iter()
                .chain(&["NET_ADMIN"])
                .map(|c| c.to_string())
                .collect()),
        }
    }

    /// `setpriv` options that leave root with exactly this set in its bounding, permitted and
    /// effective sets (and nothing inheritable), as runc does.
    fn setpriv_args(self) -> Result<Vec<String>> {
        let set: Vec<String> = self
            .names()?
            .iter()
            .map(|c| format!("+{}", c.to_lowercase()))
            .collect();
        let mut args = vec![
            "--inh-caps=-all".to_string(),
            format!("--bounding-set=-all,{}", set.join(",")),
        ];
        if self == Capabilities::Manifest {
            args.push("--no-new-privs".into());
        }
        Ok(args)
    }
}

/// The capabilities the addon manifest's DaemonSet adds.
pub fn manifest_capabilities() -> Result<Vec<String>> {
    let path = workspace_root().join("manifests/nodelocaldns.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let objects = addon_manifests::check(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    objects
        .iter()
        .find_map(|o| o.added_capabilities())
        .context("no capabilities in the manifest's DaemonSet")
}

/// One node-cache pod on the topology's node.
pub struct Pod<'a> {
    pub name: &'a str,
    pub capabilities: Capabilities,
    /// Extra environment (e.g. `PATH`, `XTABLES_LOCKFILE`).
    pub env: &'a [(&'a str, String)],
}

impl<'a> Pod<'a> {
    pub fn new(name: &'a str) -> Self {
        Self {
            name,
            capabilities: Capabilities::Manifest,
            env: &[],
        }
    }

    /// Starts `binary args...` in the pod, its output appended to `log`; the returned
    /// [`Process`]'s pid is node-cache's (PID 1 inside).
    pub fn start(
        &self,
        topo: &Topology,
        binary: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Process> {
        let mut cmd = topo.node.command("unshare");
        cmd.args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            "setpriv",
        ])
        .args(self.capabilities.setpriv_args()?)
        .args(["--", "env"])
        .arg(format!(
            "KUBE_DNS_UPSTREAM_SERVICE_HOST={}",
            addrs::KUBE_DNS_UPSTREAM_SVC
        ))
        .arg("RUST_LOG=info")
        .arg(format!("POD_NAME={}", self.name));
        for (key, value) in self.env {
            cmd.arg(format!("{key}={value}"));
        }
        cmd.arg(binary).args(args);
        let comm: String = binary
            .file_name()
            .context("binary without a file name")?
            .to_string_lossy()
            .chars()
            .take(15)
            .collect();
        Process::spawn_launched(self.name, cmd, log, &comm, EXEC_DEADLINE)
    }
}
