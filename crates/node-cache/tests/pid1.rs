//! node-cache as PID 1 of a PID namespace, as in its container: a process orphaned inside
//! (a shell left by `kubectl exec`) is reparented to it and must not stay a zombie.

use std::process::Command;

use anyhow::Result;
use testbed::fixture::{Node, DEADLINE};
use testbed::wait_until;

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// `(comm, state)` of a process, from `/proc/<pid>/stat`.
fn comm_state(pid: u32) -> Option<(String, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    let comm = stat[stat.find('(')? + 1..close].to_string();
    Some((comm, stat[close + 1..].trim_start().chars().next()?))
}

#[test]
fn orphans_reparented_to_node_cache_as_pid_1_are_reaped() -> Result<()> {
    // The fixture starts node-cache as a pod: PID 1 of a PID namespace of its own.
    let node = Node::addon(NODE_CACHE)?;
    let mut run = node.agent().spawn()?;
    run.wait_rules()?;
    let agent = run.pid();
    assert!(run.log().contains("running as PID 1"), "{}", run.log());

    // A process that outlives its parent inside the namespace: `sleep` is orphaned when the
    // shell exits and reparented to PID 1, i.e. to node-cache.
    let status = Command::new("nsenter")
        .args([
            "--target",
            &agent.to_string(),
            "--pid",
            "--",
            "sh",
            "-c",
            "sleep 0.3 & exit 0",
        ])
        .status()?;
    assert!(status.success());
    wait_until("the orphan to be adopted by node-cache", DEADLINE, || {
        Ok(children(agent)
            .iter()
            .any(|c| comm_state(*c).is_some_and(|(comm, _)| comm == "sleep")))
    })?;
    wait_until("the adopted orphan to exit and be reaped", DEADLINE, || {
        Ok(!children(agent)
            .iter()
            .any(|c| comm_state(*c).is_some_and(|(comm, _)| comm == "sleep")))
    })?;
    let zombies: Vec<(String, char)> = children(agent)
        .into_iter()
        .filter_map(comm_state)
        .filter(|(_, state)| *state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies under PID 1: {zombies:?}");

    run.finish()
}
