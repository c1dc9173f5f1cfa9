//! The kube-dns ConfigMap, parsed from memory and from a mounted directory.
//!
//! Input: one byte of presence bits (bit 0: `stubDomains` given, bit 1: `upstreamNameservers`
//! given), then the `stubDomains` value, a NUL, the `upstreamNameservers` value. A missing NUL
//! means an empty `upstreamNameservers`.
//!
//! Invariants, beyond "no panic":
//! - `load_kube_dns_dir` on a directory holding those bytes agrees with `parse_kube_dns`
//!   (same config, or the same message), and refuses exactly the non-UTF-8 values;
//! - an error is one line, starts with `kube-dns ConfigMap ` and counts as `configmap`;
//! - an accepted config holds only valid domain names, each with at least one server, at
//!   most three upstream servers, every server an IP or `ip:port` with a port from 1;
//! - normalising is idempotent: the accepted config, written back as JSON, parses to itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use corefile::{load_kube_dns_dir, parse_kube_dns, ConfigError, KubeDnsConfig};

const STUB_DOMAINS: &str = "stubDomains";
const UPSTREAM_NAMESERVERS: &str = "upstreamNameservers";

pub fn check(data: &[u8]) {
    let Some((&presence, rest)) = data.split_first() else {
        return;
    };
    let (stub, upstream) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &[][..]),
    };
    let stub = (presence & 1 != 0).then_some(stub);
    let upstream = (presence & 2 != 0).then_some(upstream);

    let from_dir = load_from_dir(stub, upstream);
    let (Ok(stub), Ok(upstream)) = (as_text(stub), as_text(upstream)) else {
        assert!(
            matches!(from_dir, Err(ConfigError::NotUtf8 { .. })),
            "a non-UTF-8 value was not refused as such: {from_dir:?}"
        );
        check_error(&from_dir.unwrap_err());
        return;
    };

    let parsed = parse_kube_dns(stub, upstream);
    match (&parsed, &from_dir) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "directory and memory disagree"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("directory and memory disagree: {parsed:?} / {from_dir:?}"),
    }
    match parsed {
        Ok(config) => check_config(&config),
        Err(e) => check_error(&e),
    }
}

fn as_text(value: Option<&[u8]>) -> Result<Option<&str>, std::str::Utf8Error> {
    value.map(std::str::from_utf8).transpose()
}

fn check_error(e: &ConfigError) {
    let message = e.to_string();
    assert!(!message.contains(['\n', '\r']), "not one line: {message:?}");
    assert!(message.starts_with("kube-dns ConfigMap "), "{message:?}");
    assert_eq!(e.metric_label(), "configmap");
}

fn check_config(config: &KubeDnsConfig) {
    assert!(config.upstream_nameservers.len() <= 3, "{config:?}");
    for (domain, servers) in &config.stub_domains {
        assert!(is_dns1123_subdomain(domain), "accepted domain {domain:?}");
        assert!(!servers.is_empty(), "{domain:?} has no servers");
    }
    for server in config.stub_domains.values().flatten() {
        check_server(server);
    }
    for server in &config.upstream_nameservers {
        check_server(server);
    }

    let stub_json = serde_json::to_string(&config.stub_domains).unwrap();
    let upstream_json = serde_json::to_string(&config.upstream_nameservers).unwrap();
    let again = parse_kube_dns(Some(&stub_json), Some(&upstream_json))
        .unwrap_or_else(|e| panic!("the accepted config does not parse again: {e}"));
    assert_eq!(&again, config, "normalising is not idempotent");
}

/// Servers are kept as the ConfigMap spells them (upstream writes `forward . 8.8.8.8`, no
/// `:53` added): an IP, or `ip:port` with a port from 1.
fn check_server(server: &str) {
    if server.parse::<std::net::IpAddr>().is_ok() {
        return;
    }
    let addr: SocketAddr = server
        .parse()
        .unwrap_or_else(|_| panic!("accepted server {server:?} is neither ip nor ip:port"));
    assert_ne!(addr.port(), 0, "{server:?}");
}

/// Kubernetes' `IsDNS1123Subdomain`, plus the 63-octet label limit, written independently of
/// the crate's check.
fn is_dns1123_subdomain(domain: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
    };
    domain.len() <= 253 && domain.split('.').all(label_ok)
}

/// Writes the values where kubelet would mount them, reads them back with the agent's loader.
fn load_from_dir(
    stub: Option<&[u8]>,
    upstream: Option<&[u8]>,
) -> Result<KubeDnsConfig, ConfigError> {
    let dir = ScratchDir::new();
    for (key, value) in [(STUB_DOMAINS, stub), (UPSTREAM_NAMESERVERS, upstream)] {
        if let Some(value) = value {
            std::fs::write(dir.path().join(key), value).expect("scratch file");
        }
    }
    load_kube_dns_dir(dir.path())
}

/// A fresh directory, removed on drop; in memory (`/dev/shm`) where there is one, as a
/// directory per input on a disk would slow the target down tenfold.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!(
            "node-cache-fuzz-kube-dns-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("scratch dir");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
