//! TLS for the metrics endpoint, with the `-tls-*` flags of kubernetes-sigs/node-local-dns
//! (#27), which hands them to Prometheus' exporter-toolkit: Go's client-auth names, versions
//! spelt `TLS10`..`TLS13`, a client CA only together with a client-auth type.
//!
//! exporter-toolkit re-reads the certificate and key at every handshake, so a rotated pair
//! (cert-manager, kubelet's `..data` swap of a Secret volume) is served without a restart. We
//! look at the files' identity (device, inode, size, times, through symlinks) at every
//! connection and rebuild the configuration when one changed, the client CA included. A
//! rebuild that fails (a half-written pair) keeps the last good configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use crate::flags::TlsConfig;

/// `-tls-client-auth-type`, as Go's `crypto/tls` names the policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    /// Ask for a certificate; take none, or any, unverified.
    RequestClientCert,
    /// Demand a certificate; take any, unverified.
    RequireAnyClientCert,
    /// Take none; verify one that is given against the client CA.
    VerifyClientCertIfGiven,
    /// Demand one, verified against the client CA.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// exporter-toolkit's spellings: the empty string is `NoClientCert` and `RequireClientCert`
    /// is kept for `RequireAnyClientCert`.
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => {
                return Err(format!(
                    "-tls-client-auth-type {other:?}: want NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ))
            }
        })
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// The lowest protocol version offered. rustls has nothing below TLS 1.2, so exporter-toolkit's
/// `TLS10` and `TLS11` mean 1.2 here. node-local-dns's own code (#27) takes Go's numbers
/// (`tls.VersionTLS12` = 771, `tls.VersionTLS13` = 772); its 769 and 770 are refused rather than
/// raised, since a number is a version asked for by value and 1.0/1.1 are not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

impl MinVersion {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "TLS10" | "TLS11" | "TLS12" => Ok(MinVersion::Tls12),
            "TLS13" | "772" => Ok(MinVersion::Tls13),
            "771" => Ok(MinVersion::Tls12),
            "769" | "770" => Err(format!(
                "-tls-min-version {text}: TLS 1.0 and 1.1 are not offered; want 771 (TLS12) or \
                 772 (TLS13)"
            )),
            other => Err(format!(
                "-tls-min-version {other:?}: want TLS10, TLS11, TLS12, TLS13, 771 or 772"
            )),
        }
    }
}

/// The `-tls-*` flags, checked: what does not depend on the files' contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    client_auth: ClientAuth,
    min_version: MinVersion,
}

impl Settings {
    /// The error is one line naming the flag and the reason.
    pub fn new(flags: &TlsConfig) -> Result<Self, String> {
        let client_auth = ClientAuth::parse(&flags.client_auth_type)?;
        let min_version = MinVersion::parse(&flags.min_version)?;
        match (&flags.client_ca_file, client_auth) {
            (Some(ca), ClientAuth::NoClientCert) => {
                return Err(format!(
                    "-tls-client-ca-file {}: set, but -tls-client-auth-type is NoClientCert",
                    ca.display()
                ))
            }
            (None, auth) if auth.verifies() => {
                return Err(format!(
                    "-tls-client-auth-type {auth:?} needs -tls-client-ca-file to verify clients \
                     against"
                ))
            }
            _ => {}
        }
        Ok(Settings {
            cert_file: flags.cert_file.clone(),
            key_file: flags.private_key_file.clone(),
            client_ca_file: flags.client_ca_file.clone(),
            client_auth,
            min_version,
        })
    }

    fn files(&self) -> impl Iterator<Item = &Path> {
        [
            Some(&self.cert_file),
            Some(&self.key_file),
            self.client_ca_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }

    /// Reads the files and builds the server configuration.
    fn build(&self) -> Result<ServerConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certificates(&self.cert_file)?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key_file)?)
            .map_err(|e| format!("{}: no private key: {e}", self.key_file.display()))?;
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let roots = match &self.client_ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(read_certificates(path)?);
                if added == 0 {
                    return Err(format!("{}: no usable CA certificate", path.display()));
                }
                Some(Arc::new(roots))
            }
            None => None,
        };
        let verifier: Arc<dyn ClientCertVerifier> = match (self.client_auth, roots) {
            (ClientAuth::RequestClientCert, _) => Arc::new(AnyClientCert::new(&provider, false)),
            (ClientAuth::RequireAnyClientCert, _) => Arc::new(AnyClientCert::new(&provider, true)),
            (ClientAuth::VerifyClientCertIfGiven, Some(roots)) => {
                WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("client CA: {e}"))?
            }
            (ClientAuth::RequireAndVerifyClientCert, Some(roots)) => {
                WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| format!("client CA: {e}"))?
            }
            _ => WebPkiClientVerifier::no_client_auth(),
        };
        ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| {
                format!(
                    "{} and {}: {e}",
                    self.cert_file.display(),
                    self.key_file.display()
                )
            })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// What identifies a file's contents without reading them; an error counts as a state too,
/// so a file appearing later is noticed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stamp {
    File {
        dev: u64,
        ino: u64,
        len: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
    },
    Unreadable(std::io::ErrorKind),
}

impl Stamp {
    fn of(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => Stamp::File {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            },
            Err(e) => Stamp::Unreadable(e.kind()),
        }
    }
}

/// The TLS side of the endpoint: the configuration in force, rebuilt when its files change.
pub struct Reloading {
    settings: Settings,
    stamps: Vec<Stamp>,
    current: Option<tokio_rustls::TlsAcceptor>,
    /// The last failure logged, so a file that stays broken is logged once, not per scrape.
    last_error: Option<String>,
}

impl Reloading {
    /// Loads the files once; a failure is logged and retried at each connection.
    pub fn new(settings: Settings) -> Self {
        let mut reloading = Reloading {
            settings,
            stamps: Vec::new(),
            current: None,
            last_error: None,
        };
        reloading.acceptor();
        reloading
    }

    /// The acceptor for a new connection; None while no configuration has loaded.
    pub fn acceptor(&mut self) -> Option<tokio_rustls::TlsAcceptor> {
        // Stamps first: a change during the read shows at the next connection.
        let stamps: Vec<Stamp> = self.settings.files().map(Stamp::of).collect();
        if stamps != self.stamps {
            self.stamps = stamps;
            match self.settings.build() {
                Ok(config) => {
                    let reload = self.current.is_some();
                    tracing::info!(
                        cert = %self.settings.cert_file.display(),
                        client_auth = ?self.settings.client_auth,
                        min_version = ?self.settings.min_version,
                        "metrics endpoint: TLS {}", if reload { "configuration reloaded" } else { "on" }
                    );
                    self.current = Some(Arc::new(config).into());
                    self.last_error = None;
                }
                Err(e) if self.last_error.as_ref() != Some(&e) => {
                    let keeping = match self.current {
                        Some(_) => "keeping the last good certificate",
                        None => "refusing connections until it loads",
                    };
                    tracing::error!("metrics endpoint TLS: {e}; {keeping}");
                    self.last_error = Some(e);
                }
                Err(_) => {}
            }
        }
        self.current.clone()
    }
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: a client certificate is asked for
/// (or demanded) and taken unverified; the handshake still proves the client holds its key.
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    fn new(provider: &CryptoProvider, mandatory: bool) -> Self {
        AnyClientCert {
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl fmt::Debug for AnyClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyClientCert")
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
