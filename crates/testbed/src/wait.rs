//! Waiting on a condition with a deadline, never on a fixed sleep.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Re-evaluates `check` every few milliseconds until it returns `Ok(true)`; fails with `what`
/// and the last error once `deadline` has passed. Returns the time it took.
pub fn wait_until(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let last = match check() {
            Ok(true) => return Ok(started.elapsed()),
            Ok(false) => "condition false".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if started.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
