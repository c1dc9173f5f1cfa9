//! Other node-cache instances on this node (a surge rollout's new pod, an HA pair's twin),
//! found through abstract unix sockets. Host-network pods share the node's network namespace
//! and with it its abstract socket names, so this needs no shared volume; the kernel drops a
//! socket when its process dies, even by SIGKILL or OOM kill, so a dead instance never counts.
//!
//! Names, per interface (so agents for different interfaces never interact):
//! - `node-cache/<if>/present/<id>`: the instance runs and owns the node state with the others;
//! - `node-cache/<if>/serving/<id>`: its CoreDNS has answered;
//! - `node-cache/<if>/lock`: held while registering and while deciding on teardown.
//!
//! The lock makes "am I the last one?" and "I am here" exclusive: an instance registers
//! before it touches the node, and the one stopping looks for others and tears down under the
//! lock, so a teardown never runs while another instance is registered, and the last one out
//! always finds nobody and tears down.
//!
//! An instance's id is random, prefixed with its pod's name when the downward API gives one
//! (for the logs): in a pod node-cache is PID 1, so every pod on the node has the same pid,
//! while the abstract names are shared by all of them.

pub mod handover;

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::time::{Duration, Instant};

const PREFIX: &str = "node-cache";
const LOCK_RETRY: Duration = Duration::from_millis(5);
/// Abstract names are at most 107 bytes; a pod name (up to 253) is cut to keep room.
const MAX_LABEL: usize = 48;

/// Who this instance is among the others on the node: `<pod name or pid>.<random hex>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceId(String);

impl InstanceId {
    /// A fresh id; `pod_name` (POD_NAME from the downward API) only labels it.
    pub fn new(pod_name: Option<&str>) -> io::Result<Self> {
        let label: String = match pod_name.filter(|n| !n.is_empty()) {
            Some(name) => name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .take(MAX_LABEL)
                .collect(),
            None => format!("pid{}", std::process::id()),
        };
        Ok(Self(format!("{label}.{:016x}", random_u64()?)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn random_u64() -> io::Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_ne_bytes(bytes))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Present,
    Serving,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Present => "present",
            Role::Serving => "serving",
        }
    }
}

fn bind_abstract(name: &str) -> io::Result<UnixListener> {
    UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
}

fn role_prefix(interface: &str, role: Role) -> String {
    format!("{PREFIX}/{interface}/{}/", role.as_str())
}

/// Held while registering or deciding on teardown; released on drop.
pub struct Lock {
    _held: UnixListener,
}

/// Takes the node-wide lock for `interface`, waiting at most `max_wait` (a holder that hangs
/// must not stop us forever); None when it could not be had in time.
pub async fn lock(interface: &str, max_wait: Duration) -> Option<Lock> {
    let name = format!("{PREFIX}/{interface}/lock");
    let started = Instant::now();
    loop {
        match bind_abstract(&name) {
            Ok(l) => return Some(Lock { _held: l }),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && started.elapsed() < max_wait => {
                tokio::time::sleep(LOCK_RETRY).await;
            }
            Err(e) => {
                tracing::warn!("peer lock {name}: {e}");
                return None;
            }
        }
    }
}

/// This instance's registration; dropping it withdraws it.
pub struct Presence {
    id: InstanceId,
    interface: String,
    present: Option<UnixListener>,
    serving: Option<UnixListener>,
}

impl Presence {
    /// Registers as present. Call under [`lock`].
    pub fn register(interface: &str, id: InstanceId) -> io::Result<Self> {
        let present = bind_abstract(&format!("{}{id}", role_prefix(interface, Role::Present)))?;
        Ok(Self {
            id,
            interface: interface.to_string(),
            present: Some(present),
            serving: None,
        })
    }

    /// Announces that our CoreDNS answers (idempotent).
    pub fn mark_serving(&mut self) {
        if self.serving.is_some() {
            return;
        }
        let name = format!("{}{}", role_prefix(&self.interface, Role::Serving), self.id);
        match bind_abstract(&name) {
            Ok(l) => self.serving = Some(l),
            Err(e) => tracing::warn!("announcing {name}: {e}"),
        }
    }

    /// Announces that our CoreDNS no longer answers.
    pub fn mark_not_serving(&mut self) {
        self.serving = None;
    }

    /// Withdraws the registration (before deciding on teardown).
    pub fn withdraw(&mut self) {
        self.serving = None;
        self.present = None;
    }

