//! Renders node-cache's Corefile: the base template (the `node-local-dns` ConfigMap), the
//! flags and the optional `kube-dns` ConfigMap (`stubDomains`, `upstreamNameservers`) in,
//! Corefile text out; and which plugins a Corefile names ([`check_plugins`]). Pure apart from
//! [`load_kube_dns_dir`] (reads) and [`write_atomic`] (writes).
mod atomic;
mod error;
mod kube_dns;
mod local_ips;
mod plugins;
mod reload_plugin;
mod render;
mod servers;
mod stub;
mod upstream;

#[cfg(test)]
mod test_dir;

pub use atomic::write_atomic;
pub use error::{ConfigError, RenderError};
pub use kube_dns::{
    load_kube_dns_dir, parse_kube_dns, read_kube_dns_keys, KubeDnsConfig, KubeDnsKeys,
};
pub use plugins::{check_plugins, directives, Directive, PluginSet, UnknownPlugin};
pub use render::{render, service_host_env, RenderParams, Rendered};
pub use servers::ServerProblem;
