//! DNS traffic from inside a namespace, without spawning `dig`: a steady query load
//! ([`QueryLoad`]) that counts every query that went unanswered, and one-shot queries with a
//! short timeout ([`Querier`]) for timing how fast something answers again.
//!
//! Both create their UDP socket on a thread that has entered the namespace (`setns`, that thread
//! only), so the socket lives in the namespace while the rest of the process stays where it is.
//! The DNS messages are written and read by hand: an A query with RD set, and of the reply the
//! header, the question (skipped) and the answer records.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sched::{setns, CloneFlags};

use crate::Netns;

/// A query not answered (RCODE NOERROR with at least one answer record) within this long counts
/// as failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const RCODE_NOERROR: u8 = 0;

/// Moves the calling thread into the named namespace's network (`/run/netns/<name>`).
fn enter_netns(name: &str) -> Result<()> {
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

/// An A query for `name` with ID `id` and recursion desired.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>> {
    let mut m = Vec::with_capacity(12 + name.len() + 6);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    m.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    m.extend_from_slice(&[0; 6]); // AN, NS, AR counts
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.is_empty() {
        for label in name.split('.') {
            ensure!(
                !label.is_empty() && label.len() <= 63,
                "invalid DNS name {name:?}: label {label:?} is empty or longer than 63 bytes"
            );
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
    }
    m.push(0);
    ensure!(m.len() - 12 <= 255 + 1, "DNS name {name:?} is too long");
    m.extend_from_slice(&TYPE_A.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(m)
}

/// What a reply said, as far as the load cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub id: u16,
    pub rcode: u8,
    /// Number of answer records of any type (ANCOUNT, all of them parsed).
    pub answers: usize,
    /// The answer section's A records.
    pub a: Vec<Ipv4Addr>,
}

impl Reply {
    /// RCODE NOERROR and at least one answer record: what the load counts as answered.
    pub fn is_answer(&self) -> bool {
        self.rcode == RCODE_NOERROR && self.answers > 0
    }
}

fn u16_at(m: &[u8], at: usize) -> Result<u16> {
    m.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .context("DNS message truncated")
}

/// The offset just past the (possibly compressed) name starting at `at`.
fn skip_name(m: &[u8], mut at: usize) -> Result<usize> {
    loop {
        let len = *m.get(at).context("DNS message truncated in a name")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xC0 == 0xC0 => {
                ensure!(at + 1 < m.len(), "DNS message truncated in a pointer");
                return Ok(at + 2);
            }
            l if l & 0xC0 == 0 => at += 1 + l as usize,
            l => bail!("DNS name label type {:#x} not supported", l & 0xC0),
        }
    }
}

/// Reads a reply: the header, the question section (skipped) and the answer section.
pub fn decode_reply(m: &[u8]) -> Result<Reply> {
    ensure!(m.len() >= 12, "DNS message of {} bytes", m.len());
    let id = u16_at(m, 0)?;
    let flags = u16_at(m, 2)?;
    ensure!(flags & 0x8000 != 0, "DNS message is a query, not a reply");
    let rcode = (flags & 0x000F) as u8;
    let qdcount = u16_at(m, 4)?;
    let ancount = u16_at(m, 6)?;
    let mut at = 12;
    for _ in 0..qdcount {
        at = skip_name(m, at)? + 4;
    }
    let mut a = Vec::new();
    for _ in 0..ancount {
        at = skip_name(m, at)?;
        let rtype = u16_at(m, at)?;
        let rclass = u16_at(m, at + 2)?;
        let rdlength = u16_at(m, at + 8)? as usize;
        let rdata = m
            .get(at + 10..at + 10 + rdlength)
            .context("DNS message truncated in an answer record")?;
        if rtype == TYPE_A && rclass == CLASS_IN && rdlength == 4 {
            a.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        at += 10 + rdlength;
    }
    Ok(Reply {
        id,
        rcode,
        answers: ancount as usize,
        a,
    })
}

/// A query ID sequence that does not start at the same value in every run.
fn first_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (std::process::id() << 7)) as u16
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
        self.socket
            .send_to(&encode_query(id, name)?, server)
            .with_context(|| format!("sending a query to {server}"))?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 1500];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no reply from {server} for {name} within {timeout:?}");
            }
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) if from == server => {
                    if let Ok(reply) = decode_reply(&buf[..n]) {
                        if reply.id == id {
                            return Ok(reply);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).with_context(|| format!("receiving from {server}")),
            }
        }
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

