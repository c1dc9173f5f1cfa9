//! The two error types: a bad kube-dns ConfigMap, and a render that cannot be completed.

use std::path::PathBuf;

use crate::servers::ServerProblem;

/// The kube-dns ConfigMap cannot be used; the caller keeps the last good Corefile.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("kube-dns ConfigMap {}: cannot read: {source}", path.display().to_string().escape_debug())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kube-dns ConfigMap {}: not UTF-8 text", path.display().to_string().escape_debug())]
    NotUtf8 { path: PathBuf },
    #[error("kube-dns ConfigMap {key}: invalid JSON: {reason}")]
    InvalidJson { key: &'static str, reason: String },
    #[error("kube-dns ConfigMap stubDomains: {domain:?} is not a valid domain name")]
    InvalidDomain { domain: String },
    #[error("kube-dns ConfigMap stubDomains: {domain:?} lists no servers")]
    NoServers { domain: String },
    #[error("kube-dns ConfigMap stubDomains: server {server:?} of {domain:?} {problem}")]
    InvalidStubServer {
        domain: String,
        server: String,
        problem: ServerProblem,
    },
    #[error("kube-dns ConfigMap upstreamNameservers: server {server:?} {problem}")]
    InvalidUpstreamServer {
        server: String,
        problem: ServerProblem,
    },
    #[error("kube-dns ConfigMap upstreamNameservers: {count} servers given, at most 3 allowed")]
    TooManyUpstreams { count: usize },
    #[error("kube-dns ConfigMap federations: {entry:?} {reason}")]
    InvalidFederation { entry: String, reason: &'static str },
}

impl ConfigError {
    /// The `errortype` label of `coredns_nodecache_setup_errors_total` this error counts under.
    pub fn metric_label(&self) -> &'static str {
        "configmap"
    }
}

/// The template cannot be rendered with these parameters.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("__PILLAR__LOCAL__DNS__: no -localip given")]
    NoLocalIp,
    // The variable's name comes from -upstreamsvc, which may hold any character: escaped, so
    // the message stays on one line (found by fuzz/fuzz_targets/render.rs).
    #[error(
        "__PILLAR__CLUSTER__DNS__: environment variable {} (Service {svc:?}) is not set",
        .env.escape_debug()
    )]
    ClusterDnsUnset { env: String, svc: String },
    #[error(
        "__PILLAR__CLUSTER__DNS__: environment variable {} (Service {svc:?}) is {value:?}, not an IP address",
        .env.escape_debug()
    )]
    ClusterDnsInvalid {
        env: String,
        svc: String,
        value: String,
    },
    #[error("stub-domain template: {0}")]
    StubTemplate(String),
}
