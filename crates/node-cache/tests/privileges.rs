//! The trust boundary: CoreDNS runs as another user with NET_BIND_SERVICE only, cannot gain
//! privileges, and gets a minimal environment; `-coredns-uid=0` keeps upstream's root child.
//! Read from the kernel's view of the running child (`/proc/<pid>/status`, `environ`).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use testbed::fixture::{Node, DEADLINE};
use testbed::pod::Capabilities;
use testbed::topology::names;
use testbed::{addrs, wait_until};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");
const NET_BIND_SERVICE: u64 = 1 << 10;

/// The fields of `/proc/<pid>/status` this test reads.
fn status(pid: u32) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

fn caps(status: &HashMap<String, String>, field: &str) -> Result<u64> {
    let hex = status.get(field).context(field.to_string())?;
    Ok(u64::from_str_radix(hex, 16)?)
}

fn environ(pid: u32) -> Result<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect())
}

/// Starts the agent with `extra` flags, waits until it serves, and returns CoreDNS's status
/// and environment.
fn child_of_agent(extra: &[&str]) -> Result<(HashMap<String, String>, Vec<String>)> {
    let node = Node::addon(NODE_CACHE)?;
    let mut agent = node.agent().flags(extra).start()?;
    let mut pid = 0;
    wait_until("CoreDNS's pidfile", DEADLINE, || {
        pid = agent.coredns_pid()?;
        Ok(true)
    })?;
    let seen = (status(pid)?, environ(pid)?);
    agent.finish()?;
    Ok(seen)
}

#[test]
fn coredns_runs_unprivileged_with_only_net_bind_service() -> Result<()> {
    let (status, env) = child_of_agent(&[])?;
    assert_eq!(status["Uid"], "65532\t65532\t65532\t65532");
    assert_eq!(status["Gid"], "65532\t65532\t65532\t65532");
    assert_eq!(status["Groups"], "", "no supplementary groups");
    assert_eq!(status["NoNewPrivs"], "1");
    for field in ["CapEff", "CapPrm", "CapAmb"] {
        assert_eq!(caps(&status, field)?, NET_BIND_SERVICE, "{field}");
    }
    // The agent's own inputs (the kube-dns Service's address) stay with the agent.
    assert!(
        env.iter()
            .all(|v| !v.starts_with("KUBE_DNS_UPSTREAM_SERVICE_HOST=")),
        "{env:?}"
    );
    assert!(env.iter().any(|v| v.starts_with("PATH=")), "{env:?}");
    Ok(())
}

#[test]
fn coredns_uid_0_keeps_upstreams_root_child() -> Result<()> {
    let (status, env) = child_of_agent(&["-coredns-uid=0"])?;
    assert_eq!(status["Uid"], "0\t0\t0\t0");
    assert_ne!(caps(&status, "CapEff")?, NET_BIND_SERVICE);
    assert!(
        env.iter()
            .any(|v| v.starts_with("KUBE_DNS_UPSTREAM_SERVICE_HOST=")),
        "{env:?}"
    );
    Ok(())
}

#[test]
fn a_binary_coredns_user_cannot_execute_is_reported_and_the_agent_stays_up() -> Result<()> {
    // What dropping privileges can break: a binary only root can reach. The spawn error must
    // name it, and the agent keeps running (and retrying) rather than exiting.
    let node = Node::addon(NODE_CACHE)?;
    let private = node.topo.path("private");
    std::fs::create_dir(&private)?;
    let binary = private.join("coredns");
    std::fs::copy(&node.topo.coredns, &binary)?;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
    let mut agent = node
        .agent()
        .coredns(&binary)
        .flags(&["-syncinterval=1s"])
        .spawn()?;
    wait_until("the spawn error in the log", DEADLINE, || {
        Ok(agent.log().contains(&binary.display().to_string()))
    })?;
    assert!(agent.try_status()?.is_none(), "{}", agent.log());
    agent.signal(Signal::SIGTERM)?;
    agent.wait_exit()?;
    Ok(())
}

/// The whole life of an instance (rules, serving, a reload, teardown) with exactly a pod's
/// capabilities, as the container runtime would start it: the manifest's (`drop: [ALL]`, its
/// list, `allowPrivilegeEscalation: false`) and upstream's (NET_ADMIN and the runtime's
/// defaults: the image swapped into upstream's DaemonSet). Neither has CAP_SYS_PTRACE or
/// CAP_DAC_READ_SEARCH, yet CoreDNS's sockets must be seen (no "cannot see" warning).
#[test]
fn a_pods_capabilities_are_enough() -> Result<()> {
    for caps in Capabilities::ALL {
        let node = Node::addon(NODE_CACHE)?;
        let mut agent = node.agent().capabilities(caps).start()?;
        assert!(
            node.answers(addrs::LINK_LOCAL, names::CLUSTER, names::CLUSTER_IP),
            "{caps:?}: {}",
            agent.log()
        );
        let status = status(agent.pid())?;
        let expected_nnp = if caps == Capabilities::Manifest {
            "1"
        } else {
            "0"
        };
        assert_eq!(status["NoNewPrivs"], expected_nnp, "{caps:?}");
        // A reload needs to signal CoreDNS, which runs as another user.
        let base = std::fs::read_to_string(&node.files.base)?;
        std::fs::write(&node.files.base, format!("{base}\n# touched\n"))?;
        wait_until("CoreDNS to report the reload", DEADLINE, || {
            Ok(agent.log().contains("Reloading complete"))
        })?;
        agent
            .finish()
            .with_context(|| format!("{caps:?} capabilities"))?;
        for unwanted in ["Operation not permitted", "Permission denied", "cannot see"] {
            assert!(!agent.log().contains(unwanted), "{caps:?}: {}", agent.log());
        }
    }
    Ok(())
}
