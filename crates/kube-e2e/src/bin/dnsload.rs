//! The lab's DNS client and load generator, run inside the test pods (static, no libraries).
//!
//!   dnsload query SERVER NAME [TIMEOUT_MS]
//!       one A query; prints the RCODE and the A records; exit 1 when no reply came
//!   dnsload until SERVER ZONE WANT DEADLINE_S
//!       queries a fresh name under ZONE every 100 ms (so no cache hides a change) until an
//!       answer is WANT; prints the wall-clock time of that answer (answered_at_ms=...)
//!   dnsload load RATE NAME STOP_FILE SERVER...
//!       RATE A queries per second for NAME to each SERVER, each from one socket (one source
//!       port, the hardest case for SO_REUSEPORT), until STOP_FILE exists; then waits for the
//!       queries in flight and prints one summary line per server (kube_e2e::report)
//!
//! A load query counts as failed when no NOERROR reply with an answer arrives within 2 s, the
//! time a resolver's first try would wait before retrying.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use dns_query::{decode_reply, encode_query, first_id, query, rcode_name};
use kube_e2e::report::ServerLoad;

const LOAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How many failure times a summary carries: enough to see when an outage happened.
const FAILURE_TIMES: usize = 40;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("query") if args.len() >= 3 => cmd_query(&args[1], &args[2], args.get(3)),
        Some("until") if args.len() == 5 => cmd_until(&args[1], &args[2], &args[3], &args[4]),
        Some("load") if args.len() >= 5 => cmd_load(&args[1], &args[2], &args[3], &args[4..]),
        _ => {
            eprintln!(
                "usage: dnsload query SERVER NAME [TIMEOUT_MS] | until SERVER ZONE WANT DEADLINE_S | load RATE NAME STOP_FILE SERVER..."
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("dnsload: {e:#}");
        std::process::exit(1);
    }
}