/// Counters for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetCounts {
    pub target: SocketAddr,
    pub sent: u64,
    pub answered: u64,
    pub failed: u64,
}

/// The counters while the load runs: queries still waiting for their reply are neither
/// answered nor failed yet.
#[derive(Clone, Debug)]
pub struct LoadSnapshot {
    pub elapsed: Duration,
    pub per_target: Vec<TargetCounts>,
    pub first_failure_at: Option<Duration>,
    pub last_failure_at: Option<Duration>,
}

/// The final counters: every query sent has been answered or has failed.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// From start to the last query sent.
    pub duration: Duration,
    pub per_target: Vec<TargetCounts>,
    /// When the first and the last failed query were *sent*, relative to the start.
    pub first_failure_at: Option<Duration>,
    pub last_failure_at: Option<Duration>,
}

impl LoadReport {
    pub fn sent(&self) -> u64 {
        self.per_target.iter().map(|t| t.sent).sum()
    }

    pub fn failed(&self) -> u64 {
        self.per_target.iter().map(|t| t.failed).sum()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} queries failed", self.failed(), self.sent())?;
        for t in &self.per_target {
            write!(f, "; {}: {}/{} failed", t.target, t.failed, t.sent)?;
        }
        if let (Some(first), Some(last)) = (self.first_failure_at, self.last_failure_at) {
            write!(f, "; failures sent between {first:?} and {last:?}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Stats {
    counts: Vec<TargetCounts>,
    first_failure_at: Option<Duration>,
    last_failure_at: Option<Duration>,
    last_sent_at: Duration,
}

impl Stats {
    /// Zero counts for each target, in order.
    fn for_targets(targets: &[SocketAddr]) -> Self {
        Self {
            counts: targets
                .iter()
                .map(|&target| TargetCounts {
                    target,
                    sent: 0,
                    answered: 0,
                    failed: 0,
                })
                .collect(),
            ..Self::default()
        }
    }

    fn fail(&mut self, target: usize, sent_at: Duration) {
        self.counts[target].failed += 1;
        self.first_failure_at = Some(self.first_failure_at.map_or(sent_at, |f| f.min(sent_at)));
        self.last_failure_at = Some(self.last_failure_at.map_or(sent_at, |l| l.max(sent_at)));
    }
}

/// A steady UDP A-query load from inside a namespace to one or more servers.
pub struct QueryLoad {
    started: Instant,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl QueryLoad {
    /// Starts sending `rate_per_target` queries a second for `name` to each target from inside
    /// `ns`, on an absolute schedule (a late thread catches up rather than drifting). Returns
    /// once the socket exists in the namespace.
    pub fn start(
        ns: &Netns,
        targets: Vec<SocketAddr>,
        name: &str,
        rate_per_target: u32,
    ) -> Result<Self> {
        ensure!(!targets.is_empty(), "a query load needs a target");
        ensure!(rate_per_target > 0, "a query load needs a rate above 0");
        encode_query(0, name)?;
        let stats = Arc::new(Mutex::new(Stats::for_targets(&targets)));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let ns_name = ns.name().to_string();
        let name = name.to_string();
        let period = Duration::from_secs(1) / rate_per_target;
        let (thread_stop, thread_stats) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name(format!("query-load-{ns_name}"))
            .spawn(move || {
                let socket = enter_netns(&ns_name)
                    .and_then(|()| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(Into::into));
                let socket = match socket {
                    Ok(socket) => {
                        let started = Instant::now();
                        let _ = ready_tx.send(Ok(started));
                        (socket, started)
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                run_load(socket, &targets, &name, period, &thread_stop, &thread_stats)
            })?;
        let started = match ready_rx.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => bail!("starting the query load in {}: {e}", ns.name()),
            Err(_) => bail!("the query load thread for {} died", ns.name()),
        };
        Ok(Self {
            started,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The counters so far.
    pub fn snapshot(&self) -> LoadSnapshot {
        let stats = self.stats.lock().expect("load stats lock");
        LoadSnapshot {
            elapsed: self.started.elapsed(),
            per_target: stats.counts.clone(),
            first_failure_at: stats.first_failure_at,
            last_failure_at: stats.last_failure_at,
        }
    }

    /// Stops sending, waits for the replies still due (at most [`QUERY_TIMEOUT`]) and reports.
    pub fn stop(mut self) -> Result<LoadReport> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("thread joined only here");
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("query load thread panicked"))??;
        let stats = self.stats.lock().expect("load stats lock");
        Ok(LoadReport {
            duration: stats.last_sent_at,
            per_target: stats.counts.clone(),
            first_failure_at: stats.first_failure_at,
            last_failure_at: stats.last_failure_at,
        })
    }
}

impl Drop for QueryLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The load thread: send on schedule, match replies to (target, ID), expire the unanswered.
fn run_load(
    (socket, started): (UdpSocket, Instant),
    targets: &[SocketAddr],
    name: &str,
    period: Duration,
    stop: &AtomicBool,
    stats: &Mutex<Stats>,
) -> Result<()> {
    let mut next_id = first_id();
    let mut sent_count = vec![0u32; targets.len()];
    // (target, id) → when it was sent; and the same in send order, for expiry.
    let mut pending: HashMap<(usize, u16), Instant> = HashMap::new();
    let mut by_age: VecDeque<(Instant, usize, u16)> = VecDeque::new();
    let mut buf = [0u8; 1500];
    let mut stopping = false;
    loop {
        let now = Instant::now();
        if !stopping && stop.load(Ordering::Relaxed) {
            stopping = true;
        }
        if !stopping {
            for (t, target) in targets.iter().enumerate() {
                while started + period * sent_count[t] <= now {
                    let id = next_id;
                    next_id = next_id.wrapping_add(1);
                    sent_count[t] += 1;
                    let sent_at = Instant::now();
                    let mut s = stats.lock().expect("load stats lock");
                    s.counts[t].sent += 1;
                    s.last_sent_at = sent_at - started;
                    match socket.send_to(&encode_query(id, name)?, target) {
                        Ok(_) => {
                            pending.insert((t, id), sent_at);
                            by_age.push_back((sent_at, t, id));
                        }
                        // No route, filtered, ...: the query is lost as surely as a timeout.
                        Err(_) => s.fail(t, sent_at - started),
                    }
                }
            }
        }
        while let Some(&(sent_at, t, id)) = by_age.front() {
            if now < sent_at + QUERY_TIMEOUT {
                break;
            }
            by_age.pop_front();
            if pending.remove(&(t, id)).is_some() {
                stats
                    .lock()
                    .expect("load stats lock")
                    .fail(t, sent_at - started);
            }
        }
        if stopping && pending.is_empty() {
            return Ok(());
        }
        let mut wake = now + Duration::from_millis(50);
        if !stopping {
            for count in &sent_count {
                wake = wake.min(started + period * *count);
            }
        }
        if let Some(&(sent_at, _, _)) = by_age.front() {
            wake = wake.min(sent_at + QUERY_TIMEOUT);
        }
        let wait = wake
            .saturating_duration_since(Instant::now())
            .max(Duration::from_micros(100));
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let Some(t) = targets.iter().position(|&target| target == from) else {
                    continue;
                };
                let Ok(reply) = decode_reply(&buf[..n]) else {
                    continue;
                };
                if let Some(sent_at) = pending.remove(&(t, reply.id)) {
                    let mut s = stats.lock().expect("load stats lock");
                    if reply.is_answer() {
                        s.counts[t].answered += 1;
                    } else {
                        s.fail(t, sent_at - started);
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // An ICMP error reported on the socket: the query it belongs to expires.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e).context("receiving replies"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `encode_query(id, name)` as a server writes it: the question echoed, answers
    /// pointing back at the question name (0xC00C).
    fn reply_to(id: u16, name: &str, rcode: u8, a: &[[u8; 4]]) -> Vec<u8> {
        let mut m = encode_query(id, name).unwrap();
        m[2] = 0x81; // QR, RD
        m[3] = 0x80 | rcode; // RA
        m[6..8].copy_from_slice(&(a.len() as u16).to_be_bytes());
        for addr in a {
            m.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
            m.extend_from_slice(addr);
        }
        m
    }

    #[test]
    fn query_encodes_header_question_and_labels() {
        let m = encode_query(0xBEEF, "db.corp.internal.").unwrap();
        assert_eq!(&m[..12], &[0xBE, 0xEF, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&m[12..], b"\x02db\x04corp\x08internal\x00\x00\x01\x00\x01");
        assert_eq!(encode_query(1, "db.corp.internal").unwrap(), {
            let mut same = m.clone();
            same[..2].copy_from_slice(&1u16.to_be_bytes());
            same
        });
        assert_eq!(
            &encode_query(1, ".").unwrap()[12..],
            b"\x00\x00\x01\x00\x01"
        );
    }

    #[test]
    fn query_rejects_bad_names() {
        assert!(encode_query(1, "a..b").is_err());
        assert!(encode_query(1, &"x".repeat(64)).is_err());
        assert!(encode_query(1, &["abcdefghi"; 30].join(".")).is_err());
    }

    #[test]
    fn reply_with_a_records_is_an_answer() {
        let m = reply_to(7, "www.example.com", 0, &[[192, 0, 2, 80], [192, 0, 2, 81]]);
        let reply = decode_reply(&m).unwrap();
        assert_eq!(reply.id, 7);
        assert_eq!(reply.rcode, 0);
        assert_eq!(reply.answers, 2);
        assert_eq!(
            reply.a,
            [Ipv4Addr::new(192, 0, 2, 80), Ipv4Addr::new(192, 0, 2, 81)]
        );
        assert!(reply.is_answer());
    }

    #[test]
    fn nxdomain_servfail_and_empty_noerror_are_not_answers() {
        for (rcode, a) in [
            (3, vec![]),
            (2, vec![]),
            (0, vec![]),
            (5, vec![[1, 2, 3, 4]]),
        ] {
            let reply = decode_reply(&reply_to(9, "x.example", rcode, &a)).unwrap();
            assert_eq!(reply.rcode, rcode);
            assert!(!reply.is_answer(), "rcode {rcode} with {} records", a.len());
        }
    }

    #[test]
    fn non_a_records_count_but_are_not_addresses() {
        // A CNAME (type 5) whose target is a pointer, then an A record.
        let mut m = reply_to(3, "www.example.com", 0, &[]);
        m[6..8].copy_from_slice(&2u16.to_be_bytes());
        m.extend_from_slice(&[0xC0, 0x0C, 0, 5, 0, 1, 0, 0, 0, 30, 0, 2, 0xC0, 0x0C]);
        m.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1]);
        let reply = decode_reply(&m).unwrap();
        assert_eq!(reply.answers, 2);
        assert_eq!(reply.a, [Ipv4Addr::new(10, 0, 0, 1)]);
    }

    #[test]
    fn queries_and_truncated_messages_are_rejected() {
        assert!(decode_reply(&encode_query(1, "a.b").unwrap()).is_err());
        let m = reply_to(1, "a.b", 0, &[[1, 2, 3, 4]]);
        for len in [0, 11, 14, m.len() - 1] {
            assert!(decode_reply(&m[..len]).is_err(), "{len} bytes");
        }
    }

    #[test]
    fn load_against_a_local_responder_counts_answers_and_silence() -> Result<()> {
        // In a fresh namespace of the test's own: a responder on one port, nothing on another.
        crate::in_fresh_netns(|| {
            let server = UdpSocket::bind("127.0.0.1:0")?;
            let addr = server.local_addr()?;
            let silent = UdpSocket::bind("127.0.0.1:0")?;
            let silent_addr = silent.local_addr()?;
            let responder = std::thread::spawn(move || {
                server.set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut buf = [0u8; 512];
                while let Ok((_, peer)) = server.recv_from(&mut buf) {
                    let id = u16::from_be_bytes([buf[0], buf[1]]);
                    server.send_to(&reply_to(id, "a.test", 0, &[[192, 0, 2, 1]]), peer)?;
                }
                Ok::<_, anyhow::Error>(())
            });
            // `QueryLoad::start` enters a named namespace; this thread already is in its own, so
            // it runs the load loop itself.
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            let stop = AtomicBool::new(false);
            let stats = Mutex::new(Stats::for_targets(&[addr, silent_addr]));
            std::thread::scope(|scope| {
                let runner = scope.spawn(|| {
                    run_load(
                        (socket, Instant::now()),
                        &[addr, silent_addr],
                        "a.test",
                        Duration::from_millis(10),
                        &stop,
                        &stats,
                    )
                });
                crate::wait_until("50 queries to each target", Duration::from_secs(5), || {
                    let s = stats.lock().unwrap();
                    Ok(s.counts.iter().all(|c| c.sent >= 50))
                })?;
                stop.store(true, Ordering::Relaxed);
                runner.join().expect("load thread")
            })?;
            drop(silent);
            responder.join().expect("responder")?;
            let s = stats.lock().unwrap();
            let (ok, dead) = (&s.counts[0], &s.counts[1]);
            assert_eq!((ok.answered, ok.failed), (ok.sent, 0), "{ok:?}");
            assert_eq!((dead.answered, dead.failed), (0, dead.sent), "{dead:?}");
            assert!(s.first_failure_at.is_some() && s.last_failure_at >= s.first_failure_at);
            Ok(())
        })
    }
}

#[cfg(test)]
mod topology_tests {
    use super::*;
    use crate::topology::names;
    use crate::{addrs, Topology};

    #[test]
    fn pod_load_on_kube_dns_has_no_failures_and_a_dead_port_fails_every_query() -> Result<()> {
        let topo = Topology::build()?;
        let kube_dns: SocketAddr = format!("{}:53", addrs::KUBE_DNS_POD).parse()?;
        // Same pod, same server, a port nothing listens on: ICMP port unreachable.
        let dead: SocketAddr = format!("{}:5353", addrs::KUBE_DNS_POD).parse()?;
        let load = QueryLoad::start(&topo.pod, vec![kube_dns, dead], names::CLUSTER, 200)?;
        crate::wait_until("2 s of load", Duration::from_secs(5), || {
            Ok(load.snapshot().elapsed >= Duration::from_secs(2))
        })?;
        let report = load.stop()?;
        eprintln!("{report}");
        let (ok, bad) = (&report.per_target[0], &report.per_target[1]);
        // 2 s at 200 q/s: about 400 each (the schedule starts at 0 and catches up).
        assert!((395..=420).contains(&ok.sent), "{report}");
        assert_eq!(ok.failed, 0, "kube-dns at 200 q/s: {report}");
        assert_eq!(ok.answered, ok.sent, "{report}");
        assert_eq!(bad.sent, ok.sent, "{report}");
        assert_eq!(bad.failed, bad.sent, "nothing listens on {dead}: {report}");
        assert!(
            report.first_failure_at.unwrap() < Duration::from_millis(50),
            "{report}"
        );

        // The one-shot querier sees the same server from the same pod.
        let q = Querier::new(&topo.pod)?;
        let cluster_ip: Ipv4Addr = names::CLUSTER_IP.parse()?;
        assert_eq!(
            q.a_records(kube_dns, names::CLUSTER, Duration::from_secs(1)),
            [cluster_ip]
        );
        assert!(q
            .query(dead, names::CLUSTER, Duration::from_millis(200))
            .is_err());
        Ok(())
    }
}
