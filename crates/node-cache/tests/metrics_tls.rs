//! Issue 12 through the real binary, each agent in a network namespace of its own with the
//! pinned CoreDNS: a template using `__PROMETHEUS__ENDPOINT__` and `timeouts`, flags that used
//! to stop the agent (an unusable metrics address, a microsecond sync interval), and the
//! metrics endpoint over TLS with client certificates required.
//!
//! Needs root and CoreDNS (`COREDNS_BINARY=$(hack/coredns.sh | tail -n1)`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use testbed::{coredns_binary, in_fresh_netns, wait_until, TempDir};

const LOCAL_IP: &str = "169.254.20.10";

const TEMPLATE: &str = "\
.:53 {
    errors
    cache 30
    bind __PILLAR__LOCAL__DNS__
    template IN A example.test {
        answer \"{{ .Name }} 60 IN A 192.0.2.7\"
    }
    prometheus __PROMETHEUS__ENDPOINT__
    timeouts {
        read 5s
        idle 30s
    }
    }
";

/// The agent, stopped with SIGTERM (and waited for) when dropped; its log goes to a file.
struct Agent {
    child: Child,
    log: std::path::PathBuf,
}

impl Agent {
    fn start(dir: &Path, extra: &[&str]) -> Result<Agent> {
        std::fs::write(dir.join("Corefile.base"), TEMPLATE)?;
        let log = dir.join("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_node-cache"))
            .args([
                "-localip",
                LOCAL_IP,
                "-setupiptables=false",
                "-kubeapi=false",
            ])
            .arg("-basecorefile")
            .arg(dir.join("Corefile.base"))
            .arg("-corefile")
            .arg(dir.join("Corefile"))
            .arg("-coredns-binary")
            .arg(coredns_binary()?)
            .args(["-prometheus-listen-address", &format!("{LOCAL_IP}:9253")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting node-cache")?;
        Ok(Agent { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_dns(&mut self) -> Result<()> {
        wait_until(
            "an answer from the agent's CoreDNS",
            Duration::from_secs(20),
            || {
                if let Some(status) = self.child.try_wait()? {
                    anyhow::bail!("node-cache exited ({status}):\n{}", self.log());
                }
                let out = Command::new("dig")
                    .args([
                        "+short",
                        "+time=1",
                        "+tries=1",
                        &format!("@{LOCAL_IP}"),
                        "a.example.test",
                    ])
                    .output()?;
                Ok(String::from_utf8_lossy(&out.stdout).trim() == "192.0.2.7")
            },
        )
        .map(drop)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// curl's success and output.
fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl runs (hack/deps.sh installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Upstream serves DNS whatever the metrics flags say; so must we. A template with the newer
/// upstream's variable and `timeouts` is served as it is written.
#[test]
fn template_with_prometheus_endpoint_and_timeouts_served_whatever_the_metrics_flags() {
    let dir = TempDir::new(&testbed::unique_tag()).unwrap();
    let path = dir.path().to_path_buf();
    in_fresh_netns(move || {
        let mut agent = Agent::start(
            &path,
            &["-metrics-listen-address", "19353", "-syncinterval", "1us"],
        )?;
        agent.wait_for_dns()?;
        let corefile = std::fs::read_to_string(path.join("Corefile"))?;
        assert!(
            corefile.contains(&format!("    prometheus {LOCAL_IP}:9253\n")),
            "{corefile}"
        );
        assert!(corefile.contains("    timeouts {\n"), "{corefile}");
        let (ok, text) = curl(&[&format!("http://{LOCAL_IP}:9253/metrics")]);
        assert!(
            ok && text.contains("coredns_build_info"),
            "CoreDNS's metrics: {text}"
        );
        let log = agent.log();
        assert!(
            log.contains("-metrics-listen-address 19353: ")
                && log.contains("serving DNS without the metrics endpoint"),
            "{log}"
        );
        assert!(
            log.contains("-syncinterval 1us is below the floor of 1s"),
            "{log}"
        );
        Ok(())
    })
    .unwrap();
}

struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "metrics CA");
        Pki {
            ca: params.self_signed(&ca_key).unwrap(),
            ca_key,
        }
    }

    /// Writes `NAME.pem` and `NAME.key` into `dir`.
    fn issue(&self, dir: &Path, name: &str, purpose: ExtendedKeyUsagePurpose) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// The issue's "done when": a template using `__PROMETHEUS__ENDPOINT__` and `timeouts`, with
/// `-tls-enabled` and client certificates required, serves DNS and TLS metrics.
#[test]
fn tls_metrics_with_client_certificates_required() {
    let dir = TempDir::new(&testbed::unique_tag()).unwrap();
    let path = dir.path().to_path_buf();
    let pki = Pki::new();
    std::fs::write(path.join("ca.pem"), pki.ca.pem()).unwrap();
    pki.issue(&path, "server", ExtendedKeyUsagePurpose::ServerAuth);
    pki.issue(&path, "client", ExtendedKeyUsagePurpose::ClientAuth);
    in_fresh_netns(move || {
        let file = |name: &str| path.join(name).display().to_string();
        let mut agent = Agent::start(
            &path,
            &[
                "-metrics-listen-address",
                "127.0.0.1:9353",
                "-tls-enabled",
                "-tls-cert-file",
                &file("server.pem"),
                "-tls-private-key-file",
                &file("server.key"),
                // node-local-dns #27's spellings (unit tests cover ours).
                "-client-auth-type",
                "RequireAndVerifyClientCert",
                "-client-ca-file",
                &file("ca.pem"),
                "-tls-min-version",
                "772",
            ],
        )?;
        agent.wait_for_dns()?;
        let url = "https://127.0.0.1:9353/metrics";
        let (ok, text) = curl(&[
            "--cacert",
            &file("ca.pem"),
            "--cert",
            &file("client.pem"),
            "--key",
            &file("client.key"),
            url,
        ]);
        assert!(
            ok && text.contains("coredns_nodecache_setup_errors_total"),
            "with a client certificate: {text}\n{}",
            agent.log()
        );
        let (ok, text) = curl(&["--cacert", &file("ca.pem"), url]);
        assert!(!ok, "without a client certificate: {text}");
        let (ok, text) = curl(&["http://127.0.0.1:9353/metrics"]);
        assert!(!ok, "plaintext: {text}");
        Ok(())
    })
    .unwrap();
}
