//! A query load from the `load` pod (dnsload, via kubectl exec) for the length of a phase:
//! started before the phase, stopped after it through a file in the pod, then read back.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube_e2e::report::ServerLoad;

use crate::lab::{describe, Lab, KUBERNETES_NAME, KUBE_DNS_IP, LOCAL_IP};

/// Queries per second to each local IP: the README's benchmark load.
pub const RATE: u32 = 200;

pub struct Load {
    child: Child,
    lines: Receiver<String>,
    stop_file: String,
    kubectl: std::path::PathBuf,
    stopped: bool,
}

/// The load's outcome per server.
pub struct LoadResult {
    pub servers: Vec<ServerLoad>,
}

impl LoadResult {
    pub fn of(&self, server: &str) -> ServerLoad {
        self.servers
            .iter()
            .find(|s| s.server == server)
            .cloned()
            .unwrap_or_default()
    }

    pub fn failed(&self) -> u64 {
        self.servers.iter().map(|s| s.failed).sum()
    }

    pub fn sent(&self) -> u64 {
        self.servers.iter().map(|s| s.sent).sum()
    }

    /// Per server: failed/sent, the rate and when the failures were, for the detail line.
    pub fn detail(&self) -> String {
        self.servers
            .iter()
            .map(|s| {
                let mut d = format!("{} {}/{} ({:.0} q/s", s.server, s.failed, s.sent, s.rate());
                if s.failed > 0 {
                    d.push_str(&format!(
                        "; timeouts {} bad replies {} {} send errors {} icmp {}; failed at ms {:?}",
                        s.timeouts,
                        s.bad_replies,
                        s.bad_kinds,
                        s.send_errors,
                        s.icmp_errors,
                        s.failed_at_ms
                    ));
                }
                d.push(')');
                d
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every server got at least the rate asked for (a slow pod would make a 0 meaningless).
    pub fn check_rate(&self) -> Result<()> {
        for s in &self.servers {
            // 5 % slack: the schedule catches up, but the last period may be cut short.
            if s.rate() < RATE as f64 * 0.95 {
                bail!(
                    "the load reached only {:.0} q/s at {} (wanted {RATE})",
                    s.rate(),
                    s.server
                );
            }
        }
        Ok(())
    }

    /// The load ran at its rate and not one query failed `during` what the case did.
    pub fn check_lossless(&self, during: &str) -> Result<()> {
        self.check_rate()?;
        if self.failed() > 0 {
            bail!("queries failed {during}: {}", self.detail());
        }
        Ok(())
    }
}

impl Load {
    /// Starts RATE q/s to both local IPs and returns once dnsload says it is sending.
    pub fn start(lab: &Lab, label: &str) -> Result<Load> {
        Self::start_to(lab, label, &[LOCAL_IP, KUBE_DNS_IP])
    }

    pub fn start_to(lab: &Lab, label: &str, servers: &[&str]) -> Result<Load> {
        let stop_file = format!("/tmp/stop-{label}-{}", std::process::id());
        let rate = RATE.to_string();
        let mut args = vec![
            "-n",
            "e2e",
            "exec",
            "load",
            "--",
            "dnsload",
            "load",
            &rate,
            KUBERNETES_NAME,
            &stop_file,
        ];
        args.extend(servers);
        let mut cmd = lab.kubectl_cmd(&args);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", describe(&cmd)))?;
        let stdout = child.stdout.take().context("dnsload's stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.starts_with("started") => {}
            Ok(l) => {
                let _ = child.kill();
                bail!("dnsload in pod load printed {l:?} instead of starting")
            }
            Err(_) => {
                let _ = child.kill();
                bail!("dnsload in pod load did not start within 20s")
            }
        }
        Ok(Load {
            child,
            lines,
            stop_file,
            kubectl: lab.wrapper_dir().join("kubectl"),
            stopped: false,
        })
    }

    /// Stops the load and reads its summary (after the queries in flight are answered or time
    /// out).
    pub fn stop(mut self, lab: &Lab) -> Result<LoadResult> {
        self.stopped = true;
        lab.exec("load", &["touch", &self.stop_file])?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut servers = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => servers.push(ServerLoad::parse(&l)?),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    bail!("dnsload did not report within 20s of its stop file");
                }
            }
        }
        let status = self.child.wait()?;
        if !status.success() || servers.is_empty() {
            bail!(
                "dnsload in pod load ended with {status} and {} report lines",
                servers.len()
            );
        }
        Ok(LoadResult { servers })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // A load abandoned by an error: stop the pod's dnsload too (killing kubectl exec would
        // leave it sending), then end the local kubectl.
        if !self.stopped {
            let _ = std::process::Command::new(&self.kubectl)
                .args(["-n", "e2e", "exec", "load", "--", "touch", &self.stop_file])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
