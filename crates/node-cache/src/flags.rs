//! The command line: upstream node-cache's flags, CoreDNS's own, and the newer line's, in Go
//! `flag` syntax (SPEC §1). The clap definition below is the single table of names, defaults
//! and help; `go_syntax` translates Go spellings for it and `validate` turns the strings into a
//! typed [`Config`]. Every error is one line naming the flag and the reason, exit code 2.

mod duration;
mod go_syntax;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use coredns_child::ChildUser;
use netsetup::BackendChoice;

/// The flags as clap sees them after `go_syntax`: every value a string, validated afterwards
/// so that errors read the same whatever went wrong.
#[derive(Parser, Debug)]
#[command(
    name = "node-cache",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true
)]
struct RawFlags {
    /// comma-separated IP addresses to listen on, IPv4, IPv6 or both (required)
    #[arg(long = "localip", value_name = "string", default_value = "")]
    localip: String,

    /// create and maintain the interface holding the local IPs
    #[arg(long = "setupinterface", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "true", default_missing_value = "true")]
    setupinterface: bool,

    /// name of the interface holding the local IPs
    #[arg(
        long = "interfacename",
        value_name = "string",
        default_value = "nodelocaldns"
    )]
    interfacename: String,

    /// how often the interface, rules and Corefile are re-checked: Nns or N mean N seconds
    /// (upstream's spelling), other units as themselves (500ms, 30s, 1m)
    #[arg(long = "syncinterval", value_name = "duration", default_value = "60s")]
    syncinterval: String,

    /// address of node-cache's own Prometheus endpoint (path /metrics)
    #[arg(
        long = "metrics-listen-address",
        value_name = "string",
        default_value = "0.0.0.0:9353"
    )]
    metrics_listen_address: String,

    /// address CoreDNS's prometheus plugin serves on, as set in the Corefile
    #[arg(
        long = "prometheus-listen-address",
        value_name = "string",
        default_value = ":9253"
    )]
    prometheus_listen_address: String,

    /// install and maintain the packet-filter rules
    #[arg(long = "setupiptables", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "true", default_missing_value = "true")]
    setupiptables: bool,

    /// the Corefile template (from the node-local-dns ConfigMap)
    #[arg(
        long = "basecorefile",
        value_name = "string",
        default_value = "/etc/coredns/Corefile.base"
    )]
    basecorefile: String,

    /// where the rendered Corefile is written (-conf wins when given)
    #[arg(
        long = "corefile",
        value_name = "string",
        default_value = "/etc/Corefile"
    )]
    corefile: String,

    /// directory where the kube-dns ConfigMap is mounted; empty means /etc/kube-dns if it
    /// exists
    #[arg(long = "kubednscm", value_name = "string", default_value = "")]
    kubednscm: String,

    /// Service whose ClusterIP is the upstream for the cluster domain (read from
    /// <NAME>_SERVICE_HOST)
    #[arg(
        long = "upstreamsvc",
        value_name = "string",
        default_value = "kube-dns"
    )]
    upstreamsvc: String,

    /// port of CoreDNS's health plugin
    #[arg(long = "health-port", value_name = "string", default_value = "8080")]
    health_port: String,

    /// leave the interface and rules in place on exit
    #[arg(long = "skipteardown", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true")]
    skipteardown: bool,

    /// accepted for compatibility: node-cache always reloads CoreDNS with SIGUSR1 after a
    /// render
    #[arg(long = "reloadwithsignal", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true")]
    reloadwithsignal: bool,

    /// serve the metrics endpoint over TLS (not supported yet: refused rather than served in
    /// plaintext)
    #[arg(long = "tls-enabled", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true")]
    tls_enabled: bool,

    /// TLS certificate for the metrics endpoint
    #[arg(
        long = "tls-cert-file",
        value_name = "string",
        default_value = "/etc/ssl/tls.crt"
    )]
    tls_cert_file: String,

    /// TLS private key for the metrics endpoint
    #[arg(
        long = "tls-private-key-file",
        value_name = "string",
        default_value = "/etc/ssl/tls.key"
    )]
    tls_private_key_file: String,

    /// TLS client authentication for the metrics endpoint
    #[arg(
        long = "tls-client-auth-type",
        value_name = "string",
        default_value = "NoClientCert"
    )]
    tls_client_auth_type: String,

    /// CA bundle verifying TLS clients of the metrics endpoint
    #[arg(long = "tls-client-ca-file", value_name = "string", default_value = "")]
    tls_client_ca_file: String,

    /// minimum TLS version of the metrics endpoint
    #[arg(
        long = "tls-min-version",
        value_name = "string",
        default_value = "TLS13"
    )]
    tls_min_version: String,

    /// the CoreDNS binary to run (default: coredns on PATH, else /coredns)
    #[arg(long = "coredns-binary", value_name = "string", default_value = "")]
    coredns_binary: String,

    /// packet-filter backend for the rules: iptables (upstream's: the iptables/ip6tables
    /// commands), nftables (a table of our own, inet node-local-dns), or auto (the mode the
    /// node's kube-proxy and kubelet use)
    #[arg(
        long = "firewall-backend",
        value_name = "string",
        default_value = "iptables"
    )]
    firewall_backend: String,

    /// user id CoreDNS runs as, with only NET_BIND_SERVICE; 0 keeps it root with our privileges
    #[arg(long = "coredns-uid", value_name = "uint", default_value = "65532")]
    coredns_uid: String,

    /// group id CoreDNS runs as (ignored when -coredns-uid is 0)
    #[arg(long = "coredns-gid", value_name = "uint", default_value = "65532")]
    coredns_gid: String,

    /// CoreDNS: the Corefile to load; here, the path the rendered Corefile is written to
    #[arg(long = "conf", value_name = "string", default_value = "")]
    conf: String,

    /// CoreDNS: path to write the pid file
    #[arg(long = "pidfile", value_name = "string", default_value = "")]
    pidfile: String,

    /// CoreDNS: default port; also the DNS port in the rules and stub-domain blocks (alias -p)
    #[arg(
        long = "dns.port",
        alias = "p",
        value_name = "string",
        default_value = "53"
    )]
    dns_port: String,

    /// CoreDNS: quiet mode (no initialization output)
    #[arg(long = "quiet", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true")]
    quiet: bool,

    /// show node-cache's and CoreDNS's versions and exit
    #[arg(long = "version", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true")]
    version: bool,

    /// file node-cache keeps while this instance is ready: its own CoreDNS answers on the local
    /// IPs and the rules are in place (for a readiness probe, with -checkready); empty: none
    #[arg(long = "readyfile", value_name = "string", default_value = "")]
    readyfile: String,

    /// probe mode: exit 0 if -readyfile names a running, ready instance, else 1; touches
    /// nothing
    #[arg(long = "checkready", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true")]
    checkready: bool,

    /// list CoreDNS's installed plugins and exit
    #[arg(long = "plugins", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true")]
    plugins: bool,
}

