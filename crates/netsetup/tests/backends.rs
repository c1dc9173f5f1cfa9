//! The nftables backend, the dual-stack iptables filter and auto-detection against the real
//! kernel; each test in a fresh network namespace of its own (testbed::in_fresh_netns), checked
//! from outside with `nft -j`, `iptables-save` and kernel counters.

use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use netsetup::backend_select::{select, BackendChoice};
use netsetup::{node_cache_rules, CheckReport, IptablesBackend, NftBackend, PacketFilter};
use serde_json::Value;
use testbed::{in_fresh_netns, run, wait_until};

const GOLDEN: &str = include_str!("golden/inet-node-local-dns.nft");

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn nft_json(args: &[&str]) -> Result<Vec<Value>> {
    let out = run(Command::new("nft").arg("-j").args(args))?;
    let v: Value = serde_json::from_str(&out)?;
    Ok(v["nftables"].as_array().context("nftables array")?.clone())
}

/// (family, name) of every table in the namespace.
fn tables() -> Result<Vec<(String, String)>> {
    Ok(nft_json(&["list", "ruleset"])?
        .iter()
        .filter_map(|i| {
            let t = i.get("table")?;
            Some((t["family"].as_str()?.into(), t["name"].as_str()?.into()))
        })
        .collect())
}

/// `nft -f -` with `text` on stdin.
fn nft_file(text: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(text.as_bytes())?;
    ensure!(child.wait()?.success(), "nft -f - failed on:\n{text}");
    Ok(())
}

fn our_table_text() -> Result<String> {
    run(Command::new("nft").args(["list", "table", "inet", "node-local-dns"]))
}

fn err_list(e: Vec<netsetup::FilterError>) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

/// Lines carrying our comments in `save`'s output.
fn ours_in(save: &str) -> Result<Vec<String>> {
    Ok(run(&mut Command::new(save))?
        .lines()
        .filter(|l| l.contains("NodeLocal DNS Cache"))
        .map(str::to_string)
        .collect())
}

#[test]
fn nft_backend_installs_checks_repairs_and_removes_its_table() -> Result<()> {
    in_fresh_netns(|| {
        let rules = node_cache_rules(&ips(&["169.254.20.10", "10.96.0.10", "fd00::10"]), 53, 8080);
        let nft = NftBackend::new()?;
        assert_eq!(nft.name(), "nft");
        let empty = nft.check(&rules)?;
        assert_eq!((empty.present, empty.missing), (0, 36));

        let first = nft.ensure(&rules)?;
        assert_eq!((first.checked, first.inserted), (36, 36));
        assert_eq!(tables()?, [("inet".into(), "node-local-dns".into())]);
        assert_eq!(our_table_text()?, GOLDEN);
        let rule_count = nft_json(&["list", "ruleset"])?
            .iter()
            .filter(|i| i.get("rule").is_some())
            .count();
        assert_eq!(rule_count, 36);
        assert_eq!(
            nft.check(&rules)?,
            CheckReport {
                present: 36,
                missing: 0,
                surplus: 0
            }
        );
        assert_eq!(nft.ensure(&rules)?.inserted, 0, "complete: nothing to do");

        // Someone deletes one rule: check sees it, ensure puts it back.
        let handle = nft_json(&["list", "chain", "inet", "node-local-dns", "raw-output"])?
            .iter()
            .find_map(|i| i.get("rule")?["handle"].as_u64())
            .context("a rule in raw-output")?;
        run(Command::new("nft").args([
            "delete",
            "rule",
            "inet",
            "node-local-dns",
            "raw-output",
            "handle",
            &handle.to_string(),
        ]))?;
        assert_eq!(nft.check(&rules)?.missing, 1);
        assert_eq!(nft.ensure(&rules)?.inserted, 1);
        assert_eq!(our_table_text()?, GOLDEN);

        // A flushed chain.
        run(Command::new("nft").args([
            "flush",
            "chain",
            "inet",
            "node-local-dns",
            "filter-input",
        ]))?;
        assert_eq!(nft.check(&rules)?.missing, 6);
        assert_eq!(nft.ensure(&rules)?.inserted, 6);
        assert_eq!(our_table_text()?, GOLDEN);

        // Something foreign in our table goes at the next ensure; nothing is missing meanwhile.
        run(Command::new("nft").args([
            "add",
            "rule",
            "inet",
            "node-local-dns",
            "filter-input",
            "tcp",
            "dport",
            "22",
            "accept",
        ]))?;
        let report = nft.check(&rules)?;
        assert!(report.complete() && report.surplus == 1, "{report:?}");
        assert_eq!(nft.ensure(&rules)?.inserted, 0);
        assert_eq!(our_table_text()?, GOLDEN);

        assert_eq!(nft.remove(&rules).map_err(err_list)?, 36);
        assert!(tables()?.is_empty(), "left behind: {:?}", tables()?);
        assert_eq!(
            nft.remove(&rules).map_err(err_list)?,
            0,
            "absent: nothing to do"
        );
        assert_eq!(nft.check(&rules)?.missing, 36);
        Ok(())
    })
}

