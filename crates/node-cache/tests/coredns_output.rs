//! A CoreDNS that exits at once must leave its reason in our log: its fatal line (which has no
//! trailing newline) before our "CoreDNS exited" line, and, when its user cannot read the
//! Corefile, one line of ours naming the path and the uid before it is even started.

use std::os::unix::fs::PermissionsExt;

use anyhow::Result;
use testbed::fixture::Node;
use testbed::wait_until;

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");

#[test]
fn a_corefile_coredns_cannot_read_is_named_and_its_fatal_line_kept() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    // Root may write there; CoreDNS, as 65532, may not even look inside.
    let closed = node.topo.path("closed");
    std::fs::create_dir_all(&closed)?;
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700))?;
    let corefile = closed.join("Corefile");
    let conf = corefile.display().to_string();
    let agent = node.agent().flags(&["-conf", &conf]).spawn()?;
    wait_until("CoreDNS to exit twice", testbed::fixture::DEADLINE, || {
        Ok(agent.log().matches("CoreDNS exited").count() >= 2)
    })?;
    let log = agent.log();
    let ours = log
        .lines()
        .find(|l| l.contains("CoreDNS's user cannot read the Corefile"))
        .unwrap_or_else(|| panic!("no line naming the unreadable Corefile:\n{log}"));
    assert!(ours.contains(&conf) && ours.contains("uid=65532"), "{ours}");
    // CoreDNS's own reason precedes each of our exit lines.
    let first_exit = log.find("CoreDNS exited").expect("an exit line");
    let reason = log.find("permission denied").unwrap_or(usize::MAX);
    assert!(
        reason < first_exit,
        "CoreDNS's fatal line must come before our exit line:\n{log}"
    );
    Ok(())
}
