//! The command line seen from outside: bad input exits 2 before anything on the network is
//! touched; `-version` names both versions.

use std::process::Command;

use anyhow::Result;
use testbed::{coredns_binary, Netns};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");

#[test]
fn bad_flags_exit_2_and_touch_nothing() -> Result<()> {
    let ns = Netns::create(&format!("{}-cli", testbed::unique_tag()))?;
    let cases: [(&[&str], &str); 5] = [
        (&["-localip", "10.0.0.x"], "-localip"),
        (
            &["-localip", "169.254.20.10", "-firewall-backend", "nft"],
            "-firewall-backend",
        ),
        (&["-localip", "169.254.20.10", "-bogus"], "bogus"),
        (
            &["-localip", "169.254.20.10", "-health-port", "http"],
            "-health-port",
        ),
        (&["-localip", "169.254.20.10", "stray"], "stray"),
    ];
    for (args, named) in cases {
        let out = ns.command(NODE_CACHE).args(args).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(named),
            "{args:?}: first line {first:?} must name {named}"
        );
        assert!(
            stderr.contains("-localip"),
            "{args:?}: usage expected:\n{stderr}"
        );
    }
    // Nothing was created: only loopback, no rules.
    let links = ns.ip(&["-br", "link"])?;
    assert_eq!(links.lines().count(), 1, "{links}");
    let saved = ns.exec("iptables-save", &[])?;
    assert!(!saved.contains("NodeLocal"), "{saved}");
    Ok(())
}

#[test]
fn version_prints_ours_and_corednss() -> Result<()> {
    let out = Command::new(NODE_CACHE)
        .args(["-version", "-coredns-binary"])
        .arg(coredns_binary()?)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // Ours: the version stamped at build time (`git describe` under make), else the crate's.
    let ours = lines.first().and_then(|l| l.strip_prefix("node-cache "));
    assert!(ours.is_some_and(|v| !v.trim().is_empty()), "{stdout}");
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("CoreDNS-1.14.")),
        "{stdout}"
    );
    Ok(())
}