/// With our table in place a UDP query to the local IP is untracked, both leaving (output) and
/// arriving (prerouting); without it, conntrack sees a new flow at both hooks.at both hooks. Counted by a table of the
/// test's own at priority -150, after raw, so it sees the verdict of our notrack.
#[test]
fn nft_backend_skips_conntrack_for_dns_to_the_local_ip() -> Result<()> {
    /// (untracked, new) as the probe table counted them.
    fn counts() -> Result<(u64, u64)> {
        let mut counts = (0, 0);
        for item in nft_json(&["list", "table", "ip", "probe"])? {
            let Some(rule) = item.get("rule") else {
                continue;
            };
            let expr = rule["expr"].as_array().context("expr")?;
            let packets = expr
                .iter()
                .find_map(|e| e.get("counter")?["packets"].as_u64())
                .context("counter")?;
            match rule["comment"].as_str() {
                Some("untracked") => counts.0 += packets,
                Some("new") => counts.1 += packets,
                _ => {}
            }
        }
        Ok(counts)
    }
    /// Sends one datagram and waits until the counters reach `want` (the receiving side of
    /// loopback may run after `send_to` returns); fails naming what they showed.
    fn send_and_expect(want: (u64, u64), what: &str) -> Result<()> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.send_to(b"not really dns", "169.254.20.10:53")?;
        let mut seen = (0, 0);
        wait_until(what, Duration::from_secs(2), || {
            seen = counts()?;
            Ok(seen == want)
        })
        .with_context(|| format!("(untracked, new) = {seen:?}, want {want:?}"))?;
        Ok(())
    }
    in_fresh_netns(|| {
        run(Command::new("ip").args(["addr", "add", "169.254.20.10/32", "dev", "lo"]))?;
        let probe = "table ip probe {
            chain out { type filter hook output priority -150;
                ip daddr 169.254.20.10 udp dport 53 ct state untracked counter comment \"untracked\"
                ip daddr 169.254.20.10 udp dport 53 ct state new counter comment \"new\"
            }
            chain pre { type filter hook prerouting priority -150;
                ip daddr 169.254.20.10 udp dport 53 ct state untracked counter comment \"untracked\"
                ip daddr 169.254.20.10 udp dport 53 ct state new counter comment \"new\"
            }
        }";
        nft_file(probe)?;
        send_and_expect((0, 2), "a new flow, without our table")?;
        let rules = node_cache_rules(&ips(&["169.254.20.10"]), 53, 8080);
        NftBackend::new()?.ensure(&rules)?;
        // Counters add up: one more packet, seen untracked on the way out and on the way in.
        send_and_expect((2, 2), "an untracked packet, with our table")?;
        Ok(())
    })
}

#[test]
fn dual_stack_puts_each_family_in_its_own_tool_and_removes_both() -> Result<()> {
    in_fresh_netns(|| {
        let rules = node_cache_rules(&ips(&["169.254.20.10", "fd00::10"]), 53, 8080);
        let selected = select(
            BackendChoice::Iptables,
            &ips(&["169.254.20.10", "fd00::10"]),
        )?;
        let filter = selected.filter;
        assert_eq!(filter.name(), "iptables+ip6tables", "{}", selected.reason);
        assert_eq!(filter.ensure(&rules)?.inserted, 24);
        let v4 = ours_in("iptables-save")?;
        let v6 = ours_in("ip6tables-save")?;
        assert_eq!(v4.len(), 12, "{v4:?}");
        assert!(v4.iter().all(|l| l.contains("169.254.20.10/32")), "{v4:?}");
        assert_eq!(v6.len(), 12, "{v6:?}");
        assert!(v6.iter().all(|l| l.contains("fd00::10/128")), "{v6:?}");
        assert_eq!(
            filter.check(&rules)?,
            CheckReport {
                present: 24,
                missing: 0,
                surplus: 0
            }
        );
        assert_eq!(filter.ensure(&rules)?.inserted, 0);
        assert_eq!(filter.remove(&rules).map_err(err_list)?, 24);
        assert!(ours_in("iptables-save")?.is_empty());
        assert!(ours_in("ip6tables-save")?.is_empty());
        Ok(())
    })
}

