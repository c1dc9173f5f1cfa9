//! SIGTERM and SIGINT, the two ways the kubelet and an operator stop node-cache.

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installed first thing: from then on a SIGTERM always reaches our teardown, and while
    /// teardown runs further SIGTERM/SIGINT are swallowed here instead of killing us.
    pub fn install() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// The name of the next signal.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
