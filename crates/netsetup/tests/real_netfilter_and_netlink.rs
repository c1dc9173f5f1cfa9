//! The backends against the real kernel: each test runs in a fresh network namespace of its
//! own (testbed::in_fresh_netns), with real iptables and real rtnetlink.

use std::net::IpAddr;
use std::process::Command;

use anyhow::{ensure, Result};
use netsetup::{node_cache_rules, Interface, IptablesBackend, PacketFilter, Rule};
use testbed::{in_fresh_netns, run};

const GOLDEN: &str = include_str!("golden/rules-169.254.20.10_10.96.0.10.iptables-save");

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// `raw` then `filter`, keeping only what the compat file holds.
fn saved_rules(save: &str) -> Result<String> {
    let mut out = String::new();
    for table in ["raw", "filter"] {
        for line in run(Command::new(save).args(["-t", table]))?.lines() {
            if line.starts_with('*') || line.starts_with("-A") || line == "COMMIT" {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// The lines of `saved` (`iptables-save` output) that carry one of our comments.
fn ours(saved: &str) -> Vec<&str> {
    saved
        .lines()
        .filter(|l| l.contains("NodeLocal DNS Cache"))
        .collect()
}

/// [`PacketFilter::remove`], its errors as one.
fn remove(backend: &dyn PacketFilter, rules: &[Rule]) -> Result<usize> {
    backend
        .remove(rules)
        .map_err(|errors| anyhow::anyhow!("removing rules: {errors:?}"))
}

/// The rule of `rules` whose text (`-t TABLE CHAIN -p PROTO -d|-s IP ...`) starts with `prefix`.
fn rule_like<'a>(rules: &'a [Rule], prefix: &str) -> &'a Rule {
    rules
        .iter()
        .find(|r| r.to_string().starts_with(prefix))
        .unwrap_or_else(|| panic!("no rule like {prefix:?}"))
}

/// `iptables -t TABLE OP CHAIN <rule>`: a rule put in or taken out by hand, as someone else
/// (another agent, an operator) would.
fn by_hand(op: &str, rule: &Rule) -> Result<String> {
    run(Command::new("iptables")
        .args(["-t", rule.table().as_str(), op, rule.chain().as_str()])
        .args(rule.iptables_args()))
}

#[test]
fn rules_are_byte_identical_to_upstream_and_idempotent() -> Result<()> {
    in_fresh_netns(|| {
        let rules = node_cache_rules(&ips(&["169.254.20.10", "10.96.0.10"]), 53, 8080);
        let backend = IptablesBackend::new(false)?;
        let first = backend.ensure(&rules)?;
        assert_eq!((first.checked, first.inserted), (24, 24));
        assert_eq!(saved_rules("iptables-save")?, GOLDEN);
        let second = backend.ensure(&rules)?;
        assert_eq!(second.inserted, 0, "a second ensure must insert nothing");
        assert_eq!(saved_rules("iptables-save")?, GOLDEN);
        // Someone deletes one rule: only that one comes back (the per-rule path).
        by_hand("-D", &rules[5])?;
        assert_eq!(backend.ensure(&rules)?.inserted, 1);
        assert_eq!(ours(&saved_rules("iptables-save")?).len(), 24);
        Ok(())
    })
}

#[test]
fn teardown_removes_every_copy_and_only_ours() -> Result<()> {
    in_fresh_netns(|| {
        let rules = node_cache_rules(&ips(&["169.254.20.10"]), 53, 8080);
        let backend = IptablesBackend::new(false)?;
        backend.ensure(&rules)?;
        // A second copy, as a crashed agent racing its successor can leave, and a foreign rule.
        by_hand(
            "-I",
            rule_like(&rules, "-t raw PREROUTING -p udp -d 169.254.20.10 "),
        )?;
        run(Command::new("iptables").args([
            "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
        ]))?;
        // Our comment on another agent's IP: not one of our rules, so it must stay (and it
        // sends teardown down the per-rule path after the batch).
        let another_agents = node_cache_rules(&ips(&["10.0.0.99"]), 53, 8080);
        by_hand(
            "-A",
            rule_like(&another_agents, "-t raw OUTPUT -p udp -d 10.0.0.99 "),
        )?;
        assert_eq!(remove(&backend, &rules)?, 13);
        let left = saved_rules("iptables-save")?;
        let ours_left = ours(&left);
        ensure!(
            ours_left.len() == 1 && ours_left[0].contains("10.0.0.99"),
            "left behind:\n{left}"
        );
        ensure!(
            left.contains("--dport 22 -j ACCEPT"),
            "foreign rule removed:\n{left}"
        );
        assert_eq!(remove(&backend, &rules)?, 0);
        Ok(())
    })
}

#[test]
fn ipv6_rules_go_through_ip6tables() -> Result<()> {
    in_fresh_netns(|| {
        let rules = node_cache_rules(&ips(&["fd00::a"]), 53, 8080);
        let backend = IptablesBackend::new(true)?;
        assert_eq!(backend.name(), "ip6tables");
        backend.ensure(&rules)?;
        let saved = saved_rules("ip6tables-save")?;
        let ours6 = ours(&saved);
        assert_eq!(ours6.len(), 12, "{saved}");
        assert!(ours6.iter().all(|l| l.contains("fd00::a/128")), "{saved}");
        assert!(ours(&saved_rules("iptables-save")?).is_empty());
        remove(&backend, &rules)?;
        assert!(ours(&saved_rules("ip6tables-save")?).is_empty());
        Ok(())
    })
}

fn link_addresses(name: &str) -> Result<Option<Vec<String>>> {
    let out = Command::new("ip")
        .args(["-br", "addr", "show", "dev", name])
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip(2)
            // The kernel's own IPv6 link-local address on any link brought up.
            .filter(|a| !a.starts_with("fe80:"))
            .map(str::to_string)
            .collect(),
    ))
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// In a fresh namespace of its own, `nodelocaldns` holding `local_ips`, put in place; then
/// `test` with it.
fn with_interface(
    local_ips: &[&str],
    test: impl AsyncFnOnce(&Interface) -> Result<()> + Send + 'static,
) -> Result<()> {
    let local_ips = ips(local_ips);
    in_fresh_netns(move || {
        block_on(async {
            let iface = Interface::new("nodelocaldns", &local_ips)?;
            iface.ensure().await?;
            test(&iface).await
        })
    })
}

#[test]
fn interface_holds_the_local_ips_and_is_repaired_minimally() -> Result<()> {
    in_fresh_netns(|| {
        block_on(async {
            let iface = Interface::new("nodelocaldns", &ips(&["169.254.20.10", "10.96.0.10"]))?;
            let report = iface.ensure().await?;
            assert!(report.created.is_some());
            assert_eq!(report.addresses_added.len(), 2);
            assert_eq!(
                link_addresses("nodelocaldns")?,
                Some(vec!["169.254.20.10/32".into(), "10.96.0.10/32".into()])
            );
            // The local route is what makes the kernel deliver to us.
            let route = run(Command::new("ip").args(["route", "get", "10.96.0.10"]))?;
            assert!(route.starts_with("local 10.96.0.10"), "{route}");

            // Someone removes one address and adds one of theirs: only ours comes back.
            run(Command::new("ip").args(["addr", "del", "10.96.0.10/32", "dev", "nodelocaldns"]))?;
            run(Command::new("ip").args(["addr", "add", "192.0.2.9/32", "dev", "nodelocaldns"]))?;
            assert!(!iface.is_complete().await?);
            let repair = iface.ensure().await?;
            assert_eq!(repair.created, None);
            assert_eq!(repair.addresses_added, ips(&["10.96.0.10"]));
            assert!(iface.is_complete().await?);
            assert_eq!(
                iface.ensure().await?,
                Default::default(),
                "nothing left to do"
            );

            assert!(iface.remove().await?);
            assert_eq!(link_addresses("nodelocaldns")?, None);
            assert!(
                !iface.remove().await?,
                "removing an absent link is not an error"
            );
            Ok(())
        })
    })
}

#[test]
fn ipv6_addresses_are_usable_at_once() -> Result<()> {
    with_interface(&["fd00::a"], async |_| {
        let addrs = run(Command::new("ip").args(["-6", "addr", "show", "dev", "nodelocaldns"]))?;
        assert!(addrs.contains("fd00::a/128"), "{addrs}");
        assert!(!addrs.contains("tentative"), "DAD must be off: {addrs}");
        // Binding proves the address is usable right now.
        std::net::UdpSocket::bind("[fd00::a]:0")?;
        Ok(())
    })
}

#[test]
fn link_and_address_removals_arrive_as_events() -> Result<()> {
    with_interface(&["169.254.20.10"], async |_| {
        let mut events = netsetup::NetworkEvents::subscribe()?;
        let within = std::time::Duration::from_secs(5);
        run(Command::new("ip").args(["addr", "del", "169.254.20.10/32", "dev", "nodelocaldns"]))?;
        let event = tokio::time::timeout(within, events.next()).await?;
        assert_eq!(event, Some(netsetup::NetworkEvent::AddressRemoved));
        run(Command::new("ip").args(["link", "del", "nodelocaldns"]))?;
        let event = tokio::time::timeout(within, events.next()).await?;
        assert_eq!(event, Some(netsetup::NetworkEvent::Link));
        Ok(())
    })
}

/// A held xtables lock (legacy iptables takes `/run/xtables.lock`) is an `iptables_lock` error
/// after the bounded wait, not a hang; the rules go in once it is released.
#[test]
fn a_held_xtables_lock_is_a_bounded_lock_error() -> Result<()> {
    in_fresh_netns(|| {
        let rules = node_cache_rules(&ips(&["169.254.20.10"]), 53, 8080);
        let backend = IptablesBackend::with_command("iptables-legacy")?;
        // Held by this test as another iptables user would hold it; released on drop.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/xtables.lock")?;
        let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| anyhow::anyhow!("taking the xtables lock: {e}"))?;
        let started = std::time::Instant::now();
        let outcome = backend.ensure(&rules);
        let took = started.elapsed();
        drop(held);
        let err = outcome.expect_err("the lock is held");
        assert!(matches!(err, netsetup::FilterError::Lock { .. }), "{err}");
        assert!(
            took < std::time::Duration::from_secs(20),
            "bounded wait, took {took:?}"
        );
        eprintln!(
            "figure: held xtables lock -> error after {} ms",
            took.as_millis()
        );
        assert_eq!(
            backend.ensure(&rules)?.inserted,
            12,
            "after release the rules go in"
        );
        let saved = run(&mut Command::new("iptables-legacy-save"))?;
        assert_eq!(ours(&saved).len(), 12);
        remove(&backend, &rules)?;
        Ok(())
    })
}
