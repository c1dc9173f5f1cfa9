//! Our rules stay first (issue 21): the real binary in the node namespace of a throwaway
//! topology, real iptables. A foreign rule inserted at position 1 above our NOTRACK (a security
//! agent's raw ACCEPT) is noticed and ours are back in front within 1 s; the move is counted
//! under `errortype="iptables"` and said once per episode.

use std::time::{Duration, Instant};

use anyhow::Result;
use node_cache::metrics::ErrorType;
use testbed::fixture::{series, Node};
use testbed::wait_until;

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
const WARNING: &str = "a foreign rule was above ours";

/// Whether the first rule of `chain` in the node's `table` is one of ours.
fn ours_first(node: &Node, table: &str, chain: &str) -> Result<bool> {
    let prefix = format!("-A {chain} ");
    let saved = node.topo.node.iptables_save(table)?;
    Ok(saved
        .lines()
        .find(|l| l.starts_with(&prefix))
        .is_some_and(|l| l.contains("NodeLocal DNS Cache")))
}

/// Inserts `-j ACCEPT` at position 1 of `table` `chain` and returns how long until ours lead
/// the chain again.
fn displace(node: &Node, table: &str, chain: &str) -> Result<Duration> {
    node.topo
        .node
        .exec("iptables", &["-t", table, "-I", chain, "1", "-j", "ACCEPT"])?;
    let inserted = Instant::now();
    wait_until(
        &format!("our rules first in {table} {chain} again"),
        Duration::from_secs(1),
        || ours_first(node, table, chain),
    )?;
    Ok(inserted.elapsed())
}

#[test]
fn a_foreign_rule_above_ours_is_moved_below_within_a_second() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let agent = node.agent().start()?;
    let errors = series::setup_errors(ErrorType::Iptables.label());
    let before = agent.metric(&errors)?;

    let raw = displace(&node, "raw", "PREROUTING")?;
    let output = displace(&node, "raw", "OUTPUT")?;
    let input = displace(&node, "filter", "INPUT")?;
    eprintln!(
        "figure: foreign rule at position 1 → ours first again: raw PREROUTING {} ms, raw \
         OUTPUT {} ms, filter INPUT {} ms",
        raw.as_millis(),
        output.as_millis(),
        input.as_millis()
    );
    agent.wait_metric(
        &errors,
        Duration::from_secs(2),
        |v| v >= before + 3.0,
        "one per move",
    )?;
    // The foreign rules stay (below ours), and ours are still exactly 24.
    let saved = node.topo.node.iptables_save("raw")?;
    assert_eq!(
        saved.lines().filter(|l| l.ends_with("-j ACCEPT")).count(),
        2
    );
    let ours = |t: &str| -> Result<usize> {
        Ok(node
            .topo
            .node
            .iptables_save(t)?
            .lines()
            .filter(|l| l.contains("NodeLocal DNS Cache"))
            .count())
    };
    assert_eq!(ours("raw")? + ours("filter")?, 24);
    let log = agent.log();
    assert_eq!(
        log.lines().filter(|l| l.contains(WARNING)).count(),
        1,
        "one warning for the episode:\n{}",
        testbed::fixture::tail(&log)
    );
    Ok(())
}
