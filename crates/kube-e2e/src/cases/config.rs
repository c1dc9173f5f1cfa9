//! 2e: ConfigMap changes (kube-dns stubDomains, node-local-dns Corefile) reach the pods; the
//! time from `kubectl apply` to the first pod answer that shows the change.

use std::process::Stdio;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use super::{SEL, STUB_ANSWER, STUB_IP};
use crate::lab::{Lab, KUBE_DNS_IP, LOCAL_IP, SYSTEM};
use crate::Ctx;

/// Runs dnsload's `until` in client-local, applies `change`, and returns the seconds from the
/// apply to the first answer that shows it.
fn time_to_answer(lab: &Lab, zone: &str, change: impl FnOnce() -> Result<()>) -> Result<f64> {
    let mut cmd = lab.kubectl_cmd(&[
        "-n",
        "e2e",
        "exec",
        "client-local",
        "--",
        "dnsload",
        "until",
        LOCAL_IP,
        zone,
        STUB_ANSWER,
        "150",
    ]);
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let applied = std::time::SystemTime::now();
    change()?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "no answer under {zone} from {STUB_IP} through {LOCAL_IP}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let at: u64 = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("answered_at_ms="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("dnsload until printed {text:?}"))?;
    let applied_ms = applied.duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    Ok(at.saturating_sub(applied_ms) as f64 / 1000.0)
}

/// 2e: kubectl apply of the kube-dns ConfigMap (stubDomains) and of the node-local-dns
/// ConfigMap; the time from each apply to the first pod answer showing it.
pub fn config_maps(ctx: &Ctx) -> Result<String> {
    let lab = &ctx.lab;
    lab.only_pod(SEL).context("2e needs the addon installed")?;
    let stub = time_to_answer(lab, "stub.test", || {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-dns\n  namespace: kube-system\ndata:\n  stubDomains: |\n    {{\"stub.test\": [\"{STUB_IP}\"]}}\n"
        );
        lab.kubectl_stdin(&["apply", "-f", "-"], &cm).map(|_| ())
    })?;
    println!("kube-dns ConfigMap (stubDomains stub.test) applied: first answer through {LOCAL_IP} after {stub:.1}s");
    let block = format!(
        "nlcm.test:53 {{\n    errors\n    bind {LOCAL_IP} {KUBE_DNS_IP}\n    forward . {STUB_IP}\n}}\n"
    );
    let cm = lab.json(&["-n", SYSTEM, "get", "configmap", "node-local-dns"])?;
    let corefile = cm["data"]["Corefile"]
        .as_str()
        .context("node-local-dns ConfigMap has no Corefile")?;
    let mut changed = cm.clone();
    changed["data"]["Corefile"] = Value::String(format!("{corefile}{block}"));
    for key in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
    ] {
        if let Some(m) = changed["metadata"].as_object_mut() {
            m.remove(key);
        }
    }
    let nlcm = time_to_answer(lab, "nlcm.test", || {
        lab.kubectl_stdin(&["apply", "-f", "-"], &changed.to_string())
            .map(|_| ())
    })?;
    println!("node-local-dns ConfigMap (a nlcm.test block) applied: first answer through {LOCAL_IP} after {nlcm:.1}s");
    // The manifest grants the API mode; without it the path is kubelet's volume sync (12-14 s
    // here, up to a minute or more with kubelet's defaults).
    let log = lab.kubectl(&["-n", SYSTEM, "logs", "daemonset/node-local-dns"])?;
    let path = if log.contains("through the Kubernetes API") {
        "through the Kubernetes API"
    } else {
        "through kubelet's volume"
    };
    Ok(format!("kube-dns ConfigMap -> answer {stub:.1}s; node-local-dns ConfigMap -> answer {nlcm:.1}s ({path}; from kubectl's start to the pod's answer)"))
}