/// One family keeps today's path: the plain backend, the other family's tool never run (its
/// tables are created lazily, so an untouched family has none).
#[test]
fn a_single_family_touches_only_its_own_tool() -> Result<()> {
    in_fresh_netns(|| {
        let v4 = ips(&["169.254.20.10"]);
        let selected = select(BackendChoice::Iptables, &v4)?;
        assert_eq!(selected.filter.name(), "iptables");
        selected.filter.ensure(&node_cache_rules(&v4, 53, 8080))?;
        let families: Vec<String> = tables()?.into_iter().map(|(f, _)| f).collect();
        ensure!(
            !families.is_empty() && families.iter().all(|f| f == "ip"),
            "{families:?}"
        );
        // The very rules today's backend writes: it finds every one, no copy.
        let today = IptablesBackend::new(false)?.check(&node_cache_rules(&v4, 53, 8080))?;
        assert_eq!((today.present, today.surplus), (12, 0));
        let v6 = ips(&["fd00::10"]);
        let selected = select(BackendChoice::Iptables, &v6)?;
        assert_eq!(selected.filter.name(), "ip6tables");
        Ok(())
    })
}

#[test]
fn auto_follows_kubelets_legacy_chains() -> Result<()> {
    in_fresh_netns(|| {
        run(Command::new("iptables-legacy").args(["-t", "mangle", "-N", "KUBE-IPTABLES-HINT"]))?;
        let v4 = ips(&["169.254.20.10"]);
        let selected = select(BackendChoice::Auto, &v4)?;
        assert_eq!(
            selected.filter.name(),
            "iptables-legacy",
            "{}",
            selected.reason
        );
        assert!(
            selected.reason.contains("iptables-legacy"),
            "{}",
            selected.reason
        );
        let rules = node_cache_rules(&v4, 53, 8080);
        selected.filter.ensure(&rules)?;
        assert_eq!(ours_in("iptables-legacy-save")?.len(), 12);
        assert!(ours_in("iptables-nft-save")?.is_empty());
        // Our rules are now a fact auto sees too: it keeps choosing legacy.
        assert_eq!(
            select(BackendChoice::Auto, &v4)?.filter.name(),
            "iptables-legacy"
        );
        selected.filter.remove(&rules).map_err(err_list)?;
        Ok(())
    })
}

#[test]
fn auto_follows_kubelets_nft_chains() -> Result<()> {
    in_fresh_netns(|| {
        run(Command::new("iptables-nft").args(["-t", "mangle", "-N", "KUBE-KUBELET-CANARY"]))?;
        // A rule, as a CNI plugin would have: iptables stays in use beside the chains.
        run(Command::new("iptables-nft")
            .args(["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]))?;
        let both = ips(&["169.254.20.10", "fd00::10"]);
        let selected = select(BackendChoice::Auto, &both)?;
        assert_eq!(
            selected.filter.name(),
            "iptables-nft+ip6tables-nft",
            "{}",
            selected.reason
        );
        let rules = node_cache_rules(&both, 53, 8080);
        selected.filter.ensure(&rules)?;
        assert_eq!(ours_in("iptables-nft-save")?.len(), 12);
        assert_eq!(ours_in("ip6tables-nft-save")?.len(), 12);
        assert!(ours_in("iptables-legacy-save")?.is_empty());
        Ok(())
    })
}

#[test]
fn auto_picks_nftables_beside_kube_proxy_in_nftables_mode() -> Result<()> {
    in_fresh_netns(|| {
        run(Command::new("nft").args(["add", "table", "ip", "kube-proxy"]))?;
        run(Command::new("iptables-nft").args(["-t", "mangle", "-N", "KUBE-IPTABLES-HINT"]))?;
        let selected = select(BackendChoice::Auto, &ips(&["169.254.20.10"]))?;
        assert_eq!(selected.filter.name(), "nft", "{}", selected.reason);
        assert!(
            selected.reason.contains("kube-proxy"),
            "{}",
            selected.reason
        );
        Ok(())
    })
}

#[test]
fn auto_refuses_our_rules_in_two_places() -> Result<()> {
    in_fresh_netns(|| {
        let v4 = ips(&["169.254.20.10"]);
        let rules = node_cache_rules(&v4, 53, 8080);
        IptablesBackend::with_command("iptables-legacy")?.ensure(&rules)?;
        IptablesBackend::with_command("iptables-nft")?.ensure(&rules)?;
        let err = select(BackendChoice::Auto, &v4)
            .err()
            .context("a mixed node must be refused")?;
        assert!(matches!(err, netsetup::SelectError::Conflict(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("both iptables-legacy and iptables-nft"),
            "{msg}"
        );
        // Nothing was added anywhere by looking.
        assert_eq!(ours_in("iptables-legacy-save")?.len(), 12);
        assert_eq!(ours_in("iptables-nft-save")?.len(), 12);
        Ok(())
    })
}
