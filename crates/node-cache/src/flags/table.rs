//! The one table of flags. Each flag is described here once: its name, alias, whether it is a
//! boolean, its default and its help. The Go-syntax parser reads names and kinds from it,
//! [`super::validate`] reads the values by [`Id`], and the usage text and the README's flag
//! table are rendered from it.

/// How a flag takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `-name` alone means true; a value only as `-name=value`.
    Bool,
    /// `-name value` or `-name=value`; the word is the value's type as usage shows it.
    Value(&'static str),
}

/// Where a flag comes from, for the README: what differs from upstream at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// kubernetes/dns `cmd/node-cache`.
    Upstream,
    /// The newer line, kubernetes-sigs/node-local-dns.
    NewerUpstream,
    /// CoreDNS's own flags, which upstream's binary also takes.
    CoreDns,
    /// node-cache's own.
    Ours,
}

impl Origin {
    fn readme(self) -> &'static str {
        match self {
            Origin::Upstream => "upstream",
            Origin::NewerUpstream => "node-local-dns",
            Origin::CoreDns => "CoreDNS",
            Origin::Ours => "node-cache",
        }
    }
}

pub(super) struct Flag {
    pub(super) name: &'static str,
    pub(super) alias: Option<&'static str>,
    pub(super) kind: Kind,
    pub(super) default: &'static str,
    pub(super) origin: Origin,
    pub(super) help: &'static str,
}

const STRING: Kind = Kind::Value("string");

/// `Id Name "name" [| "alias"]: kind, "default", origin, "help";` per flag: the [`Id`] enum
/// and [`FLAGS`] in the same order, so an `Id` is its flag's index.
macro_rules! flags {
    ($($id:ident $name:literal $(| $alias:literal)?: $kind:expr, $default:literal, $origin:ident,
       $help:literal;)*) => {
        /// A flag, by its place in [`FLAGS`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) enum Id {
            $($id),*
        }

        pub(super) const FLAGS: &[Flag] = &[$(Flag {
            name: $name,
            alias: flags!(@alias $($alias)?),
            kind: $kind,
            default: $default,
            origin: Origin::$origin,
            help: $help,
        }),*];
    };
    (@alias) => { None };
    (@alias $alias:literal) => { Some($alias) };
}

