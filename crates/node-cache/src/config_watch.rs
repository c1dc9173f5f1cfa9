//! Watches the directories the Corefile is rendered from (the base template's and the kube-dns
//! ConfigMap's) so a change is rendered in well under a second instead of at the next tick.
//! Kubelet updates a ConfigMap volume by swapping a `..data` symlink inside the mount
//! directory, so watching the directory (not the files) sees every update.

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

/// The directory to watch for `path`'s directory: itself if it exists, else the nearest
/// existing ancestor, so a directory created later is still noticed.
fn watchable(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find(|d| d.is_dir()).map(Path::to_path_buf)
}

/// Reads and opens (CoreDNS reading its Corefile, say) change nothing.
fn is_change(event: &notify::Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
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
    pub fn new(dirs: &[PathBuf]) -> Result<Self> {
        let (raw_tx, raw) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| is_change(&e)) {
                    let _ = raw_tx.send(());
                }
            })
            .context("starting the file watcher")?;
        let mut watched: Vec<PathBuf> = dirs.iter().filter_map(|d| watchable(d)).collect();
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
