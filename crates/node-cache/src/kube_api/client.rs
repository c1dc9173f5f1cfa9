//! Where the API is and who we are to it: `-kubeconfig` when given, else the pod's service
//! account (kubelet's `KUBERNETES_SERVICE_HOST`/`_PORT` and the token, CA and namespace files).
//! Read through [`Environment`] so tests never touch the process environment.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Kubelet's service-account mount.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What the client configuration is read from.
pub struct Environment<'a> {
    /// One environment variable.
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// The service account's directory (token, ca.crt, namespace).
    pub service_account: PathBuf,
}

impl Environment<'_> {
    pub fn process() -> Environment<'static> {
        Environment {
            var: &|name| std::env::var(name).ok(),
            service_account: PathBuf::from(SERVICE_ACCOUNT_DIR),
        }
    }
}

/// Why there is no API to talk to: not an error in the drop-in case, only a log line.
#[derive(Debug, PartialEq, Eq)]
pub enum NoApi {
    /// Not in a pod (no `KUBERNETES_SERVICE_HOST`), or no service-account token mounted.
    NotInCluster(String),
}

/// The client configuration, or why there is none. `POD_NAMESPACE` (downward API) wins over
/// the service account's namespace and the kubeconfig context's.
pub async fn config(
    kubeconfig: Option<&Path>,
    env: &Environment<'_>,
) -> Result<std::result::Result<kube::Config, NoApi>> {
    let mut config = match kubeconfig {
        Some(path) => from_kubeconfig(path).await?,
        None => match in_cluster(env)? {
            Ok(config) => config,
            Err(no) => return Ok(Err(no)),
        },
    };
    if let Some(ns) = (env.var)("POD_NAMESPACE").filter(|ns| !ns.is_empty()) {
        config.default_namespace = ns;
    }
    Ok(Ok(config))
}

async fn from_kubeconfig(path: &Path) -> Result<kube::Config> {
    let file = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("-kubeconfig {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .with_context(|| format!("-kubeconfig {}", path.display()))
}

fn in_cluster(env: &Environment<'_>) -> Result<std::result::Result<kube::Config, NoApi>> {
    let Some(host) = (env.var)("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty()) else {
        return Ok(Err(NoApi::NotInCluster(
            "KUBERNETES_SERVICE_HOST is not set".into(),
        )));
    };
    let token = env.service_account.join("token");
    if !token.is_file() {
        return Ok(Err(NoApi::NotInCluster(format!(
            "no service-account token at {}",
            token.display()
        ))));
    }
    let port = (env.var)("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("https://{host}:{port}");
    let mut config = kube::Config::new(
        url.parse()
            .with_context(|| format!("KUBERNETES_SERVICE_HOST/PORT: {url:?} is not a URL"))?,
    );
    let ca = env.service_account.join("ca.crt");
    let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(&ca)
        .and_then(|certs| certs.map(|c| c.map(|c| c.to_vec())).collect())
        .with_context(|| format!("reading {}", ca.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate", ca.display());
    }
    config.root_cert = Some(certs);
    // Re-read by the client, so a rotated CA is followed.
    config.root_cert_file = Some(ca);
    config.auth_info.token_file = Some(token.display().to_string());
    if let Ok(ns) = std::fs::read_to_string(env.service_account.join("namespace")) {
        config.default_namespace = ns.trim().to_owned();
    }
    Ok(Ok(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUZ2V0LWEtY2VydC1mb3ItdGVzdHMwCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n";

    fn env<'a>(vars: &'a dyn Fn(&str) -> Option<String>, dir: &Path) -> Environment<'a> {
        Environment {
            var: vars,
            service_account: dir.to_path_buf(),
        }
    }

    #[tokio::test]
    async fn outside_a_pod_or_without_a_token_there_is_no_api() {
        let dir =
            testbed::TempDir::new(&format!("kube-api-client-{}", testbed::unique_tag())).unwrap();
        let none = |_: &str| None;
        assert_eq!(
            config(None, &env(&none, dir.path()))
                .await
                .unwrap()
                .unwrap_err(),
            NoApi::NotInCluster("KUBERNETES_SERVICE_HOST is not set".into())
        );
        let host = |n: &str| (n == "KUBERNETES_SERVICE_HOST").then(|| "10.96.0.1".to_string());
        assert_eq!(
            config(None, &env(&host, dir.path()))
                .await
                .unwrap()
                .unwrap_err(),
            NoApi::NotInCluster(format!(
                "no service-account token at {}",
                dir.path().join("token").display()
            ))
        );
    }

    #[tokio::test]
    async fn in_cluster_reads_the_service_account_and_pod_namespace_wins() {
        let dir =
            testbed::TempDir::new(&format!("kube-api-client-{}", testbed::unique_tag())).unwrap();
        std::fs::write(dir.path().join("token"), "t0k3n").unwrap();
        std::fs::write(dir.path().join("ca.crt"), CA).unwrap();
        std::fs::write(dir.path().join("namespace"), "kube-system\n").unwrap();
        let vars = |n: &str| match n {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("6443".to_string()),
            _ => None,
        };
        let c = config(None, &env(&vars, dir.path()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://[fd00::1]:6443/");
        assert_eq!(c.default_namespace, "kube-system");
        assert_eq!(c.root_cert.as_ref().map(Vec::len), Some(1));
        let token = dir.path().join("token").display().to_string();
        assert_eq!(c.auth_info.token_file.as_deref(), Some(token.as_str()));

        let with_ns = |n: &str| match n {
            "POD_NAMESPACE" => Some("dns".to_string()),
            other => vars(other),
        };
        let c = config(None, &env(&with_ns, dir.path()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.default_namespace, "dns");
    }

    #[tokio::test]
    async fn an_unreadable_ca_is_one_line_naming_the_file() {
        let dir =
            testbed::TempDir::new(&format!("kube-api-client-{}", testbed::unique_tag())).unwrap();
        std::fs::write(dir.path().join("token"), "t").unwrap();
        let vars = |n: &str| (n == "KUBERNETES_SERVICE_HOST").then(|| "10.96.0.1".to_string());
        let e = config(None, &env(&vars, dir.path())).await.unwrap_err();
        assert!(
            format!("{e:#}")
                .starts_with(&format!("reading {}", dir.path().join("ca.crt").display())),
            "{e:#}"
        );
    }
}
