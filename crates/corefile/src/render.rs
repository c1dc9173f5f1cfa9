//! The render: template placeholders filled, stub-domain blocks appended.
//!
//! | placeholder | becomes |
//! |---|---|
//! | `__PILLAR__UPSTREAM__SERVERS__` | `/etc/resolv.conf`, or the ConfigMap's `upstreamNameservers` |
//! | `__PILLAR__CLUSTER__DNS__` | the upstream Service's ClusterIP (from `<SVC>_SERVICE_HOST`) |
//! | `__PILLAR__LOCAL__DNS__` | the `-localip` addresses (see [`crate::local_ips`]) |
//! | `__PILLAR__DNS__SERVER__` | nothing (with the blanks before it) |
//! | `__PROMETHEUS__ENDPOINT__` | `-prometheus-listen-address` (node-local-dns #16) |
//!
//! `reload` directives are dropped (see [`crate::reload_plugin`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::error::RenderError;
use crate::kube_dns::KubeDnsConfig;
use crate::{local_ips, reload_plugin, stub, upstream};

const CLUSTER_DNS: &str = "__PILLAR__CLUSTER__DNS__";
const DNS_SERVER: &str = "__PILLAR__DNS__SERVER__";
const PROMETHEUS_ENDPOINT: &str = "__PROMETHEUS__ENDPOINT__";
const PLACEHOLDER_PREFIX: &str = "__PILLAR__";

/// What the render needs from the flags and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderParams {
    /// `-localip`, in the order given; must not be empty.
    pub local_ips: Vec<IpAddr>,
    /// `-dns.port`: the port of the stub-domain zones.
    pub dns_port: u16,
    /// The value of `<SVC>_SERVICE_HOST`, `None` if unset; the caller reads the environment.
    pub cluster_dns: Option<String>,
    /// `-upstreamsvc`, named in the error when `cluster_dns` is missing.
    pub upstream_svc: String,
    /// `-prometheus-listen-address` (`:9253` by default), the address CoreDNS's `prometheus`
    /// plugin serves on.
    pub prometheus_listen_address: String,
}

/// A rendered Corefile, and the adjustments made on the way, one line each, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub corefile: String,
    pub notes: Vec<String>,
}

/// Renders `template` (the base Corefile). Same inputs, byte-identical output.
pub fn render(
    template: &str,
    kube_dns: &KubeDnsConfig,
    params: &RenderParams,
) -> Result<Rendered, RenderError> {
    if params.local_ips.is_empty() {
        return Err(RenderError::NoLocalIp);
    }
    let mut notes = Vec::new();
    let mut text =
        upstream::fill_upstream_servers(template, &kube_dns.upstream_nameservers, &mut notes);
    if text.contains(CLUSTER_DNS) {
        text = text.replace(CLUSTER_DNS, &cluster_dns(params)?.to_string());
    }
    let text = local_ips::fill_local_ips(&text, &params.local_ips, &mut notes);
    let text =
        remove_dns_server(&text).replace(PROMETHEUS_ENDPOINT, &params.prometheus_listen_address);
    let mut corefile = reload_plugin::remove_reload_plugin(&text, &mut notes);
    note_leftovers(&corefile, &mut notes);
    corefile.push_str(&stub::render_stub_blocks(
        &kube_dns.stub_domains,
        &params.local_ips,
        params.dns_port,
    )?);
    Ok(Rendered { corefile, notes })
}

/// The environment variable kubelet sets to a Service's ClusterIP:
/// `kube-dns-upstream` → `KUBE_DNS_UPSTREAM_SERVICE_HOST`.
pub fn service_host_env(svc: &str) -> String {
    // `namespace/name` (-upstreamsvc's API form): kubelet names the variable after the
    // Service's name alone.
    let name = svc.rsplit('/').next().unwrap_or(svc);
    format!("{}_SERVICE_HOST", name.replace('-', "_").to_uppercase())
}

fn cluster_dns(params: &RenderParams) -> Result<IpAddr, RenderError> {
    let env = || service_host_env(&params.upstream_svc);
    let Some(value) = &params.cluster_dns else {
        return Err(RenderError::ClusterDnsUnset {
            env: env(),
            svc: params.upstream_svc.clone(),
        });
    };
    value
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| RenderError::ClusterDnsInvalid {
            env: env(),
            svc: params.upstream_svc.clone(),
            value: value.clone(),
        })
}