fn server_addr(s: &str) -> Result<SocketAddr> {
    let ip: Ipv4Addr = s
        .parse()
        .with_context(|| format!("server {s:?} is not an IPv4 address"))?;
    Ok(SocketAddr::from((ip, 53)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn cmd_query(server: &str, name: &str, timeout_ms: Option<&String>) -> Result<()> {
    let server = server_addr(server)?;
    let timeout = match timeout_ms {
        Some(t) => Duration::from_millis(
            t.parse()
                .with_context(|| format!("timeout {t:?} is not a number of ms"))?,
        ),
        None => Duration::from_secs(2),
    };
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding a UDP socket")?;
    let reply = query(&socket, first_id(), server, name, timeout)?;
    let a: Vec<String> = reply.a.iter().map(Ipv4Addr::to_string).collect();
    println!("{} {}", rcode_name(reply.rcode), a.join(" "));
    Ok(())
}

fn cmd_until(server: &str, zone: &str, want: &str, deadline_s: &str) -> Result<()> {
    let server = server_addr(server)?;
    let want: Ipv4Addr = want
        .parse()
        .with_context(|| format!("wanted answer {want:?} is not an IPv4 address"))?;
    let limit = Duration::from_secs(
        deadline_s
            .parse()
            .with_context(|| format!("deadline {deadline_s:?} is not a number of seconds"))?,
    );
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding a UDP socket")?;
    let start = Instant::now();
    let mut id = first_id();
    let mut last = String::from("no reply yet");
    let mut n = 0u64;
    while start.elapsed() < limit {
        n += 1;
        id = id.wrapping_add(1);
        let name = format!("q{n}-{id}.{zone}");
        let tick = Instant::now();
        match query(&socket, id, server, &name, Duration::from_millis(300)) {
            Ok(r) if r.a.contains(&want) => {
                println!("answered_at_ms={} queries={n}", now_ms());
                return Ok(());
            }
            Ok(r) => last = format!("{} {:?}", rcode_name(r.rcode), r.a),
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
    }
    bail!("{server} gave no {want} for names under {zone} within {limit:?} ({n} queries; last: {last})")
}

/// Per-server state shared by its sender and receiver threads.
#[derive(Default)]
struct Tally {
    in_flight: HashMap<u16, Instant>,
    r: ServerLoad,
    bad: std::collections::BTreeMap<String, u64>,
}

impl Tally {
    fn fail(&mut self, sent_at: Instant, start: Instant) {
        self.r.failed += 1;
        if self.r.failed_at_ms.len() < FAILURE_TIMES {
            self.r
                .failed_at_ms
                .push(sent_at.duration_since(start).as_millis() as u64);
        }
    }
}

fn cmd_load(rate: &str, name: &str, stop_file: &str, servers: &[String]) -> Result<()> {
    let rate: u32 = rate
        .parse()
        .ok()
        .filter(|r| *r > 0)
        .with_context(|| format!("rate {rate:?} is not a positive number of queries/s"))?;
    encode_query(0, name)?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut threads = Vec::new();
    for s in servers {
        let server = server_addr(s)?;
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding a UDP socket")?;
        // Connected: ICMP errors for this server come back on this socket only.
        socket
            .connect(server)
            .with_context(|| format!("connecting a UDP socket to {server}"))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let tally = Arc::new(Mutex::new(Tally {
            r: ServerLoad {
                server: s.clone(),
                ..Default::default()
            },
            ..Default::default()
        }));
        let sender = {
            let (socket, tally, stop, name) = (
                socket.try_clone()?,
                tally.clone(),
                stop.clone(),
                name.to_string(),
            );
            std::thread::spawn(move || send_loop(socket, tally, stop, &name, rate, start))
        };
        let receiver = {
            let (tally, stop) = (tally.clone(), stop.clone());
            std::thread::spawn(move || receive_loop(socket, tally, stop, start))
        };
        threads.push((sender, receiver, tally));
    }
    println!("started servers={} rate={rate}", servers.join(","));
    while !Path::new(stop_file).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    for (sender, receiver, tally) in threads {
        let sent = sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))?;
        receiver
            .join()
            .map_err(|_| anyhow::anyhow!("receiver panicked"))?;
        let mut t = tally.lock().unwrap();
        t.r.duration_ms = sent.as_millis() as u64;
        t.r.bad_kinds = t
            .bad
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect::<Vec<_>>()
            .join(",");
        println!("{}", t.r.to_line());
    }
    Ok(())
}

/// Sends on an absolute schedule (start + i/rate), so a slow moment is caught up, not lost;
/// returns how long it sent for.
fn send_loop(
    socket: UdpSocket,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    name: &str,
    rate: u32,
    start: Instant,
) -> Duration {
    let period = Duration::from_secs(1) / rate;
    let mut id = first_id();
    let mut i: u32 = 0;
    while !stop.load(Ordering::SeqCst) {
        let due = start + period * i;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        i += 1;
        id = id.wrapping_add(1);
        let msg = encode_query(id, name).expect("name checked before the load started");
        let sent_at = Instant::now();
        let mut t = tally.lock().unwrap();
        t.r.sent += 1;
        if socket.send(&msg).is_err() {
            t.r.send_errors += 1;
            t.fail(sent_at, start);
        } else {
            t.in_flight.insert(id, sent_at);
        }
    }
    start.elapsed()
}

fn receive_loop(
    socket: UdpSocket,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    start: Instant,
) {
    let mut buf = [0u8; 1500];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => {
                if let Ok(reply) = decode_reply(&buf[..n]) {
                    let mut t = tally.lock().unwrap();
                    if let Some(sent_at) = t.in_flight.remove(&reply.id) {
                        if !reply.is_answer() {
                            t.r.bad_replies += 1;
                            let kind = if reply.rcode == 0 {
                                "EMPTY".to_string()
                            } else {
                                rcode_name(reply.rcode)
                            };
                            *t.bad.entry(kind).or_default() += 1;
                            t.fail(sent_at, start);
                        }
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => tally.lock().unwrap().r.icmp_errors += 1,
        }
        let mut t = tally.lock().unwrap();
        let expired: Vec<(u16, Instant)> = t
            .in_flight
            .iter()
            .filter(|(_, at)| at.elapsed() >= LOAD_TIMEOUT)
            .map(|(id, at)| (*id, *at))
            .collect();
        for (id, at) in expired {
            t.in_flight.remove(&id);
            t.r.timeouts += 1;
            t.fail(at, start);
        }
        if stop.load(Ordering::SeqCst) && t.in_flight.is_empty() {
            return;
        }
    }
}
