//! CoreDNS's output, passed through to ours line by line, and read for the one thing it
//! tells nowhere else: whether a SIGUSR1 reload took. CoreDNS keeps serving the old Corefile
//! when the new one is bad and only logs it; there is no exit code or endpoint to ask, so these
//! log lines (CoreDNS 1.14: `[INFO] Reloading complete`, `[ERROR] Restart failed: <why>`) are
//! the only source.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Ok,
    /// CoreDNS's own message: the Corefile line and the reason.
    Failed(String),
}

/// What a CoreDNS log line says about a reload, if anything.
pub fn reload_outcome(line: &str) -> Option<ReloadOutcome> {
    const FAILED: &str = "[ERROR] Restart failed: ";
    if line.contains("[INFO] Reloading complete") {
        return Some(ReloadOutcome::Ok);
    }
    line.find(FAILED)
        .map(|at| ReloadOutcome::Failed(line[at + FAILED.len()..].trim().to_string()))
}

/// Copies `from` to `to` line by line, reporting reload outcomes on `outcomes`.
pub async fn pass_through(
    from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    outcomes: UnboundedSender<ReloadOutcome>,
) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(outcome) = reload_outcome(&line) {
            let _ = outcomes.send(outcome);
        }
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        if to.write_all(&bytes).await.is_err() {
            break;
        }
        let _ = to.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_lines_of_coredns_1_14() {
        assert_eq!(
            reload_outcome("[INFO] Reloading complete"),
            Some(ReloadOutcome::Ok)
        );
        assert_eq!(
            reload_outcome("[ERROR] Restart failed: /etc/Corefile:3 - Error during parsing: Unknown directive 'x'"),
            Some(ReloadOutcome::Failed(
                "/etc/Corefile:3 - Error during parsing: Unknown directive 'x'".into()
            ))
        );
        assert_eq!(reload_outcome("[INFO] SIGUSR1: Reloading"), None);
        assert_eq!(reload_outcome("[INFO] Reloading"), None);
    }

    #[tokio::test]
    async fn lines_pass_through_unchanged_and_outcomes_are_reported() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let input: &[u8] = b"a\n[INFO] Reloading complete\nb";
        let mut out = Vec::new();
        pass_through(input, &mut out, tx).await;
        assert_eq!(out, b"a\n[INFO] Reloading complete\nb\n");
        assert_eq!(rx.recv().await, Some(ReloadOutcome::Ok));
    }
}
