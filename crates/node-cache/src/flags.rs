//! The command line: upstream node-cache's flags, CoreDNS's own, and the newer line's, in Go
//! `flag` syntax (SPEC §1). `table` describes every flag once; `go_syntax` reads the arguments
//! with it, and `validate` turns the values into a typed [`Config`]. Every error is one line
//! naming the flag and the reason, exit code 2.

mod duration;
mod go_syntax;
mod table;
#[cfg(test)]
mod tests;
mod validate;

use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coredns_child::ChildUser;
use netsetup::BackendChoice;

pub use table::{markdown_table, usage};

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
    /// `-syncinterval` in force (`Nns` and bare integers are seconds); at least 1 s.
    pub sync_interval: Duration,
    /// `-metrics-listen-address` as given (Go style, `:9353` = all interfaces), unchecked:
    /// [`crate::metrics::bind`] refuses an unusable one, and DNS is served without metrics.
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
    /// The `-tls-*` flags of the metrics endpoint, as given; [`crate::metrics`] checks them
    /// when it starts, so a mistake there costs the endpoint, never DNS.
    pub tls: TlsConfig,
    /// `-kubeapi`, `-kubeconfig` and the ConfigMaps' names.
    pub kube: crate::kube_api::ApiConfig,
    /// Values adjusted rather than refused (a `-syncinterval` below the floor), one line each,
    /// for the log.
    pub warnings: Vec<String>,
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

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Config, FlagError> {
    parse_on(args, &RealHost)
}

fn parse_on(
    args: impl IntoIterator<Item = OsString>,
    host: &dyn Host,
) -> Result<Config, FlagError> {
    let mut values = table::Values::defaults();
    for (index, value) in go_syntax::assignments(table::FLAGS, args)? {
        values.set(index, value);
    }
    validate::validate(values, host)
}
