//! The command line as a whole: every spelling, every value check, the usage text.

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
            kube: crate::kube_api::ApiConfig {
                enabled: true,
                kubeconfig: None,
                base_corefile_configmap: "node-local-dns".into(),
                kube_dns_configmap: "kube-dns".into(),
            },
            tls: TlsConfig {
                enabled: false,
                cert_file: "/etc/ssl/tls.crt".into(),
                private_key_file: "/etc/ssl/tls.key".into(),
                client_auth_type: "NoClientCert".into(),
                client_ca_file: None,
                min_version: "TLS13".into(),
            },
            warnings: Vec::new(),
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
    assert_eq!(interval("1500ms"), Duration::from_millis(1500));
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

/// A microsecond interval was a busy loop (0.6 CPU-seconds per second); it is raised to the
/// floor, with a warning, rather than refused (upstream takes it).
#[test]
fn sync_interval_below_the_floor_is_raised() {
    for tiny in ["1us", "999ms", "1s5ns", "500ms"] {
        let c = ok(&["-localip=10.0.0.1", "-syncinterval", tiny]);
        let expected = if tiny == "1s5ns" {
            Duration::new(1, 5)
        } else {
            Duration::from_secs(1)
        };
        assert_eq!(c.sync_interval, expected, "{tiny}");
        if tiny == "1s5ns" {
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        } else {
            assert_eq!(
                c.warnings,
                [format!(
                    "-syncinterval {tiny} is below the floor of 1s; re-checking every 1s"
                )]
            );
        }
    }
    assert!(ok(&["-localip=10.0.0.1", "-syncinterval=1ns"])
        .warnings
        .is_empty());
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
    // Checked when bound, so that a bad one costs the endpoint and not DNS (as upstream).
    for unusable in ["9353", "abc", "19353"] {
        let arg = format!("-metrics-listen-address={unusable}");
        assert_eq!(
            ok(&["-localip=10.0.0.1", &arg]).metrics_listen_address,
            unusable
        );
    }
    let m = err(&["-localip=10.0.0.1", "-prometheus-listen-address=:x"]);
    assert!(m.contains("-prometheus-listen-address"), "{m}");
}

#[test]
fn upstream_svc_must_not_be_empty() {
    assert!(err(&["-localip=10.0.0.1", "-upstreamsvc="]).contains("-upstreamsvc"));
}

#[test]
fn tls_flags_are_taken_as_given() {
    let c = ok(&[
        "-localip=10.0.0.1",
        "-tls-cert-file=/c",
        "-tls-private-key-file=/k",
        "-tls-client-auth-type=RequireAndVerifyClientCert",
        "-tls-client-ca-file=/ca",
        "-tls-min-version=TLS12",
        "-tls-enabled",
    ]);
    assert_eq!(
        c.tls,
        TlsConfig {
            enabled: true,
            cert_file: "/c".into(),
            private_key_file: "/k".into(),
            client_auth_type: "RequireAndVerifyClientCert".into(),
            client_ca_file: Some("/ca".into()),
            min_version: "TLS12".into(),
        }
    );
    // Upstream's spelling in its PR: -tls-enabled=1.
    assert!(ok(&["-localip=10.0.0.1", "-tls-enabled=1"]).tls.enabled);
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
    assert!(text.contains("(alias -p accepted)"), "{text}");
    assert!(
        text.contains("(alias -client-auth-type accepted)"),
        "{text}"
    );
    assert!(text.contains("(alias -client-ca-file accepted)"), "{text}");
    // One name per flag: the alias is not listed as a flag of its own.
    assert!(!text.contains("  -client-auth-type"), "{text}");
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

/// README.md's flag table is [`markdown_table`], between its two markers. `UPDATE_README=1`
/// rewrites it.
#[test]
fn the_readme_flag_table_is_the_flag_table() {
    const BEGIN: &str = "<!-- generated from crates/node-cache/src/flags/table.rs: \
                         UPDATE_README=1 cargo test -p node-cache --lib readme -->\n";
    const END: &str = "<!-- end of flags -->\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let start = readme.find(BEGIN).expect("the README's begin marker") + BEGIN.len();
    let end = start + readme[start..].find(END).expect("the README's end marker");
    let want = markdown_table();
    if readme[start..end] == want {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).expect("writing README.md");
        return;
    }
    panic!(
        "README.md's flag table differs from the flag table (UPDATE_README=1 rewrites it); \
         it should read:\n{want}"
    );
}

/// node-local-dns #27's code registers `-client-auth-type` and `-client-ca-file` and a numeric
/// `-tls-min-version`; its description (and node-cache) spell the first two `-tls-…`. Both
/// spellings land in the same place, the last given wins, and the number is passed through to
/// the metrics endpoint, which checks it (`metrics::tls`).
#[test]
fn upstream_tls_spellings_are_aliases() {
    for (auth, ca) in [
        ("-tls-client-auth-type", "-tls-client-ca-file"),
        ("-client-auth-type", "-client-ca-file"),
        ("--client-auth-type", "--client-ca-file"),
    ] {
        let c = ok(&[
            "-localip=169.254.20.10",
            &format!("{auth}=RequireAndVerifyClientCert"),
            ca,
            "/etc/ssl/ca.crt",
            "-tls-min-version",
            "772",
        ]);
        assert_eq!(
            c.tls.client_auth_type, "RequireAndVerifyClientCert",
            "{auth}"
        );
        assert_eq!(
            c.tls.client_ca_file,
            Some(PathBuf::from("/etc/ssl/ca.crt")),
            "{ca}"
        );
        assert_eq!(c.tls.min_version, "772");
    }
    let c = ok(&[
        "-localip=169.254.20.10",
        "-tls-client-auth-type=NoClientCert",
        "-client-auth-type=RequestClientCert",
    ]);
    assert_eq!(c.tls.client_auth_type, "RequestClientCert");
}