/// Upstream replaces the placeholder with nothing, leaving `bind 169.254.20.10 ` with a
/// trailing blank; we take the blanks before it too.
fn remove_dns_server(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, piece) in text.split(DNS_SERVER).enumerate() {
        if i > 0 {
            out.truncate(out.trim_end_matches([' ', '\t']).len());
        }
        out.push_str(piece);
    }
    out
}

/// Placeholders node-cache does not fill (`__PILLAR__DNS__DOMAIN__` is the operator's sed's).
fn note_leftovers(text: &str, notes: &mut Vec<String>) {
    let leftovers: BTreeSet<&str> = text
        .match_indices(PLACEHOLDER_PREFIX)
        .map(|(at, _)| {
            let len = text[at..]
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(text.len() - at);
            &text[at..at + len]
        })
        .collect();
    for placeholder in leftovers {
        notes.push(format!(
            "template: {placeholder} left as written; node-cache does not fill it"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(cluster_dns: Option<&str>) -> RenderParams {
        RenderParams {
            local_ips: vec!["169.254.20.10".parse().unwrap()],
            dns_port: 53,
            cluster_dns: cluster_dns.map(str::to_owned),
            upstream_svc: "kube-dns-upstream".into(),
            prometheus_listen_address: ":9253".into(),
        }
    }

    #[test]
    fn prometheus_endpoint_is_the_flags_address() {
        let mut p = params(None);
        p.prometheus_listen_address = "169.254.20.10:9253".into();
        let out = render(
            "bind __PILLAR__LOCAL__DNS__\nprometheus __PROMETHEUS__ENDPOINT__\n",
            &KubeDnsConfig::default(),
            &p,
        )
        .unwrap();
        assert_eq!(
            out.corefile,
            "bind 169.254.20.10\nprometheus 169.254.20.10:9253\n"
        );
        assert!(out.notes.is_empty(), "{:?}", out.notes);
    }

    #[test]
    fn service_env_names() {
        assert_eq!(
            service_host_env("kube-dns-upstream"),
            "KUBE_DNS_UPSTREAM_SERVICE_HOST"
        );
        assert_eq!(service_host_env("kube-dns"), "KUBE_DNS_SERVICE_HOST");
        assert_eq!(
            service_host_env("kube-system/kube-dns-upstream"),
            "KUBE_DNS_UPSTREAM_SERVICE_HOST"
        );
    }

    #[test]
    fn cluster_dns_needed_only_when_used() {
        let kube_dns = KubeDnsConfig::default();
        assert!(render("bind __PILLAR__LOCAL__DNS__\n", &kube_dns, &params(None)).is_ok());
        let err = render(
            "forward . __PILLAR__CLUSTER__DNS__\n",
            &kube_dns,
            &params(None),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            r#"__PILLAR__CLUSTER__DNS__: environment variable KUBE_DNS_UPSTREAM_SERVICE_HOST (Service "kube-dns-upstream") is not set"#
        );
        let err = render(
            "forward . __PILLAR__CLUSTER__DNS__\n",
            &kube_dns,
            &params(Some("x")),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            r#"__PILLAR__CLUSTER__DNS__: environment variable KUBE_DNS_UPSTREAM_SERVICE_HOST (Service "kube-dns-upstream") is "x", not an IP address"#
        );
    }

    #[test]
    fn no_local_ip_is_an_error() {
        let mut p = params(None);
        p.local_ips.clear();
        let err = render("", &KubeDnsConfig::default(), &p).unwrap_err();
        assert_eq!(err.to_string(), "__PILLAR__LOCAL__DNS__: no -localip given");
    }

    #[test]
    fn dns_server_goes_with_the_blanks_before_it() {
        assert_eq!(
            remove_dns_server("bind 1.1.1.1 __PILLAR__DNS__SERVER__\nx\t__PILLAR__DNS__SERVER__ y"),
            "bind 1.1.1.1\nx y"
        );
    }

    #[test]
    fn leftovers_are_noted_once_each() {
        let mut notes = Vec::new();
        note_leftovers(
            "__PILLAR__DNS__DOMAIN__:53 {}\n__PILLAR__DNS__DOMAIN__\n__PILLAR__X",
            &mut notes,
        );
        assert_eq!(
            notes,
            [
                "template: __PILLAR__DNS__DOMAIN__ left as written; node-cache does not fill it",
                "template: __PILLAR__X left as written; node-cache does not fill it"
            ]
        );
    }
}
