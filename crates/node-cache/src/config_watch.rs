//! Watches the directories the Corefile is rendered from (the base template's and the kube-dns
//! ConfigMap's) so a change is rendered in well under a second instead of at the next tick.
//! Kubelet updates a ConfigMap volume by swapping a `..data` symlink inside the mount
//! directory, so watching the directory (not the files) sees every update. In the base
//! template's directory only the template and kubelet's `..` entries count: anything else
//! written there (a log, our own rendered Corefile) must not trigger a render.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Events closer together than this are one change (kubelet's swap is several events).
const SETTLE: Duration = Duration::from_millis(30);

pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
    settled: mpsc::Receiver<()>,
}

/// One input: a directory, and the one file in it that matters (None: all of them, as for
/// the kube-dns ConfigMap whose keys are files).
#[derive(Clone, Debug)]
pub struct Input {
    pub dir: PathBuf,
    pub file: Option<OsString>,
}

impl Input {
    /// Whether a change at `path` can change this input: a file of it, kubelet's `..data`
    /// swap, or the directory itself (or an ancestor) appearing or going.
    fn affected_by(&self, path: &Path) -> bool {
        if self.dir.starts_with(path) {
            return true;
        }
        if path.parent() != Some(self.dir.as_path()) {
            return false;
        }
        let Some(name) = path.file_name() else {
            return false;
        };
        match &self.file {
            None => true,
            Some(file) => name == file.as_os_str() || name.to_string_lossy().starts_with(".."),
        }
    }
}

/// The directory to watch for `path`'s directory: itself if it exists, else the nearest
/// existing ancestor, so a directory created later is still noticed.
fn watchable(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find(|d| d.is_dir()).map(Path::to_path_buf)
}

/// Reads and opens (CoreDNS reading its Corefile, say) change nothing.
fn is_change(event: &notify::Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
}

/// Whether `event` touches one of `inputs`; an event without paths (an overflow) might.
fn affects(inputs: &[Input], event: &notify::Event) -> bool {
    event.paths.is_empty()
        || event
            .paths
            .iter()
            .any(|p| inputs.iter().any(|i| i.affected_by(p)))
}

/// Turns raw events into one message per settled burst. Runs as its own task so a burst is
/// never lost when the event loop is busy elsewhere.
async fn settle(mut raw: mpsc::UnboundedReceiver<()>, settled: mpsc::Sender<()>) {
    while raw.recv().await.is_some() {
        while let Ok(Some(())) = tokio::time::timeout(SETTLE, raw.recv()).await {}
        // A message already waiting covers this burst too.
        if let Err(mpsc::error::TrySendError::Closed(())) = settled.try_send(()) {
            return;
        }
    }
}

impl ConfigWatch {
    pub fn new(inputs: &[Input]) -> Result<Self> {
        let (raw_tx, raw) = mpsc::unbounded_channel();
        // Events carry absolute paths; a relative flag value must compare as one.
        let inputs: Vec<Input> = inputs
            .iter()
            .map(|i| {
                let dir = if i.dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    i.dir.as_path()
                };
                Input {
                    dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
                    file: i.file.clone(),
                }
            })
            .collect();
        let relevant = inputs.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| is_change(&e) && affects(&relevant, &e)) {
                    let _ = raw_tx.send(());
                }
            })
            .context("starting the file watcher")?;
        let mut watched: Vec<PathBuf> = inputs.iter().filter_map(|i| watchable(&i.dir)).collect();
        watched.sort();
        watched.dedup();
        for dir in &watched {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .with_context(|| format!("watching {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "watching for Corefile input changes");
        }
        let (settled_tx, settled) = mpsc::channel(1);
        tokio::spawn(settle(raw, settled_tx));
        Ok(Self {
            _watcher: watcher,
            settled,
        })
    }

    /// Waits until the inputs changed (a settled burst of events). Cancel-safe.
    pub async fn changed(&mut self) {
        if self.settled.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_one_change_and_survives_a_busy_loop() {
        let (raw_tx, raw) = mpsc::unbounded_channel();
        let (settled_tx, mut settled) = mpsc::channel(1);
        tokio::spawn(settle(raw, settled_tx));
        for _ in 0..5 {
            raw_tx.send(()).unwrap();
        }
        // Nobody is waiting on `settled` while the burst settles: the message must still come.
        tokio::time::timeout(Duration::from_secs(5), settled.recv())
            .await
            .expect("one settled change")
            .expect("channel open");
        assert!(
            tokio::time::timeout(SETTLE * 4, settled.recv())
                .await
                .is_err(),
            "one burst, one change"
        );
    }

    #[test]
    fn only_the_template_and_kubelets_swap_count_in_the_templates_directory() {
        let base = Input {
            dir: "/etc/coredns".into(),
            file: Some("Corefile.base".into()),
        };
        let kube_dns = Input {
            dir: "/etc/kube-dns".into(),
            file: None,
        };
        let inputs = [base, kube_dns];
        let hit = |p: &str| {
            let mut e = notify::Event::new(EventKind::Any);
            e.paths.push(p.into());
            affects(&inputs, &e)
        };
        assert!(hit("/etc/coredns/Corefile.base"));
        assert!(hit("/etc/coredns/..data"));
        assert!(hit("/etc/coredns/..2026_11_23_11_00_00.123"));
        assert!(hit("/etc/kube-dns/stubDomains"));
        assert!(hit("/etc"), "a watched directory appearing");
        assert!(!hit("/etc/coredns/node-cache.log"));
        assert!(!hit("/etc/coredns/Corefile"), "our own output");
        assert!(!hit("/etc/coredns/sub/Corefile.base"));
        assert!(
            affects(&inputs, &notify::Event::new(EventKind::Any)),
            "overflow"
        );
    }

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{AccessKind, CreateKind};
        assert!(!is_change(&notify::Event::new(EventKind::Access(
            AccessKind::Any
        ))));
        assert!(is_change(&notify::Event::new(EventKind::Create(
            CreateKind::Any
        ))));
    }
}
