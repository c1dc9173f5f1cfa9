//! A steady UDP query load from inside a namespace ([`QueryLoad`]) that counts every query
//! that went unanswered.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use dns_query::{decode_reply, encode_query, first_id};

use crate::querier::enter_netns;
use crate::Netns;

/// A query not answered (RCODE NOERROR with at least one answer record) within this long counts
/// as failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Counters for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetCounts {
    pub target: SocketAddr,
    pub sent: u64,
    pub answered: u64,
    pub failed: u64,
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

    /// How long the load has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Lets the load run `more` from now, so every query sent around an event is counted (a
    /// measurement window on the load's own clock, not a wait for a condition).
    pub fn run_for(&self, more: Duration) -> Result<()> {
        let until = self.elapsed() + more;
        crate::wait_until("the load to run on", more + QUERY_TIMEOUT, || {
            Ok(self.elapsed() >= until)
        })
        .map(|_| ())
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
    use dns_query::encode_reply;

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
                    server.send_to(&encode_reply(id, "a.test", 0, &[[192, 0, 2, 1]]), peer)?;
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
    use crate::{addrs, Querier, Topology};

    #[test]
    fn pod_load_on_kube_dns_has_no_failures_and_a_dead_port_fails_every_query() -> Result<()> {
        let topo = Topology::build()?;
        let kube_dns: SocketAddr = format!("{}:53", addrs::KUBE_DNS_POD).parse()?;
        // Same pod, same server, a port nothing listens on: ICMP port unreachable.
        let dead: SocketAddr = format!("{}:5353", addrs::KUBE_DNS_POD).parse()?;
        let load = QueryLoad::start(&topo.pod, vec![kube_dns, dead], names::CLUSTER, 200)?;
        load.run_for(Duration::from_secs(2))?;
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
