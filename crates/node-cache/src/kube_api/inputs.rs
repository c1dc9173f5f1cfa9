//! The Corefile's inputs as the API delivered them, each weighed against its volume by
//! [`Freshest`]; what [`crate::corefile_sync::CorefileSync`] renders from.

use std::path::Path;
use std::time::Instant;

use corefile::KubeDnsKeys;

use super::freshness::Freshest;
use super::ApiUpdate;

#[derive(Debug)]
pub struct ApiInputs {
    template: Freshest<String>,
    kube_dns: Freshest<KubeDnsKeys>,
    /// The upstream Service's ClusterIP, once the API has told it.
    cluster_dns: Option<String>,
}

impl Default for ApiInputs {
    fn default() -> Self {
        Self {
            template: Freshest::new("the Corefile template"),
            kube_dns: Freshest::new("the kube-dns ConfigMap"),
            cluster_dns: None,
        }
    }
}

impl ApiInputs {
    pub fn apply(&mut self, update: ApiUpdate, now: Instant) {
        match update {
            ApiUpdate::Template(Some(text)) => self.template.delivered(text),
            ApiUpdate::Template(None) => self.template.withdrawn(),
            ApiUpdate::TemplateLost => self.template.lost(now),
            ApiUpdate::KubeDns(keys) => self.kube_dns.delivered(keys),
            ApiUpdate::KubeDnsLost => self.kube_dns.lost(now),
            ApiUpdate::ClusterDns(Some(ip)) => self.cluster_dns = Some(ip),
            // A deleted Service keeps its last address serving until it is recreated.
            ApiUpdate::ClusterDns(None) | ApiUpdate::ServiceLost => {}
        }
    }

    /// The template to render, when the API's is the newer; else None (read the file).
    pub fn template(&mut self, file: &Path) -> Option<String> {
        self.template
            .pick(|| std::fs::read_to_string(file).ok(), Instant::now())
    }

    /// The kube-dns keys to render, when the API's are the newer; else None (read the
    /// directory). Without a directory the volume counts as empty.
    pub fn kube_dns(&mut self, dir: Option<&Path>) -> Option<KubeDnsKeys> {
        let volume = || match dir {
            Some(dir) => corefile::read_kube_dns_keys(dir).ok(),
            None => Some(KubeDnsKeys::default()),
        };
        self.kube_dns.pick(volume, Instant::now())
    }

    pub fn cluster_dns(&self) -> Option<&str> {
        self.cluster_dns.as_deref()
    }
}
