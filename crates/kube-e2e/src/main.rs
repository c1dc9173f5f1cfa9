//! The addon's end-to-end cases in the one-node lab (issue 10: 2a-2h; issue 15: 2i, Helm;
//! issue 16's four lines).
//! Run by `make kube-e2e` (hack/kube-lab/e2e.sh), which brings the lab up, sets KUBE_LAB_* and
//! takes the lab down afterwards. KUBE_E2E_CASES=2a,2f runs only those (setup always runs).
//!
//! Every case prints `PASS <case>: <what was seen>` or `FAIL <case>: <why>` (with the tail of
//! node-cache's log; the full logs go to .cache/kube-lab/e2e-logs/<case>.log). The last line is
//! `kube-e2e: N passed, M failed; surge rollout failed/sent A/B`; the exit status is 1 when any
//! case failed.

mod cases;
mod lab;
mod load;

use std::cell::RefCell;
use std::time::Instant;

use anyhow::Result;

use crate::lab::Lab;

/// What the cases share beyond the lab: figures one case measures and another reports.
pub struct Ctx {
    pub lab: Lab,
    /// (failed, sent) of the three surge rollouts, for the last line.
    pub surge: RefCell<Option<(u64, u64)>>,
    /// 2d's observation, made during 2c's first rollout.
    pub ready_means_serving: RefCell<Option<Result<String>>>,
}

type Case = fn(&Ctx) -> Result<String>;

fn main() {
    let lab = match Lab::from_env() {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("kube-e2e: {e:#}");
            std::process::exit(2);
        }
    };
    let ctx = Ctx {
        lab,
        surge: RefCell::new(None),
        ready_means_serving: RefCell::new(None),
    };
    let only: Option<Vec<String>> = std::env::var("KUBE_E2E_CASES")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(|c| c.trim().to_string()).collect());
    let all: &[(&str, &str, Case)] = &[
        (
            "2b",
            "drop-in (upstream-shaped DaemonSet, image swapped)",
            cases::drop_in,
        ),
        (
            "2a",
            "install.sh, ClusterFirst and link-local pods served by node-cache",
            cases::install_case,
        ),
        ("2c", "surge rollouts under load", cases::surge_rollouts),
        (
            "2d",
            "a new pod is Ready only once its own CoreDNS serves",
            cases::ready_means_serving,
        ),
        ("2e", "ConfigMap changes reach the pods", cases::config_maps),
        ("2f", "CoreDNS and node-cache killed", cases::kills),
        ("2g", "uninstall under load", cases::uninstall_under_load),
        (
            "2c-ha",
            "HA pair updated one DaemonSet at a time under load",
            cases::ha_update,
        ),
        (
            "2i",
            "Helm: install --wait, upgrade under load, uninstall",
            cases::helm_chart,
        ),
        (
            "2h",
            "kube-proxy in nftables mode, -firewall-backend=auto",
            cases::nftables,
        ),
    ];
    let start = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    let mut run = |id: &str, title: &str, case: Case| -> bool {
        let t = Instant::now();
        println!("-- {id} {title}");
        match case(&ctx) {
            Ok(detail) => {
                passed += 1;
                println!("PASS {id} ({:.0?}): {detail}", t.elapsed());
                true
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {id} ({:.0?}): {e:#}", t.elapsed());
                println!("{}", ctx.lab.dump(id));
                false
            }
        }
    };
    if run(
        "setup",
        "test pods, cluster DNS without node-cache",
        cases::setup,
    ) {
        for (id, title, case) in all {
            if only.as_ref().is_none_or(|o| o.iter().any(|c| c == id)) {
                run(id, title, *case);
            }
        }
    }
    let surge = match *ctx.surge.borrow() {
        Some((f, s)) => format!("{f}/{s}"),
        None => "not measured".into(),
    };
    println!("kube-e2e: cases took {:.0?}", start.elapsed());
    println!("kube-e2e: {passed} passed, {failed} failed; surge rollout failed/sent {surge}");
    std::process::exit(if failed > 0 { 1 } else { 0 });
}
