//! The `kube-dns` ConfigMap: read from its kubelet-mounted directory, parsed and validated.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;

use crate::error::ConfigError;
use crate::servers::{check_server, is_valid_domain, is_valid_label};

const STUB_DOMAINS: &str = "stubDomains";
const UPSTREAM_NAMESERVERS: &str = "upstreamNameservers";
const FEDERATIONS: &str = "federations";
/// CoreDNS's `forward` and kube-dns both cap custom upstreams at three.
const MAX_UPSTREAMS: usize = 3;

/// The parts of the kube-dns ConfigMap node-cache uses. Servers are as the ConfigMap writes
/// them (`1.2.3.4`, `1.2.3.4:5353`, `fd00::53`, `[fd00::53]:5353`), checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeDnsConfig {
    /// Domain → its servers, in the order given.
    pub stub_domains: BTreeMap<String, Vec<String>>,
    /// Servers for everything else, replacing the node's `/etc/resolv.conf`.
    pub upstream_nameservers: Vec<String>,
}

/// Reads `stubDomains` and `upstreamNameservers` from the directory where the kube-dns
/// ConfigMap is mounted. Kubelet makes each key a symlink through `..data`; we read through
/// them. A missing directory or key means empty. `federations` is only checked: kube-dns
/// (and node-cache 1.26) refuse the whole ConfigMap when it is invalid; nothing here uses it.
pub fn load_kube_dns_dir(dir: &Path) -> Result<KubeDnsConfig, ConfigError> {
    read_kube_dns_keys(dir)?.parse()
}

/// The kube-dns ConfigMap's keys node-cache reads, as text: from the mounted directory or
/// from the API's object. None: the key is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeDnsKeys {
    pub stub_domains: Option<String>,
    pub upstream_nameservers: Option<String>,
    pub federations: Option<String>,
}

impl KubeDnsKeys {
    /// The keys of a ConfigMap's data, by name.
    pub fn from_data(mut get: impl FnMut(&str) -> Option<String>) -> Self {
        Self {
            stub_domains: get(STUB_DOMAINS),
            upstream_nameservers: get(UPSTREAM_NAMESERVERS),
            federations: get(FEDERATIONS),
        }
    }

    /// Parsed and validated as [`load_kube_dns_dir`] does.
    pub fn parse(&self) -> Result<KubeDnsConfig, ConfigError> {
        if let Some(federations) = &self.federations {
            check_federations(federations)?;
        }
        parse_kube_dns(
            self.stub_domains.as_deref(),
            self.upstream_nameservers.as_deref(),
        )
    }
}

/// The keys as the mounted directory holds them (through kubelet's `..data` links).
pub fn read_kube_dns_keys(dir: &Path) -> Result<KubeDnsKeys, ConfigError> {
    Ok(KubeDnsKeys {
        stub_domains: read_key(dir, STUB_DOMAINS)?,
        upstream_nameservers: read_key(dir, UPSTREAM_NAMESERVERS)?,
        federations: read_key(dir, FEDERATIONS)?,
    })
}

/// The `federations` key as kube-dns reads it: `name=domain` pairs separated by commas,
/// blanks around each part ignored, the name a DNS-1123 label and the domain a subdomain.
/// Blank text is no federation.
pub(crate) fn check_federations(text: &str) -> Result<(), ConfigError> {
    if text.trim().is_empty() {
        return Ok(());
    }
    for entry in text.split(',') {
        let invalid = |reason| ConfigError::InvalidFederation {
            entry: entry.trim().to_owned(),
            reason,
        };
        let (name, domain) = entry
            .trim()
            .split_once('=')
            .ok_or_else(|| invalid("is not name=domain"))?;
        if !is_valid_label(name.trim()) {
            return Err(invalid("has a name that is not a DNS-1123 label"));
        }
        if !is_valid_domain(domain.trim()) {
            return Err(invalid("has a domain that is not a DNS-1123 subdomain"));
        }
    }
    Ok(())
}

