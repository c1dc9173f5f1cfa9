//! Keeps the rendered Corefile in step with its inputs: the base template, the kube-dns
//! ConfigMap directory and the flags. A render that fails keeps the last good file in place.

use std::path::PathBuf;

use anyhow::{Context, Result};
use corefile::{KubeDnsConfig, RenderParams};

use crate::flags::Config;
use crate::metrics::{ErrorType, Metrics};

pub struct CorefileSync {
    base: PathBuf,
    kube_dns_dir: Option<PathBuf>,
    output: PathBuf,
    params: RenderParams,
    /// What we last wrote, so an unchanged render neither rewrites nor reloads.
    written: Option<String>,
    metrics: Metrics,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Unchanged,
}

impl CorefileSync {
    /// `cluster_dns` is the upstream Service's ClusterIP from the environment (None if unset);
    /// passed in so tests never touch the process environment.
    pub fn new(config: &Config, cluster_dns: Option<String>, metrics: Metrics) -> Self {
        Self {
            base: config.base_corefile.clone(),
            kube_dns_dir: config.kubednscm.clone(),
            output: config.corefile.clone(),
            params: RenderParams {
                local_ips: config.local_ips.clone(),
                dns_port: config.dns_port,
                cluster_dns,
                upstream_svc: config.upstream_svc.clone(),
            },
            written: None,
            metrics,
        }
    }

    pub fn output(&self) -> &std::path::Path {
        &self.output
    }

    /// A kube-dns config that fails validation is counted and logged; we then render without
    /// it rather than serve nothing, unless a good Corefile was already written.
    fn kube_dns(&self) -> Option<KubeDnsConfig> {
        let Some(dir) = &self.kube_dns_dir else {
            return Some(KubeDnsConfig::default());
        };
        match corefile::load_kube_dns_dir(dir) {
            Ok(config) => Some(config),
            Err(e) => {
                self.metrics.setup_error(ErrorType::Configmap);
                tracing::error!(dir = %dir.display(), "{e}; keeping the last good Corefile");
                None
            }
        }
    }

    /// Renders and, when the text changed, writes atomically.
    pub fn refresh(&mut self) -> Result<Outcome> {
        // Upstream counts an unreadable template and an unwritable Corefile under `configmap`
        // too: to an operator both are "the DNS config did not take".
        let template = std::fs::read_to_string(&self.base)
            .inspect_err(|_| self.metrics.setup_error(ErrorType::Configmap))
            .with_context(|| format!("reading -basecorefile {}", self.base.display()))?;
        let kube_dns = match self.kube_dns() {
            Some(config) => config,
            None if self.written.is_some() => return Ok(Outcome::Unchanged),
            None => KubeDnsConfig::default(),
        };
        let rendered = corefile::render(&template, &kube_dns, &self.params)
            .with_context(|| format!("rendering {}", self.base.display()))?;
        if self.written.as_deref() == Some(rendered.corefile.as_str()) {
            return Ok(Outcome::Unchanged);
        }
        for note in &rendered.notes {
            tracing::info!("{note}");
        }
        corefile::write_atomic(&self.output, &rendered.corefile)
            .inspect_err(|_| self.metrics.setup_error(ErrorType::Configmap))
            .with_context(|| format!("writing {}", self.output.display()))?;
        tracing::info!(
            path = %self.output.display(),
            stub_domains = kube_dns.stub_domains.len(),
            upstream_nameservers = kube_dns.upstream_nameservers.len(),
            "wrote Corefile"
        );
        self.written = Some(rendered.corefile);
        Ok(Outcome::Written)
    }
}
