//! One-shot A queries from inside a namespace with a short timeout ([`Querier`]), for timing
//! how fast something answers again, and the namespace-bound UDP socket they (and the query
//! load) use: created on a thread that has entered the namespace (`setns`, that thread only), so
//! the socket lives in the namespace while the rest of the process stays where it is.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};
use dns_query::{first_id, Reply};
use nix::sched::{setns, CloneFlags};

use crate::Netns;

/// Moves the calling thread into the named namespace's network (`/run/netns/<name>`).
pub(crate) fn enter_netns(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns({path})"))
}

/// A UDP socket on an ephemeral port of `0.0.0.0`, created inside `ns`.
pub fn udp_socket_in(ns: &Netns) -> Result<UdpSocket> {
    let name = ns.name().to_string();
    std::thread::spawn(move || {
        enter_netns(&name)?;
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding a UDP socket")
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread entering {} panicked", ns.name()))?
}

/// One-shot A queries from inside a namespace, each waiting at most the given timeout: for
/// measuring when a server answers again with a finer grain than `dig`'s 1 s minimum.
pub struct Querier {
    socket: UdpSocket,
    next_id: std::cell::Cell<u16>,
}

impl Querier {
    pub fn new(ns: &Netns) -> Result<Self> {
        Ok(Self {
            socket: udp_socket_in(ns)?,
            next_id: std::cell::Cell::new(first_id()),
        })
    }

    /// Sends one A query for `name` to `server` and waits up to `timeout` for its reply
    /// (any RCODE); a timeout is an error.
    pub fn query(&self, server: SocketAddr, name: &str, timeout: Duration) -> Result<Reply> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        dns_query::query(&self.socket, id, server, name, timeout)
    }

    /// The A records `server` returns for `name`, or None when the query fails, times out or
    /// is answered without records (the shape a `wait_until` check wants).
    pub fn a_records(&self, server: SocketAddr, name: &str, timeout: Duration) -> Vec<Ipv4Addr> {
        match self.query(server, name, timeout) {
            Ok(reply) if reply.is_answer() => reply.a,
            _ => Vec::new(),
        }
    }
}