fn read_key(dir: &Path, key: &str) -> Result<Option<String>, ConfigError> {
    let path = dir.join(key);
    match std::fs::read(&path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ConfigError::NotUtf8 { path }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// Parses and validates the two keys' values (JSON), as kube-dns does: stub domains must be
/// DNS-1123 subdomains with at least one server, servers IP or IP:port, at most three upstream
/// nameservers. JSON `null` counts as absent.
pub fn parse_kube_dns(
    stub_domains: Option<&str>,
    upstream_nameservers: Option<&str>,
) -> Result<KubeDnsConfig, ConfigError> {
    let mut config = KubeDnsConfig::default();
    if let Some(json) = stub_domains {
        let raw: Option<BTreeMap<String, Vec<String>>> = from_json(STUB_DOMAINS, json)?;
        for (domain, servers) in raw.unwrap_or_default() {
            config
                .stub_domains
                .insert(domain.clone(), stub_servers(domain, servers)?);
        }
    }
    if let Some(json) = upstream_nameservers {
        let raw: Option<Vec<String>> = from_json(UPSTREAM_NAMESERVERS, json)?;
        config.upstream_nameservers = upstream_servers(raw.unwrap_or_default())?;
    }
    Ok(config)
}

fn from_json<T: serde::de::DeserializeOwned>(
    key: &'static str,
    json: &str,
) -> Result<T, ConfigError> {
    serde_json::from_str(json).map_err(|e| ConfigError::InvalidJson {
        key,
        reason: e.to_string(),
    })
}

fn stub_servers(domain: String, servers: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if !is_valid_domain(&domain) {
        return Err(ConfigError::InvalidDomain { domain });
    }
    if servers.is_empty() {
        return Err(ConfigError::NoServers { domain });
    }
    servers
        .into_iter()
        .map(|server| match check_server(&server) {
            Ok(()) => Ok(server),
            Err(problem) => Err(ConfigError::InvalidStubServer {
                domain: domain.clone(),
                server,
                problem,
            }),
        })
        .collect()
}

fn upstream_servers(servers: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if servers.len() > MAX_UPSTREAMS {
        return Err(ConfigError::TooManyUpstreams {
            count: servers.len(),
        });
    }
    servers
        .into_iter()
        .map(|server| match check_server(&server) {
            Ok(()) => Ok(server),
            Err(problem) => Err(ConfigError::InvalidUpstreamServer { server, problem }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::test_dir::TestDir;

    #[test]
    fn absent_keys_and_null_are_empty() {
        assert_eq!(
            parse_kube_dns(None, None).unwrap(),
            KubeDnsConfig::default()
        );
        assert_eq!(
            parse_kube_dns(Some("null"), Some("null")).unwrap(),
            KubeDnsConfig::default()
        );
        assert_eq!(
            parse_kube_dns(Some("{}"), Some("[]")).unwrap(),
            KubeDnsConfig::default()
        );
    }

    #[test]
    fn error_messages() {
        let msg = |s: Option<&str>, u: Option<&str>| parse_kube_dns(s, u).unwrap_err().to_string();
        assert_eq!(
            msg(Some(r#"{"foo..bar": ["1.1.1.1"]}"#), None),
            r#"kube-dns ConfigMap stubDomains: "foo..bar" is not a valid domain name"#
        );
        assert_eq!(
            msg(None, Some(r#"["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4"]"#)),
            "kube-dns ConfigMap upstreamNameservers: 4 servers given, at most 3 allowed"
        );
        assert_eq!(
            msg(Some(r#"{"acme.local": []}"#), None),
            r#"kube-dns ConfigMap stubDomains: "acme.local" lists no servers"#
        );
        assert_eq!(
            msg(None, Some(r#"["tls://1.1.1.1"]"#)),
            r#"kube-dns ConfigMap upstreamNameservers: server "tls://1.1.1.1" has a transport prefix; only an IP address or IP:port is accepted"#
        );
        assert!(msg(Some("{"), None).starts_with("kube-dns ConfigMap stubDomains: invalid JSON: "));
        assert!(!msg(Some("{\n\"a\": 1\n"), None).contains('\n'));
    }

    #[test]
    fn federations_as_kube_dns_reads_them() {
        for ok in ["", " \n", "myfed=example.com", " a = b.c , d=e "] {
            assert!(check_federations(ok).is_ok(), "{ok:?}");
        }
        for (bad, reason) in [
            ("myfed", "is not name=domain"),
            ("a=b.c,", "is not name=domain"),
            (r#"{"myfed": "example.com"}"#, "is not name=domain"),
            ("my.fed=example.com", "name that is not"),
            ("Fed=example.com", "name that is not"),
            ("myfed=Example.com", "domain that is not"),
            ("myfed=", "domain that is not"),
        ] {
            let err = check_federations(bad).unwrap_err().to_string();
            assert!(err.starts_with("kube-dns ConfigMap federations: "), "{err}");
            assert!(err.contains(reason), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    /// kube-dns refuses the whole ConfigMap, stub domains and all, for a bad federation.
    #[test]
    fn an_invalid_federation_refuses_the_whole_configmap() {
        let dir = TestDir::new("federations");
        std::fs::write(
            dir.path().join(STUB_DOMAINS),
            r#"{"acme.local": ["1.2.3.4"]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join(FEDERATIONS), "not a federation").unwrap();
        let err = load_kube_dns_dir(dir.path()).unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidFederation { .. }),
            "{err}"
        );
        std::fs::write(dir.path().join(FEDERATIONS), "myfed=example.com").unwrap();
        let config = load_kube_dns_dir(dir.path()).unwrap();
        assert_eq!(config.stub_domains["acme.local"], ["1.2.3.4"]);
    }

    #[test]
    fn every_error_counts_as_configmap() {
        let err = parse_kube_dns(Some("x"), None).unwrap_err();
        assert_eq!(err.metric_label(), "configmap");
    }

    #[test]
    fn missing_dir_is_empty() {
        let dir = TestDir::new("missing");
        let config = load_kube_dns_dir(&dir.path().join("nope")).unwrap();
        assert_eq!(config, KubeDnsConfig::default());
    }

    /// The layout kubelet gives a ConfigMap volume, updated the way kubelet updates it:
    /// a new timestamped directory, then `..data` swapped to point at it.
    #[test]
    fn reads_through_kubelet_symlinks_and_follows_a_swap() {
        let dir = TestDir::new("kubelet");
        let root = dir.path();
        let first = root.join("..2026_01_02_03_04_05.000000001");
        std::fs::create_dir(&first).unwrap();
        std::fs::write(first.join(STUB_DOMAINS), r#"{"acme.local": ["1.2.3.4"]}"#).unwrap();
        std::fs::write(first.join(FEDERATIONS), "myfed=example.com").unwrap();
        symlink(first.file_name().unwrap(), root.join("..data")).unwrap();
        for key in [STUB_DOMAINS, UPSTREAM_NAMESERVERS, "federations"] {
            symlink(Path::new("..data").join(key), root.join(key)).unwrap();
        }

        let config = load_kube_dns_dir(root).unwrap();
        assert_eq!(config.stub_domains["acme.local"], ["1.2.3.4"]);
        assert!(
            config.upstream_nameservers.is_empty(),
            "dangling key symlink = absent"
        );

        let second = root.join("..2026_01_02_03_04_06.000000002");
        std::fs::create_dir(&second).unwrap();
        std::fs::write(second.join(UPSTREAM_NAMESERVERS), r#"["8.8.8.8"]"#).unwrap();
        symlink(second.file_name().unwrap(), root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();

        let config = load_kube_dns_dir(root).unwrap();
        assert!(config.stub_domains.is_empty());
        assert_eq!(config.upstream_nameservers, ["8.8.8.8"]);
    }

    #[test]
    fn unreadable_key_names_the_path() {
        let dir = TestDir::new("unreadable");
        std::fs::create_dir(dir.path().join(STUB_DOMAINS)).unwrap();
        let err = load_kube_dns_dir(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("kube-dns ConfigMap "), "{err}");
        assert!(err.contains("stubDomains: cannot read: "), "{err}");
    }
}