flags! {
    LocalIp "localip": STRING, "", Upstream,
        "comma-separated IP addresses to listen on, IPv4, IPv6 or both (required)";
    SetupInterface "setupinterface": Kind::Bool, "true", Upstream,
        "create and maintain the interface holding the local IPs";
    InterfaceName "interfacename": STRING, "nodelocaldns", Upstream,
        "name of the interface holding the local IPs";
    SyncInterval "syncinterval": Kind::Value("duration"), "60s", Upstream,
        "how often the interface, rules and Corefile are re-checked: Nns or N mean N seconds \
         (upstream's spelling), other units as themselves (30s, 1m); at least 1s";
    MetricsListenAddress "metrics-listen-address": STRING, "0.0.0.0:9353", Upstream,
        "address of node-cache's own Prometheus endpoint (path /metrics)";
    SetupIptables "setupiptables": Kind::Bool, "true", Upstream,
        "install and maintain the packet-filter rules";
    BaseCorefile "basecorefile": STRING, "/etc/coredns/Corefile.base", Upstream,
        "the Corefile template (from the node-local-dns ConfigMap)";
    Corefile "corefile": STRING, "/etc/Corefile", Upstream,
        "where the rendered Corefile is written (-conf wins when given)";
    KubeDnsCm "kubednscm": STRING, "", Upstream,
        "directory where the kube-dns ConfigMap is mounted; empty means /etc/kube-dns if it \
         exists";
    UpstreamSvc "upstreamsvc": STRING, "kube-dns", Upstream,
        "Service whose ClusterIP is the upstream for the cluster domain: read from \
         <NAME>_SERVICE_HOST, else followed through the Kubernetes API (-kubeapi); also \
         namespace/name (through the API) or an IP address";
    HealthPort "health-port": STRING, "8080", Upstream,
        "port of CoreDNS's health plugin";
    SkipTeardown "skipteardown": Kind::Bool, "false", Upstream,
        "leave the interface and rules in place on exit";
    ReloadWithSignal "reloadwithsignal": Kind::Bool, "false", Upstream,
        "accepted for compatibility: node-cache always reloads CoreDNS with SIGUSR1 after a \
         render";
    PrometheusListenAddress "prometheus-listen-address": STRING, ":9253", NewerUpstream,
        "address CoreDNS's prometheus plugin serves on, as set in the Corefile";
    TlsEnabled "tls-enabled": Kind::Bool, "false", NewerUpstream,
        "serve the metrics endpoint over TLS (docs/metrics-tls.md)";
    TlsCertFile "tls-cert-file": STRING, "/etc/ssl/tls.crt", NewerUpstream,
        "TLS certificate (PEM) of the metrics endpoint";
    TlsPrivateKeyFile "tls-private-key-file": STRING, "/etc/ssl/tls.key", NewerUpstream,
        "TLS private key (PEM) of the metrics endpoint";
    TlsClientAuthType "tls-client-auth-type" | "client-auth-type": STRING, "NoClientCert", NewerUpstream,
        "TLS client authentication of the metrics endpoint, by Go's names";
    TlsClientCaFile "tls-client-ca-file" | "client-ca-file": STRING, "", NewerUpstream,
        "CA bundle verifying TLS clients of the metrics endpoint";
    TlsMinVersion "tls-min-version": STRING, "TLS13", NewerUpstream,
        "minimum TLS version of the metrics endpoint: TLS12 or TLS13, or Go's numbers 771 or 772 \
         (node-local-dns's spelling); TLS 1.0 and 1.1 are not offered";
    CorednsBinary "coredns-binary": STRING, "", Ours,
        "the CoreDNS binary to run (default: coredns on PATH, else /coredns)";
    FirewallBackend "firewall-backend": STRING, "iptables", Ours,
        "packet-filter backend for the rules: iptables (upstream's: the iptables/ip6tables \
         commands), nftables (a table of our own, inet node-local-dns), or auto (the mode the \
         node's kube-proxy and kubelet use)";
    CorednsUid "coredns-uid": Kind::Value("uint"), "65532", Ours,
        "user id CoreDNS runs as, with only NET_BIND_SERVICE; 0 keeps it root with our \
         privileges";
    CorednsGid "coredns-gid": Kind::Value("uint"), "65532", Ours,
        "group id CoreDNS runs as (ignored when -coredns-uid is 0)";
    ReadyFile "readyfile": STRING, "", Ours,
        "file node-cache keeps while this instance is ready: its own CoreDNS answers on the \
         local IPs and the rules are in place (for a readiness probe, with -checkready); empty: \
         none";
    CheckReady "checkready": Kind::Bool, "false", Ours,
        "probe mode: exit 0 if -readyfile names a running, ready instance, else 1; touches \
         nothing";
    KubeApi "kubeapi": Kind::Bool, "true", Ours,
        "watch the Corefile's ConfigMaps (and the -upstreamsvc Service when its \
         <NAME>_SERVICE_HOST is missing) through the Kubernetes API when the pod's service \
         account or -kubeconfig gives access: a change is in effect within a second; without \
         access (no token, 403, apiserver down) the mounted files are read as upstream does, \
         said once, retried with back-off";
    Kubeconfig "kubeconfig": STRING, "", Ours,
        "kubeconfig file for -kubeapi; empty: the pod's service account";
    BaseCorefileConfigMap "basecorefileconfigmap": STRING, "node-local-dns", Ours,
        "ConfigMap (pod's namespace, key Corefile) watched for the Corefile template; empty: \
         -basecorefile only";
    KubeDnsConfigMap "kubednsconfigmap": STRING, "kube-dns", Ours,
        "kube-dns ConfigMap (pod's namespace: stubDomains, upstreamNameservers, federations) \
         watched when one is mounted (-kubednscm); empty: -kubednscm only";
    Conf "conf": STRING, "", CoreDns,
        "CoreDNS: the Corefile to load; here, the path the rendered Corefile is written to";
    Pidfile "pidfile": STRING, "", CoreDns,
        "CoreDNS: path to write the pid file";
    DnsPort "dns.port" | "p": STRING, "53", CoreDns,
        "CoreDNS: default port; also the DNS port in the rules and stub-domain blocks";
    Quiet "quiet": Kind::Bool, "false", CoreDns,
        "CoreDNS: quiet mode (no initialization output)";
    Version "version": Kind::Bool, "false", CoreDns,
        "show node-cache's and CoreDNS's versions and exit";
    Plugins "plugins": Kind::Bool, "false", CoreDns,
        "list CoreDNS's installed plugins and exit";
}

