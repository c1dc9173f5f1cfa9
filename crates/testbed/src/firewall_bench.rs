//! What each packet-filter backend costs the agent: installing node-cache's rules for two local
//! IPs from empty, checking them when complete (the interval re-check), and an `ensure` that
//! finds nothing to do. Each backend runs in a fresh network namespace of its own.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use netsetup::{node_cache_rules, IptablesBackend, NftBackend, PacketFilter};

use crate::in_fresh_netns;

const LOCAL_IPS: [&str; 2] = ["169.254.20.10", "10.96.0.10"];
const MIN_RUNS: usize = 20;

struct Timings {
    install: Vec<Duration>,
    check: Vec<Duration>,
    ensure: Vec<Duration>,
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let started = Instant::now();
    let value = f()?;
    Ok((started.elapsed(), value))
}

/// `runs` rounds of remove (untimed), install, check, ensure, each verified.
fn measure(filter: &dyn PacketFilter, runs: usize) -> Result<Timings> {
    let ips: Vec<IpAddr> = LOCAL_IPS
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let rules = node_cache_rules(&ips, 53, 8080);
    let mut t = Timings {
        install: Vec::new(),
        check: Vec::new(),
        ensure: Vec::new(),
    };
    let remove = || filter.remove(&rules).map_err(|e| anyhow::anyhow!("{e:?}"));
    for _ in 0..runs {
        remove()?;
        let (took, report) = timed(|| Ok(filter.ensure(&rules)?))?;
        ensure!(
            report.inserted == rules.len(),
            "install inserted {report:?}"
        );
        t.install.push(took);
        let (took, report) = timed(|| Ok(filter.check(&rules)?))?;
        ensure!(
            report.complete() && report.surplus == 0,
            "check found {report:?}"
        );
        t.check.push(took);
        let (took, report) = timed(|| Ok(filter.ensure(&rules)?))?;
        ensure!(
            report.inserted == 0,
            "a complete ensure inserted {report:?}"
        );
        t.ensure.push(took);
    }
    remove()?;
    Ok(t)
}

fn row(out: &mut String, figure: &str, mut values: Vec<Duration>) {
    values.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    out.push_str(&format!(
        "| {figure:<44} | {:>9.2} | {:>9.2} | {:>9.2} | ms  |\n",
        ms(values[values.len() / 2]),
        ms(values[0]),
        ms(values[values.len() - 1]),
    ));
}

/// The cost table: median, min and max over `runs` (at least 20) per figure, for iptables as
/// upstream runs it (the `iptables` on PATH), iptables-legacy, and the nftables backend.
pub fn firewall_costs(runs: usize) -> Result<String> {
    let runs = runs.max(MIN_RUNS);
    type Make = fn() -> Result<Box<dyn PacketFilter>, netsetup::FilterError>;
    let backends: [(&str, Make); 3] = [
        ("iptables", || Ok(Box::new(IptablesBackend::new(false)?))),
        ("iptables-legacy", || {
            Ok(Box::new(IptablesBackend::with_command("iptables-legacy")?))
        }),
        ("nftables", || Ok(Box::new(NftBackend::new()?))),
    ];
    let mut out = format!(
        "packet-filter backends, {runs} runs each, 2 local IPs ({} rules), fresh namespace per backend\n",
        12 * LOCAL_IPS.len()
    );
    out.push_str(&format!(
        "| {:<44} | {:>9} | {:>9} | {:>9} | {:<3} |\n",
        "figure", "median", "min", "max", ""
    ));
    out.push_str(&format!(
        "|{}|{}|{}|{}|{}|\n",
        "-".repeat(46),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(5)
    ));
    for (name, make) in backends {
        let t = in_fresh_netns(move || measure(&*make()?, runs))
            .with_context(|| format!("measuring {name}"))?;
        row(&mut out, &format!("{name}: install from empty"), t.install);
        row(&mut out, &format!("{name}: check, complete"), t.check);
        row(&mut out, &format!("{name}: ensure, complete"), t.ensure);
    }
    Ok(out)
}
