//! Test support shared by integration tests, benchmarks and the demo: throwaway network
//! namespaces wired like a Kubernetes node, real CoreDNS servers in them, and the commands
//! (`dig`, `ip -j`, `iptables-save`) that look at the result from outside.
//!
//! Every namespace and process made here is removed in `Drop`, so a failing (panicking) test
//! leaves nothing behind.
pub mod agent;
pub mod dig;
pub mod faults;
pub mod firewall_bench;
pub mod fixture;
pub mod handover;
pub mod isolated;
pub mod kube_api;
pub mod load;
pub mod netns;
pub mod pod;
pub mod process;
pub mod querier;
pub mod topology;
pub mod wait;

pub use dig::{Dig, Transport};
pub use isolated::in_fresh_netns;
pub use load::{LoadReport, QueryLoad};
pub use netns::Netns;
pub use process::Process;
pub use querier::Querier;
pub use topology::{addrs, Topology};
pub use wait::wait_until;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root (where `hack/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// The pinned, unmodified CoreDNS: `$COREDNS_BINARY` when set, else what `hack/coredns.sh`
/// installs (cached after the first run).
pub fn coredns_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("COREDNS_BINARY") {
        return Ok(PathBuf::from(path));
    }
    let script = workspace_root().join("hack/coredns.sh");
    let out = Command::new(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8(out.stdout)?;
    let path = stdout
        .lines()
        .last()
        .context("hack/coredns.sh printed nothing")?;
    Ok(PathBuf::from(path.trim()))
}

/// A name unique to this process and call, short enough for interface names (≤ 15 bytes with
/// a 4-byte suffix).
pub fn unique_tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("nc{}x{n}", std::process::id() % 100_000)
}

/// Runs a command, failing with its stderr when it exits non-zero; returns stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("node-cache-test-{tag}"));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("NODE_CACHE_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