/// The validated command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `-localip`: the addresses CoreDNS binds and the rules match, IPv4, IPv6 or both
    /// (dual-stack), in the order given, duplicates dropped. Empty only in the informational modes.
    pub local_ips: Vec<IpAddr>,
    /// `-setupinterface`: create and maintain the interface holding `local_ips`.
    pub setup_interface: bool,
    /// `-interfacename`: a valid Linux interface name.
    pub interface_name: String,
    /// `-syncinterval` in force (`Nns` and bare integers are seconds); always > 0.
    pub sync_interval: Duration,
    /// `-metrics-listen-address` as given (Go style, `:9353` = all interfaces), validated;
    /// bind it with [`crate::metrics::bind`].
    pub metrics_listen_address: String,
    /// `-setupiptables`: install and maintain the packet-filter rules.
    pub setup_iptables: bool,
    /// `-basecorefile`: the Corefile template.
    pub base_corefile: PathBuf,
    /// Where the rendered Corefile goes and what CoreDNS loads: `-conf` if given, else
    /// `-corefile`.
    pub corefile: PathBuf,
    /// `-kubednscm`, or `/etc/kube-dns` when empty and that directory exists; None: no
    /// kube-dns configuration.
    pub kubednscm: Option<PathBuf>,
    /// `-upstreamsvc`: the Service whose `<NAME>_SERVICE_HOST` fills the cluster DNS IP.
    pub upstream_svc: String,
    /// `-health-port`: CoreDNS's health plugin port (1-65535).
    pub health_port: u16,
    /// `-skipteardown`: leave interface and rules in place on exit.
    pub skip_teardown: bool,
    /// `-reloadwithsignal`: accepted; node-cache always reloads CoreDNS with SIGUSR1.
    pub reload_with_signal: bool,
    /// `-dns.port` / `-p`: the DNS port (1-65535), passed to CoreDNS and used in the rules.
    pub dns_port: u16,
    /// `-pidfile`: CoreDNS's pid goes there; CoreDNS writes it when it runs as root, node-cache
    /// when it runs as another user.
    pub pidfile: Option<PathBuf>,
    /// `-quiet`: passed to CoreDNS.
    pub quiet: bool,
    /// `-version`: print versions and exit.
    pub show_version: bool,
    /// `-plugins`: list CoreDNS's plugins and exit.
    pub list_plugins: bool,
    /// `-readyfile`: kept by the agent while this instance is ready; None when empty.
    pub ready_file: Option<PathBuf>,
    /// `-checkready`: probe mode, see [`crate::readiness::check`].
    pub check_ready: bool,
    /// `-coredns-binary`, or `coredns` found on PATH, else `/coredns`.
    pub coredns_binary: PathBuf,
    /// `-firewall-backend`: which packet filter carries the rules.
    pub firewall_backend: BackendChoice,
    /// `-coredns-uid` / `-coredns-gid`: who CoreDNS runs as; None (uid 0): as we do.
    pub coredns_user: Option<ChildUser>,
    /// `-prometheus-listen-address` as given (Go style), validated.
    pub prometheus_listen_address: String,
    /// The `-tls-*` flags of the metrics endpoint. `enabled` is always false: TLS is refused
    /// at parse time until it is implemented.
    pub tls: TlsConfig,
}

