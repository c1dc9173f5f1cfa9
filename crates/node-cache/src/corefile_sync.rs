//! Keeps the rendered Corefile in step with its inputs: the base template, the kube-dns
//! ConfigMap directory and the flags. A render that fails keeps the last good file in place,
//! and so does a template naming a plugin the CoreDNS binary lacks.

use std::path::PathBuf;

use anyhow::{Context, Result};
use corefile::{KubeDnsConfig, PluginSet, RenderParams};

use crate::flags::Config;
use crate::kube_api::{ApiInputs, ApiUpdate, Events, Reason};
use crate::metrics::{ErrorType, Metrics};

pub struct CorefileSync {
    base: PathBuf,
    kube_dns_dir: Option<PathBuf>,
    output: PathBuf,
    params: RenderParams,
    /// What we last wrote, so an unchanged render neither rewrites nor reloads.
    written: Option<String>,
    plugins: Plugins,
    metrics: Metrics,
    /// The inputs as the Kubernetes API delivered them, when it is the newer source.
    api: ApiInputs,
    /// Where an unusable ConfigMap is reported (the pod's Events), and the last reported, so
    /// the periodic re-check of one bad input is not reported again.
    events: Events,
    refused: Option<String>,
}

/// The plugins of the CoreDNS binary, asked once (`coredns -plugins`) at the first render: the
/// binary does not change while we run.
enum Plugins {
    Unread(PathBuf),
    Known(PluginSet),
    /// The binary could not list them: templates go unchecked, and CoreDNS reports what it
    /// cannot load (starting it will fail anyway if the binary cannot even run).
    Unavailable,
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
                prometheus_listen_address: config.prometheus_listen_address.clone(),
            },
            written: None,
            plugins: Plugins::Unread(config.coredns_binary.clone()),
            metrics,
            api: ApiInputs::default(),
            events: Events::default(),
            refused: None,
        }
    }

    /// Unusable ConfigMaps are reported to `events` from now on.
    pub fn report_to(&mut self, events: Events) {
        self.events = events;
    }

    /// An unusable ConfigMap: counted under `configmap` every time, reported as an Event once
    /// per change of what is wrong.
    fn refuse(&mut self, why: String) {
        self.metrics.setup_error(ErrorType::Configmap);
        if self.refused.as_ref() != Some(&why) {
            self.events.report(Reason::InvalidConfigMap, why.clone());
            self.refused = Some(why);
        }
    }

    /// Like [`Self::new`], with the plugin set given rather than asked of the binary.
    #[cfg(test)]
    fn with_plugins(config: &Config, plugins: PluginSet, metrics: Metrics) -> Self {
        Self {
            plugins: Plugins::Known(plugins),
            ..Self::new(config, Some("10.96.0.10".into()), metrics)
        }
    }

    pub fn output(&self) -> &std::path::Path {
        &self.output
    }

    /// A kube-dns config that fails validation is counted and logged; we then render without
    /// it rather than serve nothing, unless a good Corefile was already written.
    fn kube_dns(&mut self) -> Option<KubeDnsConfig> {
        if let Some(keys) = self.api.kube_dns(self.kube_dns_dir.as_deref()) {
            let parsed = keys.parse();
            return match parsed {
                Ok(config) => Some(config),
                Err(e) => {
                    tracing::error!(
                        "kube-dns ConfigMap (API): {e}; keeping the last good Corefile"
                    );
                    self.refuse(format!(
                        "kube-dns ConfigMap: {e}; keeping the last good Corefile"
                    ));
                    None
                }
            };
        }
        let Some(dir) = &self.kube_dns_dir else {
            return Some(KubeDnsConfig::default());
        };
        match corefile::load_kube_dns_dir(dir) {
            Ok(config) => Some(config),
            Err(e) => {
                tracing::error!(dir = %dir.display(), "{e}; keeping the last good Corefile");
                self.refuse(format!(
                    "kube-dns ConfigMap: {e}; keeping the last good Corefile"
                ));
                None
            }
        }
    }

    /// A template naming a plugin this CoreDNS lacks would stop CoreDNS from starting, or from
    /// taking any later change: refused here, with the template's line, so the last good
    /// Corefile keeps serving. Counted under `configmap`, as any other unusable DNS config.
    fn check_plugins(&mut self, template: &str) -> Result<()> {
        if let Plugins::Unread(binary) = &self.plugins {
            self.plugins = match coredns_child::version::coredns_plugins(binary) {
                Ok(set) => Plugins::Known(set),
                Err(e) => {
                    tracing::warn!("{e}; templates are not checked for plugins CoreDNS lacks");
                    Plugins::Unavailable
                }
            };
        }
        let Plugins::Known(available) = &self.plugins else {
            return Ok(());
        };
        let checked = corefile::check_plugins(template, available)
            .with_context(|| format!("-basecorefile {}", self.base.display()));
        if let Err(e) = &checked {
            self.refuse(format!(
                "node-local-dns ConfigMap: {e:#}; keeping the last good Corefile"
            ));
        }
        checked
    }

    /// What the Kubernetes API reported; [`Self::refresh`] renders it.
    pub fn apply_api(&mut self, updates: Vec<ApiUpdate>) {
        for update in updates {
            self.api.apply(update, std::time::Instant::now());
        }
        if let Some(ip) = self.api.cluster_dns() {
            self.params.cluster_dns = Some(ip.to_owned());
        }
    }

    /// Renders and, when the text changed, writes atomically.
    pub fn refresh(&mut self) -> Result<Outcome> {
        // Upstream counts an unreadable template and an unwritable Corefile under `configmap`
        // too: to an operator both are "the DNS config did not take".
        let template = match self.api.template(&self.base) {
            Some(template) => template,
            None => std::fs::read_to_string(&self.base)
                .inspect_err(|_| self.metrics.setup_error(ErrorType::Configmap))
                .with_context(|| format!("reading -basecorefile {}", self.base.display()))?,
        };
        self.check_plugins(&template)?;
        let kube_dns = match self.kube_dns() {
            Some(config) => {
                self.refused = None;
                config
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    const CONFIGMAP_ERRORS: &str = r#"coredns_nodecache_setup_errors_total{errortype="configmap"}"#;

    fn config(dir: &std::path::Path) -> Config {
        let args = [
            "-localip",
            "169.254.20.10",
            "-basecorefile",
            &dir.join("Corefile.base").display().to_string(),
            "-corefile",
            &dir.join("Corefile").display().to_string(),
        ]
        .map(OsString::from);
        crate::flags::parse(args).expect("flags")
    }

    fn configmap_errors(metrics: &Metrics) -> String {
        metrics
            .encode()
            .lines()
            .find(|l| l.starts_with(CONFIGMAP_ERRORS))
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn unknown_plugin_is_refused_with_its_line_and_the_last_good_corefile_stays() {
        let dir = testbed::TempDir::new("corefile-sync-plugins").unwrap();
        let config = config(dir.path());
        let metrics = Metrics::new();
        let plugins = PluginSet::from_listing("errors\nbind\nforward\n");
        let mut sync = CorefileSync::with_plugins(&config, plugins, metrics.clone());

        std::fs::write(
            &config.base_corefile,
            ".:53 {\n    errors\n    kubernetes cluster.local\n}\n",
        )
        .unwrap();
        let e = format!("{:#}", sync.refresh().unwrap_err());
        assert_eq!(
            e,
            format!(
                "-basecorefile {}: line 3: plugin \"kubernetes\" is not in this CoreDNS build \
                 (see -plugins): \"kubernetes cluster.local\"",
                config.base_corefile.display()
            )
        );
        assert!(
            !config.corefile.exists(),
            "nothing written before a good template"
        );
        assert_eq!(configmap_errors(&metrics), format!("{CONFIGMAP_ERRORS} 1"));

        let good = ".:53 {\n    errors\n    forward . __PILLAR__CLUSTER__DNS__\n}\n";
        std::fs::write(&config.base_corefile, good).unwrap();
        assert_eq!(sync.refresh().unwrap(), Outcome::Written);
        let served = std::fs::read_to_string(&config.corefile).unwrap();

        std::fs::write(&config.base_corefile, ".:53 {\n    errors\n    etcd\n}\n").unwrap();
        let e = format!("{:#}", sync.refresh().unwrap_err());
        assert!(e.contains("line 3: plugin \"etcd\""), "{e}");
        assert_eq!(std::fs::read_to_string(&config.corefile).unwrap(), served);
        assert_eq!(configmap_errors(&metrics), format!("{CONFIGMAP_ERRORS} 2"));
    }
}