    /// Withdraws under the node-wide lock and returns the lock (held while the caller tears
    /// down, so nobody registers in between; None if it could not be had within `max_wait`)
    /// and the instances still present.
    pub async fn leave(&mut self, max_wait: Duration) -> (Option<Lock>, Vec<String>) {
        let lock = lock(&self.interface, max_wait).await;
        self.withdraw();
        let others = self.others(Role::Present);
        (lock, others)
    }

    /// Ids of the other instances in `role`.
    pub fn others(&self, role: Role) -> Vec<String> {
        others_in(&self.interface, role, self.id.as_str())
    }

    pub fn id(&self) -> &InstanceId {
        &self.id
    }
}

/// Ids registered in `role` for `interface` in this network namespace, except `me`.
pub fn others_in(interface: &str, role: Role, me: &str) -> Vec<String> {
    match std::fs::read_to_string("/proc/net/unix") {
        Ok(table) => parse_peers(&table, &role_prefix(interface, role), me),
        Err(e) => {
            tracing::warn!("reading /proc/net/unix: {e}; assuming no peers");
            Vec::new()
        }
    }
}

/// `/proc/net/unix` rows end with the path; abstract names show as `@name`.
fn parse_peers(table: &str, prefix: &str, me: &str) -> Vec<String> {
    let mut ids: Vec<String> = table
        .lines()
        .filter_map(|row| row.split_whitespace().last())
        .filter_map(|path| path.strip_prefix('@')?.strip_prefix(prefix))
        .filter(|id| !id.is_empty() && *id != me)
        .map(str::to_string)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_read_from_abstract_names_only() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000: 00000002 00000000 00010000 0001 01 1 @node-cache/nodelocaldns/present/12\n\
            0000: 00000002 00000000 00010000 0001 01 2 @node-cache/nodelocaldns/present/34\n\
            0000: 00000002 00000000 00010000 0001 01 3 @node-cache/other/present/56\n\
            0000: 00000002 00000000 00010000 0001 01 4 /run/node-cache/nodelocaldns/present/78\n\
            0000: 00000002 00000000 00010000 0001 01 5 @node-cache/nodelocaldns/serving/12\n";
        let prefix = role_prefix("nodelocaldns", Role::Present);
        assert_eq!(parse_peers(table, &prefix, "34"), vec!["12"]);
        assert_eq!(parse_peers(table, &prefix, "99"), vec!["12", "34"]);
    }

    #[test]
    fn two_instances_with_the_same_pid_get_different_ids() {
        // Every pod's node-cache is PID 1: the pid alone would collide.
        let a = InstanceId::new(Some("node-local-dns-abcde")).unwrap();
        let b = InstanceId::new(Some("node-local-dns-abcde")).unwrap();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("node-local-dns-abcde."), "{a}");
        let long = "x".repeat(300);
        let c = InstanceId::new(Some(&long)).unwrap();
        assert!(c.as_str().len() <= MAX_LABEL + 17, "{c}");
        let d = InstanceId::new(Some("a/b c")).unwrap();
        assert!(d.as_str().starts_with("abc."), "{d}");
        assert!(InstanceId::new(None).unwrap().as_str().starts_with("pid"));
    }

    #[tokio::test]
    async fn registration_is_visible_and_goes_with_the_socket() {
        // A name unique to this test run, so parallel runs never see each other.
        let interface = format!("t{}", std::process::id());
        let id = InstanceId::new(None).unwrap();
        let me = vec![id.to_string()];
        let mut presence = Presence::register(&interface, id.clone()).unwrap();
        presence.mark_serving();
        assert_eq!(others_in(&interface, Role::Present, ""), me);
        assert_eq!(others_in(&interface, Role::Serving, ""), me);
        let same_pid = Presence::register(&interface, InstanceId::new(None).unwrap())
            .expect("a second instance with our pid registers too");
        assert_eq!(presence.others(Role::Present).len(), 1);
        drop(same_pid);
        assert!(
            presence.others(Role::Present).is_empty(),
            "we are not our own peer"
        );
        presence.withdraw();
        assert!(others_in(&interface, Role::Present, "").is_empty());
        let held = lock(&interface, Duration::ZERO).await.expect("free lock");
        assert!(
            lock(&interface, Duration::from_millis(20)).await.is_none(),
            "exclusive"
        );
        drop(held);
        assert!(lock(&interface, Duration::ZERO).await.is_some());
    }
}
