//! The flags' values, as text, into a typed [`Config`]: each value checked, the defaults that
//! depend on the machine resolved, the flags that depend on each other reconciled.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use coredns_child::ChildUser;
use netsetup::BackendChoice;

use super::table::{Id, Values};
use super::{duration, Config, FlagError, Host, TlsConfig};

const DEFAULT_KUBE_DNS_DIR: &str = "/etc/kube-dns";
const COREDNS_FALLBACK: &str = "/coredns";

fn invalid(flag: Id, value: &str, reason: impl std::fmt::Display) -> FlagError {
    FlagError::Usage(format!(
        "invalid value {value:?} for flag -{}: {reason}",
        flag.name()
    ))
}

/// A path flag's value; `None` when empty.
fn path(v: &mut Values, flag: Id) -> Option<PathBuf> {
    Some(v.take(flag))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

pub(super) fn validate(mut v: Values, host: &dyn Host) -> Result<Config, FlagError> {
    if v.on(Id::CheckReady) && v.text(Id::ReadyFile).is_empty() {
        return Err(FlagError::Usage(
            "flag -checkready needs -readyfile: the file the agent keeps while it is ready".into(),
        ));
    }
    let informational = v.on(Id::Version) || v.on(Id::Plugins) || v.on(Id::CheckReady);
    let local_ips = parse_local_ips(v.text(Id::LocalIp), informational)?;
    let interface_name = v.take(Id::InterfaceName);
    check_interface_name(&interface_name)
        .map_err(|reason| invalid(Id::InterfaceName, &interface_name, reason))?;
    let mut warnings = Vec::new();
    let sync_interval = duration::parse_sync_interval(v.text(Id::SyncInterval))
        .map_err(|reason| invalid(Id::SyncInterval, v.text(Id::SyncInterval), reason))?;
    // Raised rather than refused: upstream takes `1us` (as 1000 s), and a refusal here would
    // crash-loop the node's DNS cache over a tuning knob.
    let sync_interval = if sync_interval < duration::SYNC_INTERVAL_FLOOR {
        warnings.push(format!(
            "-syncinterval {} is below the floor of {:?}; re-checking every {:?}",
            v.text(Id::SyncInterval),
            duration::SYNC_INTERVAL_FLOOR,
            duration::SYNC_INTERVAL_FLOOR
        ));
        duration::SYNC_INTERVAL_FLOOR
    } else {
        sync_interval
    };
    // -metrics-listen-address is checked when it is bound: an unusable one is logged and DNS
    // is served without the endpoint, as upstream does. CoreDNS would refuse a Corefile with a
    // bad prometheus address, so that one is refused here, before anything is touched.
    crate::metrics::parse_listen_address(v.text(Id::PrometheusListenAddress)).map_err(
        |reason| {
            invalid(
                Id::PrometheusListenAddress,
                v.text(Id::PrometheusListenAddress),
                reason,
            )
        },
    )?;
    if v.text(Id::UpstreamSvc).is_empty() {
        return Err(FlagError::Usage(
            "flag -upstreamsvc must not be empty: it names the upstream Service".into(),
        ));
    }
    crate::kube_api::UpstreamService::parse(v.text(Id::UpstreamSvc))
        .map_err(|reason| invalid(Id::UpstreamSvc, v.text(Id::UpstreamSvc), reason))?;
    let health_port = parse_port(&v, Id::HealthPort)?;
    let dns_port = parse_port(&v, Id::DnsPort)?;
    let corefile = path(&mut v, Id::Conf).unwrap_or_else(|| PathBuf::from(v.take(Id::Corefile)));
    let kubednscm = path(&mut v, Id::KubeDnsCm).or_else(|| {
        let default = Path::new(DEFAULT_KUBE_DNS_DIR);
        host.is_dir(default).then(|| default.to_path_buf())
    });
    let coredns_binary = path(&mut v, Id::CorednsBinary)
        .or_else(|| host.find_in_path("coredns"))
        .unwrap_or_else(|| PathBuf::from(COREDNS_FALLBACK));
    let pidfile = path(&mut v, Id::Pidfile);
    let ready_file = path(&mut v, Id::ReadyFile);
    let client_ca_file = path(&mut v, Id::TlsClientCaFile);
    let firewall_backend = v
        .text(Id::FirewallBackend)
        .parse::<BackendChoice>()
        .map_err(|_| {
            invalid(
                Id::FirewallBackend,
                v.text(Id::FirewallBackend),
                "want auto, iptables or nftables",
            )
        })?;
    let coredns_uid = parse_id(&v, Id::CorednsUid)?;
    let coredns_gid = parse_id(&v, Id::CorednsGid)?;
    Ok(Config {
        local_ips,
        setup_interface: v.on(Id::SetupInterface),
        interface_name,
        sync_interval,
        metrics_listen_address: v.take(Id::MetricsListenAddress),
        setup_iptables: v.on(Id::SetupIptables),
        base_corefile: PathBuf::from(v.take(Id::BaseCorefile)),
        corefile,
        kubednscm,
        upstream_svc: v.take(Id::UpstreamSvc),
        health_port,
        skip_teardown: v.on(Id::SkipTeardown),
        reload_with_signal: v.on(Id::ReloadWithSignal),
        dns_port,
        pidfile,
        quiet: v.on(Id::Quiet),
        show_version: v.on(Id::Version),
        list_plugins: v.on(Id::Plugins),
        ready_file,
        check_ready: v.on(Id::CheckReady),
        coredns_binary,
        firewall_backend,
        coredns_user: (coredns_uid != 0).then_some(ChildUser {
            uid: coredns_uid,
            gid: coredns_gid,
        }),
        prometheus_listen_address: v.take(Id::PrometheusListenAddress),
        kube: crate::kube_api::ApiConfig {
            enabled: v.on(Id::KubeApi),
            kubeconfig: path(&mut v, Id::Kubeconfig),
            base_corefile_configmap: v.take(Id::BaseCorefileConfigMap),
            kube_dns_configmap: v.take(Id::KubeDnsConfigMap),
        },
        tls: TlsConfig {
            enabled: v.on(Id::TlsEnabled),
            cert_file: PathBuf::from(v.take(Id::TlsCertFile)),
            private_key_file: PathBuf::from(v.take(Id::TlsPrivateKeyFile)),
            client_auth_type: v.take(Id::TlsClientAuthType),
            client_ca_file,
            min_version: v.take(Id::TlsMinVersion),
        },
        warnings,
    })
}

fn parse_local_ips(text: &str, informational: bool) -> Result<Vec<IpAddr>, FlagError> {
    if text.is_empty() {
        if informational {
            return Ok(Vec::new());
        }
        return Err(FlagError::Usage(
            "flag -localip is required: the comma-separated IPs to listen on, e.g. \
             -localip 169.254.20.10"
                .into(),
        ));
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    let mut seen = HashSet::new();
    for entry in text.split(',') {
        if entry.is_empty() {
            return Err(invalid(Id::LocalIp, text, "empty entry in the list"));
        }
        let ip: IpAddr = entry
            .parse()
            .map_err(|_| invalid(Id::LocalIp, entry, "not an IP address"))?;
        if seen.insert(ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

/// The kernel's rule for interface names (`dev_valid_name`).
fn check_interface_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty interface name");
    }
    if name.len() > 15 {
        return Err("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("not a valid interface name");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err("contains '/', ':' or whitespace");
    }
    Ok(())
}

fn parse_id(v: &Values, flag: Id) -> Result<u32, FlagError> {
    let value = v.text(flag);
    match value.parse::<u32>() {
        Ok(id) if id != u32::MAX && value.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(invalid(flag, value, "not a numeric user or group id")),
    }
}

fn parse_port(v: &Values, flag: Id) -> Result<u16, FlagError> {
    let value = v.text(flag);
    match value.parse::<u16>() {
        Ok(port) if port > 0 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(invalid(flag, value, "not a port number (1-65535)")),
    }
}