/// The newer upstream line's TLS settings for the metrics endpoint, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// `-tls-enabled`.
    pub enabled: bool,
    /// `-tls-cert-file`.
    pub cert_file: PathBuf,
    /// `-tls-private-key-file`.
    pub private_key_file: PathBuf,
    /// `-tls-client-auth-type`, e.g. `NoClientCert`, `RequireAndVerifyClientCert`.
    pub client_auth_type: String,
    /// `-tls-client-ca-file`; None when empty.
    pub client_ca_file: Option<PathBuf>,
    /// `-tls-min-version`, e.g. `TLS12`, `TLS13`.
    pub min_version: String,
}

impl Config {
    /// CoreDNS's arguments after the binary: the rendered Corefile, the DNS port, and the
    /// pass-through flags that were given.
    pub fn child_args(&self) -> Vec<String> {
        let mut args = vec![
            "-conf".to_string(),
            self.corefile.display().to_string(),
            "-dns.port".to_string(),
            self.dns_port.to_string(),
        ];
        // An unprivileged CoreDNS may not be able to create the file where it is asked for
        // (a root-owned directory); node-cache writes it then (see `serving`).
        if let (Some(pidfile), None) = (&self.pidfile, self.coredns_user) {
            args.push("-pidfile".into());
            args.push(pidfile.display().to_string());
        }
        if self.quiet {
            args.push("-quiet".into());
        }
        args
    }
}

/// Why parsing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagError {
    /// `-h`, `-help` or `--help`: the usage text, for stderr; exit 0.
    Help(String),
    /// A bad command line: one line naming the flag and the reason; exit 2.
    Usage(String),
}

