//! `-upstreamsvc`: the Service whose ClusterIP fills `__PILLAR__CLUSTER__DNS__`. Upstream takes
//! a name in the pod's namespace, read from kubelet's `<NAME>_SERVICE_HOST`; node-cache also
//! takes `namespace/name` (looked up through the API) and a literal IP (kubernetes/dns#596).

use std::net::IpAddr;

/// `-upstreamsvc`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamService {
    /// A literal address: used as it is, nothing looked up.
    Ip(IpAddr),
    /// A Service.
    Named(ServiceRef),
}

/// A Service by name; `namespace` None means the pod's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: Option<String>,
    pub name: String,
}

/// A DNS-1123 label, as Kubernetes requires of Service and namespace names.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl UpstreamService {
    /// The reason is one phrase, for the flag error.
    pub fn parse(value: &str) -> Result<Self, String> {
        if let Ok(ip) = value.parse::<IpAddr>() {
            return Ok(Self::Ip(ip.to_canonical()));
        }
        let (namespace, name) = match value.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, value),
        };
        if let Some(ns) = namespace.filter(|ns| !is_label(ns)) {
            return Err(format!("namespace {ns:?} is not a DNS-1123 label"));
        }
        if !is_label(name) {
            return Err(format!(
                "want an IP address, a Service name or namespace/name; {name:?} is not a \
                 DNS-1123 label"
            ));
        }
        Ok(Self::Named(ServiceRef {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }))
    }

    /// The ClusterIP known without the API: the literal address, or kubelet's
    /// `<NAME>_SERVICE_HOST` for a Service of the pod's own namespace. `env` reads one
    /// variable, so tests never touch the process environment.
    pub fn known_ip(&self, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        match self {
            Self::Ip(ip) => Some(ip.to_string()),
            Self::Named(ServiceRef {
                namespace: None,
                name,
            }) => env(&corefile::service_host_env(name)),
            Self::Named(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_name_and_namespaced_name() {
        assert_eq!(
            UpstreamService::parse("10.96.0.11"),
            Ok(UpstreamService::Ip("10.96.0.11".parse().unwrap()))
        );
        assert_eq!(
            UpstreamService::parse("fd00::11"),
            Ok(UpstreamService::Ip("fd00::11".parse().unwrap()))
        );
        assert_eq!(
            UpstreamService::parse("kube-dns-upstream"),
            Ok(UpstreamService::Named(ServiceRef {
                namespace: None,
                name: "kube-dns-upstream".into()
            }))
        );
        assert_eq!(
            UpstreamService::parse("dns/upstream"),
            Ok(UpstreamService::Named(ServiceRef {
                namespace: Some("dns".into()),
                name: "upstream".into()
            }))
        );
        for bad in ["", "Kube-DNS", "a/b/c", "/x", "x/", "-x", "10.96.0.300"] {
            assert!(UpstreamService::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_a_service_of_the_pods_namespace_is_read_from_the_environment() {
        let env =
            |name: &str| (name == "KUBE_DNS_UPSTREAM_SERVICE_HOST").then(|| "10.0.0.9".into());
        let named = UpstreamService::parse("kube-dns-upstream").unwrap();
        assert_eq!(named.known_ip(env), Some("10.0.0.9".into()));
        let other = UpstreamService::parse("kube-system/kube-dns-upstream").unwrap();
        assert_eq!(other.known_ip(env), None);
        let ip = UpstreamService::parse("10.0.0.7").unwrap();
        assert_eq!(ip.known_ip(env), Some("10.0.0.7".into()));
    }
}
