//! The TLS endpoint against real clients on loopback: a rustls client and curl, for each
//! client-auth type, a certificate from another CA, the minimum version, and rotation. The
//! certificates are generated here, in each run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::metrics::{bind, serve, Endpoint, Metrics};

/// A CA and the key that signs with it.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A leaf certificate and its key, as PEM.
    fn issue(&self, name: &str, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// Everything one test needs: a directory with the server's files, the CA that signed them
/// (and the client CA), a client certificate from that CA and one from another.
struct Pki {
    dir: std::path::PathBuf,
    ca: Ca,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("node-cache-tls-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki {
            dir,
            ca: Ca::new("node-cache test CA"),
        };
        pki.write("ca.pem", &pki.ca.pem());
        pki.issue_server("server-1");
        let (cert, key) = pki.ca.issue("scraper", ExtendedKeyUsagePurpose::ClientAuth);
        pki.write("client.pem", &cert);
        pki.write("client.key", &key);
        let (cert, key) =
            Ca::new("another CA").issue("stranger", ExtendedKeyUsagePurpose::ClientAuth);
        pki.write("stranger.pem", &cert);
        pki.write("stranger.key", &key);
        pki
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn issue_server(&self, name: &str) {
        let (cert, key) = self.ca.issue(name, ExtendedKeyUsagePurpose::ServerAuth);
        self.write("tls.crt", &cert);
        self.write("tls.key", &key);
    }

    fn flags(&self, client_auth: &str, min_version: &str) -> TlsConfig {
        TlsConfig {
            enabled: true,
            cert_file: self.path("tls.crt"),
            private_key_file: self.path("tls.key"),
            client_auth_type: client_auth.into(),
            client_ca_file: (client_auth != "NoClientCert").then(|| self.path("ca.pem")),
            min_version: min_version.into(),
        }
    }

    /// The endpoint over TLS on a loopback port; stops when the returned sender drops.
    async fn serve(&self, flags: TlsConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::from_std(bind("127.0.0.1:0").unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            Endpoint::new(Metrics::new(), &flags),
            async {
                let _ = stopped.await;
            },
        ));
        (addr, stop)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which certificate the client presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    NoCert,
    FromCa,
    FromAnotherCa,
}

impl Client {
    fn files(self) -> Option<(&'static str, &'static str)> {
        match self {
            Client::NoCert => None,
            Client::FromCa => Some(("client.pem", "client.key")),
            Client::FromAnotherCa => Some(("stranger.pem", "stranger.key")),
        }
    }
}

/// What a rustls client got: the response's status line and the server certificate's
/// common name, and the protocol version; or the error.
#[derive(Debug)]
struct Scrape {
    status: String,
    server_cert: Vec<u8>,
    version: rustls::ProtocolVersion,
}

async fn scrape(
    pki: &Pki,
    addr: SocketAddr,
    client: Client,
    max_tls12: bool,
) -> Result<Scrape, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.path("ca.pem")).unwrap())
        .unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] = if max_tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client.files() {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(pki.path(cert)).unwrap()],
                PrivateKeyDer::from_pem_file(pki.path(key)).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (_, session) = tls.get_ref();
        let server_cert = session.peer_certificates().unwrap()[0].to_vec();
        let version = session.protocol_version().unwrap();
        // With TLS 1.3 a refused client certificate shows only here, after the handshake.
        tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let response = String::from_utf8_lossy(&response).into_owned();
        if !response.contains("coredns_nodecache_setup_errors_total") {
            return Err(format!("no metrics in {response:?}"));
        }
        Ok(Scrape {
            status: response.lines().next().unwrap_or_default().to_string(),
            server_cert,
            version,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// curl's exit status and output for one scrape.
fn curl(pki: &Pki, addr: SocketAddr, client: Client, tls12_only: bool) -> (bool, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(pki.path("ca.pem"))
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", addr.port()));
    if let Some((cert, key)) = client.files() {
        cmd.arg("--cert").arg(pki.path(cert));
        cmd.arg("--key").arg(pki.path(key));
    }
    if tls12_only {
        cmd.args(["--tlsv1.2", "--tls-max", "1.2"]);
    }
    cmd.arg(format!("https://localhost:{}/metrics", addr.port()));
    let out = cmd.output().expect("curl runs (hack/deps.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.contains("coredns_nodecache_setup_errors_total"),
        text,
    )
}

#[test]
fn flag_values_as_exporter_toolkit_spells_them() {
    let flags = |auth: &str, ca: Option<&str>, min: &str| TlsConfig {
        enabled: true,
        cert_file: "/c".into(),
        private_key_file: "/k".into(),
        client_auth_type: auth.into(),
        client_ca_file: ca.map(Into::into),
        min_version: min.into(),
    };
    for (auth, expected) in [
        ("", ClientAuth::NoClientCert),
        ("NoClientCert", ClientAuth::NoClientCert),
        ("RequestClientCert", ClientAuth::RequestClientCert),
        ("RequireAnyClientCert", ClientAuth::RequireAnyClientCert),
        ("RequireClientCert", ClientAuth::RequireAnyClientCert),
    ] {
        let settings = Settings::new(&flags(auth, None, "TLS13")).unwrap();
        assert_eq!(settings.client_auth, expected, "{auth}");
    }
    for (version, expected) in [
        ("TLS10", MinVersion::Tls12),
        ("TLS11", MinVersion::Tls12),
        ("TLS12", MinVersion::Tls12),
        ("TLS13", MinVersion::Tls13),
        // node-local-dns #27's spelling: Go's tls.VersionTLS12 and tls.VersionTLS13.
        ("771", MinVersion::Tls12),
        ("772", MinVersion::Tls13),
    ] {
        let settings = Settings::new(&flags("", None, version)).unwrap();
        assert_eq!(settings.min_version, expected, "{version}");
    }
    for (auth, ca, min, reason) in [
        (
            "Sometimes",
            None,
            "TLS13",
            "-tls-client-auth-type \"Sometimes\": want",
        ),
        (
            "NoClientCert",
            Some("/ca"),
            "TLS13",
            "-tls-client-ca-file /ca: set, but",
        ),
        (
            "VerifyClientCertIfGiven",
            None,
            "TLS13",
            "-tls-client-auth-type VerifyClientCertIfGiven needs -tls-client-ca-file",
        ),
        (
            "RequireAndVerifyClientCert",
            None,
            "TLS13",
            "-tls-client-auth-type RequireAndVerifyClientCert needs -tls-client-ca-file",
        ),
        ("", None, "1.3", "-tls-min-version \"1.3\": want"),
        ("", None, "tls13", "-tls-min-version \"tls13\": want"),
        (
            "",
            None,
            "769",
            "-tls-min-version 769: TLS 1.0 and 1.1 are not offered",
        ),
        (
            "",
            None,
            "770",
            "-tls-min-version 770: TLS 1.0 and 1.1 are not offered",
        ),
        ("", None, "773", "-tls-min-version \"773\": want"),
        ("", None, "0x0304", "-tls-min-version \"0x0304\": want"),
    ] {
        let err = Settings::new(&flags(auth, ca, min)).unwrap_err();
        assert!(err.starts_with(reason), "{auth} {ca:?} {min}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn unusable_files_are_named() {
    let pki = Pki::new("files");
    let flags = pki.flags("RequireAndVerifyClientCert", "TLS13");
    let build = |flags: &TlsConfig| Settings::new(flags).unwrap().build().unwrap_err();
    let mut missing = flags.clone();
    missing.cert_file = pki.path("nope.crt");
    assert!(build(&missing).starts_with(&format!("{}: ", pki.path("nope.crt").display())));
    let mut mismatched = flags.clone();
    mismatched.private_key_file = pki.path("client.key");
    let err = build(&mismatched);
    assert!(err.contains("tls.crt and"), "{err}");
    let mut no_ca = flags.clone();
    no_ca.client_ca_file = Some(pki.path("tls.key"));
    assert!(
        build(&no_ca).contains("no PEM certificate"),
        "{}",
        build(&no_ca)
    );
}

/// Go's five policies, each against no client certificate, one from the client CA and one
/// from another CA, with the rustls client and with curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_types_as_go_defines_them() {
    use Client::*;
    let pki = Pki::new("auth");
    for (auth, accepted) in [
        ("NoClientCert", &[NoCert, FromCa, FromAnotherCa][..]),
        ("RequestClientCert", &[NoCert, FromCa, FromAnotherCa]),
        ("RequireAnyClientCert", &[FromCa, FromAnotherCa]),
        ("VerifyClientCertIfGiven", &[NoCert, FromCa]),
        ("RequireAndVerifyClientCert", &[FromCa]),
    ] {
        let (addr, _stop) = pki.serve(pki.flags(auth, "TLS13")).await;
        for client in [NoCert, FromCa, FromAnotherCa] {
            let expected = accepted.contains(&client);
            let rustls = scrape(&pki, addr, client, false).await;
            assert_eq!(rustls.is_ok(), expected, "{auth}, {client:?}: {rustls:?}");
            if let Ok(scrape) = rustls {
                assert_eq!(scrape.status, "HTTP/1.1 200 OK");
            }
            let (ok, output) = tokio::task::block_in_place(|| curl(&pki, addr, client, false));
            assert_eq!(ok, expected, "curl, {auth}, {client:?}: {output}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_version_tls13_refuses_a_tls12_client() {
    let pki = Pki::new("versions");
    let (tls13, _stop13) = pki.serve(pki.flags("NoClientCert", "TLS13")).await;
    let (tls12, _stop12) = pki.serve(pki.flags("NoClientCert", "TLS12")).await;

    let refused = scrape(&pki, tls13, Client::NoCert, true).await;
    assert!(refused.is_err(), "{refused:?}");
    let (ok, output) = tokio::task::block_in_place(|| curl(&pki, tls13, Client::NoCert, true));
    assert!(!ok, "curl --tls-max 1.2 against TLS13: {output}");

    let old = scrape(&pki, tls12, Client::NoCert, true).await.unwrap();
    assert_eq!(old.version, rustls::ProtocolVersion::TLSv1_2);
    let new = scrape(&pki, tls12, Client::NoCert, false).await.unwrap();
    assert_eq!(new.version, rustls::ProtocolVersion::TLSv1_3);
    let (ok, output) = tokio::task::block_in_place(|| curl(&pki, tls12, Client::NoCert, true));
    assert!(ok, "curl --tls-max 1.2 against TLS12: {output}");
}

fn pem_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// Kubelet updates a Secret volume by writing a new directory and swapping the `..data`
/// symlink; the next connection gets the new certificate. A broken pair afterwards keeps
/// the last good one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let pki = Pki::new("rotation");
    let volume = pki.path("volume");
    let swap_in = |generation: &str| {
        let dir = volume.join(generation);
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["tls.crt", "tls.key"] {
            std::fs::copy(pki.path(name), dir.join(name)).unwrap();
        }
        let tmp = volume.join("..data_tmp");
        std::os::unix::fs::symlink(generation, &tmp).unwrap();
        std::fs::rename(&tmp, volume.join("..data")).unwrap();
    };
    std::fs::create_dir_all(&volume).unwrap();
    swap_in("..first");
    for name in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(Path::new("..data").join(name), volume.join(name)).unwrap();
    }
    let mut flags = pki.flags("RequireAndVerifyClientCert", "TLS13");
    flags.cert_file = volume.join("tls.crt");
    flags.private_key_file = volume.join("tls.key");
    let (addr, _stop) = pki.serve(flags).await;

    let first = scrape(&pki, addr, Client::FromCa, false).await.unwrap();
    assert_eq!(first.server_cert, pem_der(&pki.path("tls.crt")));

    pki.issue_server("server-2");
    swap_in("..second");
    let second = scrape(&pki, addr, Client::FromCa, false).await.unwrap();
    assert_eq!(second.server_cert, pem_der(&pki.path("tls.crt")));
    assert_ne!(second.server_cert, first.server_cert);

    // A key that does not match: the last good pair stays in force.
    std::fs::copy(pki.path("client.key"), volume.join("..second/tls.key")).unwrap();
    let third = scrape(&pki, addr, Client::FromCa, false).await.unwrap();
    assert_eq!(third.server_cert, second.server_cert);
}

/// A certificate that is not there yet (a Secret still being issued) is picked up when it
/// appears; until then connections are refused, never served in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_appears_later_is_picked_up() {
    let pki = Pki::new("later");
    let mut flags = pki.flags("NoClientCert", "TLS13");
    flags.cert_file = pki.path("later.crt");
    flags.private_key_file = pki.path("later.key");
    let (addr, _stop) = pki.serve(flags).await;

    let refused = scrape(&pki, addr, Client::NoCert, false).await;
    assert!(refused.is_err(), "{refused:?}");
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    std::fs::copy(pki.path("tls.key"), pki.path("later.key")).unwrap();
    std::fs::copy(pki.path("tls.crt"), pki.path("later.crt")).unwrap();
    let scrape = scrape(&pki, addr, Client::NoCert, false).await.unwrap();
    assert_eq!(scrape.server_cert, pem_der(&pki.path("tls.crt")));
}