impl Id {
    pub(super) fn name(self) -> &'static str {
        FLAGS[self as usize].name
    }
}

/// Every flag's value as given (the last one wins) or its default, as text.
pub(super) struct Values(Vec<String>);

impl Values {
    pub(super) fn defaults() -> Self {
        Values(FLAGS.iter().map(|f| f.default.to_string()).collect())
    }

    /// `index` is a place in [`FLAGS`].
    pub(super) fn set(&mut self, index: usize, value: String) {
        self.0[index] = value;
    }

    pub(super) fn text(&self, id: Id) -> &str {
        &self.0[id as usize]
    }

    pub(super) fn take(&mut self, id: Id) -> String {
        std::mem::take(&mut self.0[id as usize])
    }

    /// A boolean flag's value; the parser stores only `true` or `false` for them.
    pub(super) fn on(&self, id: Id) -> bool {
        debug_assert_eq!(FLAGS[id as usize].kind, Kind::Bool);
        self.text(id) == "true"
    }
}

/// Help text on one line.
fn help(flag: &Flag) -> String {
    flag.help.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The usage text, Go style: each flag, sorted by name, with its value type, help and
/// non-zero default.
pub fn usage() -> String {
    let mut flags: Vec<&Flag> = FLAGS.iter().collect();
    flags.sort_by_key(|f| f.name);
    let mut text = String::from(
        "Usage of node-cache:\n\
         Runs CoreDNS as a NodeLocal DNS cache on the given local IPs, with the interface and \
         packet-filter rules that divert the node's DNS traffic to it.\n\n",
    );
    for flag in flags {
        text.push_str("  -");
        text.push_str(flag.name);
        if let Kind::Value(word) = flag.kind {
            text.push(' ');
            text.push_str(word);
        }
        text.push_str("\n    \t");
        text.push_str(&help(flag));
        // One name per flag; the other spelling (upstream's, or CoreDNS's short one) is said.
        if let Some(alias) = flag.alias {
            text.push_str(&format!(" (alias -{alias} accepted)"));
        }
        match (flag.kind, flag.default) {
            (_, "") | (Kind::Bool, "false") => {}
            (Kind::Bool, d) => text.push_str(&format!(" (default {d})")),
            (Kind::Value(_), d) => text.push_str(&format!(" (default {d:?})")),
        }
        text.push('\n');
    }
    text.truncate(text.trim_end().len());
    text
}

/// The README's flag table, in the table's order.
pub fn markdown_table() -> String {
    let mut text = String::from("| flag | default | from | meaning |\n|---|---|---|---|\n");
    for flag in FLAGS {
        let name = match flag.alias {
            Some(alias) => format!("`-{}`, `-{alias}`", flag.name),
            None => format!("`-{}`", flag.name),
        };
        let default = match flag.default {
            "" => String::new(),
            d => format!("`{d}`"),
        };
        text.push_str(&format!(
            "| {name} | {default} | {} | {} |\n",
            flag.origin.readme(),
            // Markdown would read `<NAME>` as an HTML tag and `|` as a cell border.
            help(flag).replace('|', "\\|").replace('<', "\\<")
        ));
    }
    text
}