impl FlagError {
    /// The process exit code, as Go's `flag` package uses them.
    pub fn exit_code(&self) -> i32 {
        match self {
            FlagError::Help(_) => 0,
            FlagError::Usage(_) => 2,
        }
    }
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagError::Help(text) | FlagError::Usage(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for FlagError {}

/// What parsing needs to know about the machine, so tests do not depend on it.
trait Host {
    fn is_dir(&self, path: &Path) -> bool;
    /// An executable file named `name` in a directory of PATH.
    fn find_in_path(&self, name: &str) -> Option<PathBuf>;
}

struct RealHost;

impl Host for RealHost {
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn find_in_path(&self, name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            // Relative entries (including the empty one, meaning ".") are skipped, as Go's
            // exec.LookPath refuses them.
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|candidate| {
                candidate
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }
}

const DEFAULT_KUBE_DNS_DIR: &str = "/etc/kube-dns";
const COREDNS_FALLBACK: &str = "/coredns";

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Config, FlagError> {
    parse_on(args, &RealHost)
}

fn parse_on(
    args: impl IntoIterator<Item = OsString>,
    host: &dyn Host,
) -> Result<Config, FlagError> {
    let mut command = RawFlags::command();
    command.build();
    let clap_args = go_syntax::to_clap_args(&command, args)?;
    let raw = command
        .try_get_matches_from(clap_args)
        .and_then(|matches| RawFlags::from_arg_matches(&matches))
        // go_syntax hands clap only known flags with well-formed values, so this is a bug
        // here rather than a user error; still reported as a usage error, on one line.
        .map_err(|e| FlagError::Usage(clap_first_line(&e)))?;
    validate(raw, host)
}

fn clap_first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn invalid(flag: &str, value: &str, reason: impl fmt::Display) -> FlagError {
    FlagError::Usage(format!(
        "invalid value {value:?} for flag -{flag}: {reason}"
    ))
}

fn validate(raw: RawFlags, host: &dyn Host) -> Result<Config, FlagError> {
    if raw.checkready && raw.readyfile.is_empty() {
        return Err(FlagError::Usage(
            "flag -checkready needs -readyfile: the file the agent keeps while it is ready".into(),
        ));
    }
    let informational = raw.version || raw.plugins || raw.checkready;
    let local_ips = parse_local_ips(&raw.localip, informational)?;
    check_interface_name(&raw.interfacename)
        .map_err(|reason| invalid("interfacename", &raw.interfacename, reason))?;
    let sync_interval = duration::parse_sync_interval(&raw.syncinterval)
        .map_err(|reason| invalid("syncinterval", &raw.syncinterval, reason))?;
    for (flag, value) in [
        ("metrics-listen-address", &raw.metrics_listen_address),
        ("prometheus-listen-address", &raw.prometheus_listen_address),
    ] {
        crate::metrics::parse_listen_address(value)
            .map_err(|reason| invalid(flag, value, reason))?;
    }
    if raw.upstreamsvc.is_empty() {
        return Err(FlagError::Usage(
            "flag -upstreamsvc must not be empty: it names the upstream Service".into(),
        ));
    }
    let health_port = parse_port("health-port", &raw.health_port)?;
    let dns_port = parse_port("dns.port", &raw.dns_port)?;
    if raw.tls_enabled && !informational {
        return Err(FlagError::Usage(
            "flag -tls-enabled is not supported yet: node-cache refuses to serve metrics in \
             plaintext when TLS was asked for"
                .into(),
        ));
    }
    let non_empty = |s: String| (!s.is_empty()).then(|| PathBuf::from(s));
    let corefile = non_empty(raw.conf).unwrap_or_else(|| PathBuf::from(raw.corefile));
    let kubednscm = non_empty(raw.kubednscm).or_else(|| {
        let default = Path::new(DEFAULT_KUBE_DNS_DIR);
        host.is_dir(default).then(|| default.to_path_buf())
    });
    let coredns_binary = non_empty(raw.coredns_binary)
        .or_else(|| host.find_in_path("coredns"))
        .unwrap_or_else(|| PathBuf::from(COREDNS_FALLBACK));
    let firewall_backend = raw.firewall_backend.parse::<BackendChoice>().map_err(|_| {
        invalid(
            "firewall-backend",
            &raw.firewall_backend,
            "want auto, iptables or nftables",
        )
    })?;
    let coredns_uid = parse_id("coredns-uid", &raw.coredns_uid)?;
    let coredns_gid = parse_id("coredns-gid", &raw.coredns_gid)?;
    Ok(Config {
        local_ips,
        setup_interface: raw.setupinterface,
        interface_name: raw.interfacename,
        sync_interval,
        metrics_listen_address: raw.metrics_listen_address,
        setup_iptables: raw.setupiptables,
        base_corefile: PathBuf::from(raw.basecorefile),
        corefile,
        kubednscm,
        upstream_svc: raw.upstreamsvc,
        health_port,
        skip_teardown: raw.skipteardown,
        reload_with_signal: raw.reloadwithsignal,
        dns_port,
        pidfile: non_empty(raw.pidfile),
        quiet: raw.quiet,
        show_version: raw.version,
        list_plugins: raw.plugins,
        ready_file: non_empty(raw.readyfile),
        check_ready: raw.checkready,
        coredns_binary,
        firewall_backend,
        coredns_user: (coredns_uid != 0).then_some(ChildUser {
            uid: coredns_uid,
            gid: coredns_gid,
        }),
        prometheus_listen_address: raw.prometheus_listen_address,
        tls: TlsConfig {
            enabled: raw.tls_enabled,
            cert_file: PathBuf::from(raw.tls_cert_file),
            private_key_file: PathBuf::from(raw.tls_private_key_file),
            client_auth_type: raw.tls_client_auth_type,
            client_ca_file: non_empty(raw.tls_client_ca_file),
            min_version: raw.tls_min_version,
        },
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
            return Err(invalid("localip", text, "empty entry in the list"));
        }
        let ip: IpAddr = entry
            .parse()
            .map_err(|_| invalid("localip", entry, "not an IP address"))?;
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

fn parse_id(flag: &str, value: &str) -> Result<u32, FlagError> {
    match value.parse::<u32>() {
        Ok(id) if id != u32::MAX && value.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(invalid(flag, value, "not a numeric user or group id")),
    }
}

fn parse_port(flag: &str, value: &str) -> Result<u16, FlagError> {
    match value.parse::<u16>() {
        Ok(port) if port > 0 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(invalid(flag, value, "not a port number (1-65535)")),
    }
}

/// The usage text, Go style: each flag with its value type, help and non-zero default.
pub fn usage() -> String {
    let mut command = RawFlags::command();
    command.build();
    let mut args: Vec<_> = command
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?, a)))
        .collect();
    args.sort_by_key(|(long, _)| *long);
    let mut text = String::from(
        "Usage of node-cache:\n\
         Runs CoreDNS as a NodeLocal DNS cache on the given local IPs, with the interface and \
         packet-filter rules that divert the node's DNS traffic to it.\n\n",
    );
    for (long, arg) in args {
        let is_bool = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        text.push_str("  -");
        text.push_str(long);
        if !is_bool {
            if let Some(name) = arg.get_value_names().and_then(|n| n.first()) {
                text.push(' ');
                text.push_str(name);
            }
        }
        text.push_str("\n    \t");
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        text.push_str(&help.split_whitespace().collect::<Vec<_>>().join(" "));
        let default = arg
            .get_default_values()
            .first()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        match (is_bool, default.as_str()) {
            (_, "") | (true, "false") => {}
            (true, d) => text.push_str(&format!(" (default {d})")),
            (false, d) => text.push_str(&format!(" (default {d:?})")),
        }
        text.push('\n');
    }
    text.truncate(text.trim_end().len());
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine with the given directories and `coredns` on PATH at the given place.
    struct FakeHost {
        dirs: Vec<&'static str>,
        coredns: Option<&'static str>,
    }

    impl Host for FakeHost {
        fn is_dir(&self, path: &Path) -> bool {
            self.dirs.iter().any(|d| Path::new(d) == path)
        }

        fn find_in_path(&self, name: &str) -> Option<PathBuf> {
            assert_eq!(name, "coredns");
            self.coredns.map(PathBuf::from)
        }
    }

    const BARE: FakeHost = FakeHost {
        dirs: Vec::new(),
        coredns: None,
    };

    fn parse_with(host: &FakeHost, args: &[&str]) -> Result<Config, FlagError> {
        parse_on(args.iter().map(OsString::from), host)
    }

    fn ok(args: &[&str]) -> Config {
        parse_with(&BARE, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn err(args: &[&str]) -> String {
        match parse_with(&BARE, args) {
            Err(e @ FlagError::Usage(_)) => {
                assert_eq!(e.exit_code(), 2);
                let text = e.to_string();
                assert_eq!(text.lines().count(), 1, "one line: {text}");
                text
            }
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        }
    }

    const ADDON: [&str; 8] = [
        "-localip",
        "169.254.20.10,10.96.0.10",
        "-conf",
        "/etc/Corefile",
        "-upstreamsvc",
        "kube-dns-upstream",
        "-pidfile",
        "/tmp/node-cache.pid",
    ];

    #[test]
    fn addon_manifest_argv() {
        let host = FakeHost {
            dirs: vec!["/etc/kube-dns"],
            coredns: Some("/usr/local/bin/coredns"),
        };
        let config = parse_with(&host, &ADDON).unwrap();
        assert_eq!(
            config,
            Config {
                local_ips: vec![
                    "169.254.20.10".parse().unwrap(),
                    "10.96.0.10".parse().unwrap()
                ],
                setup_interface: true,
                interface_name: "nodelocaldns".into(),
                sync_interval: Duration::from_secs(60),
                metrics_listen_address: "0.0.0.0:9353".into(),
                setup_iptables: true,
                base_corefile: "/etc/coredns/Corefile.base".into(),
                corefile: "/etc/Corefile".into(),
                kubednscm: Some("/etc/kube-dns".into()),
                upstream_svc: "kube-dns-upstream".into(),
                health_port: 8080,
                skip_teardown: false,
                reload_with_signal: false,
                dns_port: 53,
                pidfile: Some("/tmp/node-cache.pid".into()),
                quiet: false,
                show_version: false,
                list_plugins: false,
                ready_file: None,
                check_ready: false,
                coredns_binary: "/usr/local/bin/coredns".into(),
                firewall_backend: BackendChoice::Iptables,
                coredns_user: Some(ChildUser {
                    uid: 65532,
                    gid: 65532
                }),
                prometheus_listen_address: ":9253".into(),
                tls: TlsConfig {
                    enabled: false,
                    cert_file: "/etc/ssl/tls.crt".into(),
                    private_key_file: "/etc/ssl/tls.key".into(),
                    client_auth_type: "NoClientCert".into(),
                    client_ca_file: None,
                    min_version: "TLS13".into(),
                },
            }
        );
        // Unprivileged CoreDNS (the default): node-cache writes the pidfile itself.
        assert_eq!(
            config.child_args(),
            ["-conf", "/etc/Corefile", "-dns.port", "53"]
        );
        let root = Config {
            coredns_user: None,
            ..config
        };
        assert_eq!(
            root.child_args(),
            [
                "-conf",
                "/etc/Corefile",
                "-dns.port",
                "53",
                "-pidfile",
                "/tmp/node-cache.pid"
            ]
        );
    }

    #[test]
    fn defaults_without_kube_dns_dir_or_coredns_on_path() {
        let config = ok(&["-localip", "169.254.20.10"]);
        assert_eq!(config.kubednscm, None);
        assert_eq!(config.coredns_binary, PathBuf::from("/coredns"));
        assert_eq!(config.corefile, PathBuf::from("/etc/Corefile"));
        assert_eq!(config.pidfile, None);
        assert_eq!(
            config.child_args(),
            ["-conf", "/etc/Corefile", "-dns.port", "53"]
        );
    }

    #[test]
    fn explicit_paths_win_over_resolution() {
        let host = FakeHost {
            dirs: vec!["/etc/kube-dns"],
            coredns: Some("/usr/bin/coredns"),
        };
        let config = parse_with(
            &host,
            &[
                "-localip=169.254.20.10",
                "-kubednscm=/cm",
                "-coredns-binary",
                "/opt/coredns",
                "-corefile",
                "/run/Corefile",
            ],
        )
        .unwrap();
        assert_eq!(config.kubednscm, Some(PathBuf::from("/cm")));
        assert_eq!(config.coredns_binary, PathBuf::from("/opt/coredns"));
        assert_eq!(config.corefile, PathBuf::from("/run/Corefile"));
        let config = parse_with(
            &host,
            &["-localip=169.254.20.10", "-corefile=/a", "-conf=/b"],
        )
        .unwrap();
        assert_eq!(config.corefile, PathBuf::from("/b"));
    }

    #[test]
    fn every_spelling_and_last_one_wins() {
        for args in [
            &["-localip", "10.0.0.1", "-interfacename", "nl0"][..],
            &["-localip=10.0.0.1", "-interfacename=nl0"],
            &["--localip", "10.0.0.1", "--interfacename", "nl0"],
            &["--localip=10.0.0.1", "--interfacename=nl0"],
            &[
                "-localip=10.0.0.9",
                "-localip=10.0.0.1",
                "-interfacename=nl0",
            ],
        ] {
            let config = ok(args);
            assert_eq!(config.local_ips, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
            assert_eq!(config.interface_name, "nl0");
        }
    }

    #[test]
    fn booleans() {
        let c = ok(&[
            "-localip=10.0.0.1",
            "-setupinterface=false",
            "-setupiptables=0",
        ]);
        assert!(!c.setup_interface && !c.setup_iptables);
        let c = ok(&[
            "-localip=10.0.0.1",
            "-skipteardown",
            "--reloadwithsignal",
            "-quiet=T",
        ]);
        assert!(c.skip_teardown && c.reload_with_signal && c.quiet);
        assert_eq!(c.child_args().last().map(String::as_str), Some("-quiet"));
        let m = err(&["-localip=10.0.0.1", "-setupinterface", "false"]);
        assert!(m.contains("-setupinterface=false"), "{m}");
        let m = err(&["-localip=10.0.0.1", "-skipteardown=maybe"]);
        assert!(
            m.starts_with("invalid value \"maybe\" for flag -skipteardown"),
            "{m}"
        );
    }

    #[test]
    fn unknown_flags_positionals_and_double_dash() {
        assert_eq!(
            err(&["-localip=10.0.0.1", "-foo"]),
            "flag provided but not defined: -foo"
        );
        assert!(err(&["-localip=10.0.0.1", "stray"]).contains("\"stray\""));
        assert!(err(&["-localip=10.0.0.1", "--", "x"]).contains("\"x\""));
        let c = ok(&["-localip=10.0.0.1", "--"]);
        assert_eq!(c.local_ips.len(), 1);
    }

    #[test]
    fn help_exits_zero_with_usage() {
        for h in ["-h", "-help", "--help"] {
            match parse_with(&BARE, &[h]) {
                Err(e @ FlagError::Help(_)) => {
                    assert_eq!(e.exit_code(), 0);
                    assert!(e.to_string().contains("-localip string"), "{e}");
                }
                other => panic!("{h}: {other:?}"),
            }
        }
    }

    #[test]
    fn firewall_backend_defaults_to_upstreams_iptables() {
        let pick = |v: &str| ok(&["-localip=10.0.0.1", &format!("-firewall-backend={v}")]);
        assert_eq!(
            ok(&["-localip=10.0.0.1"]).firewall_backend,
            BackendChoice::Iptables
        );
        assert_eq!(pick("auto").firewall_backend, BackendChoice::Auto);
        assert_eq!(pick("nftables").firewall_backend, BackendChoice::Nftables);
        assert_eq!(
            err(&["-localip=10.0.0.1", "-firewall-backend=nft"]),
            "invalid value \"nft\" for flag -firewall-backend: want auto, iptables or nftables"
        );
    }

    #[test]
    fn coredns_user_defaults_to_65532_and_uid_0_keeps_it_as_we_run() {
        assert_eq!(
            ok(&["-localip=10.0.0.1"]).coredns_user,
            Some(ChildUser {
                uid: 65532,
                gid: 65532
            })
        );
        let c = ok(&[
            "-localip=10.0.0.1",
            "-coredns-uid=1000",
            "-coredns-gid=2000",
        ]);
        assert_eq!(
            c.coredns_user,
            Some(ChildUser {
                uid: 1000,
                gid: 2000
            })
        );
        assert_eq!(
            ok(&["-localip=10.0.0.1", "-coredns-uid=0"]).coredns_user,
            None
        );
        assert_eq!(
            err(&["-localip=10.0.0.1", "-coredns-uid=nobody"]),
            "invalid value \"nobody\" for flag -coredns-uid: not a numeric user or group id"
        );
        assert!(err(&["-localip=10.0.0.1", "-coredns-gid=-1"]).contains("-coredns-gid"));
    }

    #[test]
    fn local_ip_errors() {
        assert_eq!(
            err(&["-localip", "10.0.0.x"]),
            "invalid value \"10.0.0.x\" for flag -localip: not an IP address"
        );
        let dual = ok(&["-localip", "169.254.20.10,fd00::10"]);
        assert_eq!(
            dual.local_ips.len(),
            2,
            "dual-stack: both families in one process"
        );
        assert!(err(&["-localip", "10.0.0.1,"]).contains("empty entry"));
        assert!(err(&["-localip", " 10.0.0.1"]).contains("not an IP address"));
        assert!(err(&[]).starts_with("flag -localip is required"));
        assert!(err(&["-localip="]).starts_with("flag -localip is required"));
    }

    #[test]
    fn local_ips_ipv6_and_duplicates() {
        let c = ok(&["-localip", "fd00::10,fd00::a,fd00::10"]);
        assert_eq!(
            c.local_ips,
            [
                "fd00::10".parse::<IpAddr>().unwrap(),
                "fd00::a".parse().unwrap()
            ]
        );
    }

    #[test]
    fn interface_name_rules() {
        assert_eq!(
            ok(&["-localip=10.0.0.1", "-interfacename=abcdefghijklmno"])
                .interface_name
                .len(),
            15
        );
        for bad in [
            "",
            "abcdefghijklmnop",
            ".",
            "..",
            "a/b",
            "a b",
            "a:b",
            "a\tb",
        ] {
            let arg = format!("-interfacename={bad}");
            let m = err(&["-localip=10.0.0.1", &arg]);
            assert!(m.contains("-interfacename"), "{bad:?}: {m}");
        }
    }

    #[test]
    fn sync_interval_spellings() {
        let interval = |v: &str| ok(&["-localip=10.0.0.1", "-syncinterval", v]).sync_interval;
        assert_eq!(interval("60ns"), Duration::from_secs(60));
        assert_eq!(interval("5"), Duration::from_secs(5));
        assert_eq!(interval("500ms"), Duration::from_millis(500));
        assert_eq!(interval("1h30m"), Duration::from_secs(5400));
        assert_eq!(
            ok(&["-localip=10.0.0.1"]).sync_interval,
            Duration::from_secs(60)
        );
        let m = err(&["-localip=10.0.0.1", "-syncinterval=0"]);
        assert!(
            m.starts_with("invalid value \"0\" for flag -syncinterval:"),
            "{m}"
        );
        assert!(err(&["-localip=10.0.0.1", "-syncinterval=-1s"]).contains("-syncinterval"));
        assert!(err(&["-localip=10.0.0.1", "-syncinterval=soon"]).contains("-syncinterval"));
    }

    #[test]
    fn ports() {
        let c = ok(&[
            "-localip=10.0.0.1",
            "-health-port=9090",
            "-dns.port",
            "5353",
        ]);
        assert_eq!((c.health_port, c.dns_port), (9090, 5353));
        assert_eq!(ok(&["-localip=10.0.0.1", "-p", "1053"]).dns_port, 1053);
        assert!(ok(&["-localip=10.0.0.1", "-p=1053"])
            .child_args()
            .contains(&"1053".to_string()));
        assert_eq!(
            err(&["-localip=10.0.0.1", "-health-port", "http"]),
            "invalid value \"http\" for flag -health-port: not a port number (1-65535)"
        );
        for bad in ["0", "65536", "-1", "+53", ""] {
            let arg = format!("-dns.port={bad}");
            assert!(
                err(&["-localip=10.0.0.1", &arg]).contains("-dns.port"),
                "{bad}"
            );
        }
    }

    #[test]
    fn listen_addresses() {
        let c = ok(&["-localip=10.0.0.1", "-metrics-listen-address", ":9353"]);
        assert_eq!(c.metrics_listen_address, ":9353");
        ok(&[
            "-localip=10.0.0.1",
            "-metrics-listen-address=[fd00::1]:9353",
        ]);
        let m = err(&["-localip=10.0.0.1", "-metrics-listen-address=9353"]);
        assert!(
            m.starts_with("invalid value \"9353\" for flag -metrics-listen-address:"),
            "{m}"
        );
        let m = err(&["-localip=10.0.0.1", "-prometheus-listen-address=:x"]);
        assert!(m.contains("-prometheus-listen-address"), "{m}");
    }

    #[test]
    fn upstream_svc_must_not_be_empty() {
        assert!(err(&["-localip=10.0.0.1", "-upstreamsvc="]).contains("-upstreamsvc"));
    }

    #[test]
    fn tls_is_accepted_but_enabling_it_is_refused() {
        let c = ok(&[
            "-localip=10.0.0.1",
            "-tls-cert-file=/c",
            "-tls-private-key-file=/k",
            "-tls-client-auth-type=RequireAndVerifyClientCert",
            "-tls-client-ca-file=/ca",
            "-tls-min-version=TLS12",
            "-tls-enabled=false",
        ]);
        assert_eq!(
            c.tls,
            TlsConfig {
                enabled: false,
                cert_file: "/c".into(),
                private_key_file: "/k".into(),
                client_auth_type: "RequireAndVerifyClientCert".into(),
                client_ca_file: Some("/ca".into()),
                min_version: "TLS12".into(),
            }
        );
        let m = err(&["-localip=10.0.0.1", "-tls-enabled"]);
        assert!(m.starts_with("flag -tls-enabled is not supported"), "{m}");
    }

    #[test]
    fn informational_modes_need_no_local_ip() {
        let c = ok(&["-version"]);
        assert!(c.show_version && c.local_ips.is_empty());
        let c = ok(&["-plugins", "-coredns-binary", "/x/coredns"]);
        assert!(c.list_plugins);
        assert_eq!(c.coredns_binary, PathBuf::from("/x/coredns"));
        // What is given is still checked.
        assert!(err(&["-version", "-localip=nope"]).contains("-localip"));
    }

    #[test]
    fn usage_lists_every_flag_go_style() {
        let text = usage();
        for flag in [
            "-localip string",
            "-setupinterface\n",
            "-interfacename string",
            "-syncinterval duration",
            "-metrics-listen-address string",
            "-setupiptables\n",
            "-basecorefile string",
            "-corefile string",
            "-kubednscm string",
            "-upstreamsvc string",
            "-health-port string",
            "-skipteardown\n",
            "-reloadwithsignal\n",
            "-prometheus-listen-address string",
            "-tls-enabled\n",
            "-tls-cert-file string",
            "-tls-private-key-file string",
            "-tls-client-auth-type string",
            "-tls-client-ca-file string",
            "-tls-min-version string",
            "-coredns-binary string",
            "-conf string",
            "-pidfile string",
            "-dns.port string",
            "-quiet\n",
            "-version\n",
            "-plugins\n",
        ] {
            assert!(
                text.contains(&format!("  {flag}")),
                "{flag:?} missing:\n{text}"
            );
        }
        assert!(text.contains("(default \"0.0.0.0:9353\")"), "{text}");
        assert!(text.contains("(alias -p)"), "{text}");
        assert!(text.contains("(default true)"), "{text}");
        assert!(!text.contains("(default false)"), "{text}");
        assert!(!text.contains("(default \"\")"), "{text}");
        assert!(!text.ends_with('\n'));
    }

    #[test]
    fn real_host_finds_an_executable_on_path() {
        // `sh` is on PATH on every machine these tests run on.
        let found = RealHost.find_in_path("sh").expect("sh on PATH");
        assert!(found.is_absolute() && found.ends_with("sh"), "{found:?}");
        assert_eq!(
            RealHost.find_in_path("no-such-binary-node-cache-test"),
            None
        );
    }
}
