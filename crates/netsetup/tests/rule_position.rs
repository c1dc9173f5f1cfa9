//! Our rules stay first: a foreign rule inserted above ours (real iptables, in a fresh network
//! namespace of the test's own) is seen by `displaced`, and `put_first` moves ours back in
//! front, byte-identical to upstream's, leaving the foreign rule in place below them.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use netsetup::{node_cache_rules, IptablesBackend, PacketFilter};
use testbed::{in_fresh_netns, run};

const GOLDEN: &str = include_str!("golden/rules-169.254.20.10_10.96.0.10.iptables-save");

/// The `-A` lines of `table`, in evaluation order.
fn chain_lines(table: &str) -> Result<Vec<String>> {
    Ok(run(Command::new("iptables-save").args(["-t", table]))?
        .lines()
        .filter(|l| l.starts_with("-A"))
        .map(str::to_string)
        .collect())
}

fn iptables(args: &[&str]) -> Result<String> {
    run(Command::new("iptables").args(args))
}

#[test]
fn a_foreign_rule_above_ours_is_seen_and_ours_go_back_in_front() -> Result<()> {
    in_fresh_netns(|| {
        let ips: Vec<IpAddr> = vec!["169.254.20.10".parse()?, "10.96.0.10".parse()?];
        let rules = node_cache_rules(&ips, 53, 8080);
        let backend = IptablesBackend::new(false)?;
        backend.ensure(&rules)?;
        assert!(!backend.displaced(&rules)?, "fresh rules are first");

        // A security agent's raw ACCEPT and a CNI's jumps, each at position 1.
        iptables(&["-t", "raw", "-I", "PREROUTING", "1", "-j", "ACCEPT"])?;
        iptables(&["-t", "raw", "-I", "OUTPUT", "1", "-j", "ACCEPT"])?;
        iptables(&["-t", "filter", "-N", "CNI-INPUT"])?;
        iptables(&["-t", "filter", "-I", "INPUT", "1", "-j", "CNI-INPUT"])?;
        // Presence alone is satisfied: every rule of ours is still there.
        assert!(backend.check(&rules)?.complete());
        assert!(
            backend.displaced(&rules)?,
            "the ACCEPT above our NOTRACK is seen"
        );

        assert_eq!(backend.put_first(&rules)?, 2, "raw and filter rewritten");
        assert!(!backend.displaced(&rules)?);
        assert_eq!(backend.put_first(&rules)?, 0, "nothing left to move");
        // Ours exactly as upstream's, in upstream's order, then the foreign rules.
        let mut expected = String::new();
        for table in ["raw", "filter"] {
            let lines = chain_lines(table)?;
            let ours: Vec<&String> = lines.iter().filter(|l| l.contains("NodeLocal")).collect();
            expected.push_str(&format!("*{table}\n"));
            for l in &ours {
                expected.push_str(&format!("{l}\n"));
            }
            expected.push_str("COMMIT\n");
            // In each chain, no foreign line comes before one of ours.
            for chain in ["PREROUTING", "OUTPUT", "INPUT"] {
                let in_chain: Vec<&String> = lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("-A {chain} ")))
                    .collect();
                let first_foreign = in_chain.iter().position(|l| !l.contains("NodeLocal"));
                let last_ours = in_chain.iter().rposition(|l| l.contains("NodeLocal"));
                if let (Some(f), Some(o)) = (first_foreign, last_ours) {
                    assert!(o < f, "{table} {chain}: {in_chain:#?}");
                }
            }
        }
        assert_eq!(expected, GOLDEN);
        assert_eq!(
            chain_lines("raw")?
                .iter()
                .filter(|l| l.ends_with("-j ACCEPT"))
                .count(),
            2,
            "the foreign rules stay"
        );

        // The cost of one position check (what the agent runs every 500 ms).
        let rounds = 20;
        let started = Instant::now();
        for _ in 0..rounds {
            backend.displaced(&rules)?;
        }
        let each = started.elapsed() / rounds;
        eprintln!("position check: {each:?} each (iptables-save -t raw, -t filter)");
        assert!(each < Duration::from_millis(250), "{each:?}");
        Ok(())
    })
}
