//! A DNS-level liveness probe.
//!
//! The probe is a DNS message with no question. CoreDNS's server (miekg/dns) answers it with
//! FORMERR itself, before any plugin runs, so the answer proves that the listener and server
//! loop are alive without depending on an upstream being reachable or a zone being configured.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("DNS probe to {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    #[error("DNS probe to {addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
}

/// Every `RandomState` gets fresh keys, so hashing nothing yields a new random value.
fn random_id() -> u16 {
    RandomState::new().build_hasher().finish() as u16
}

/// Header only: ID, flags 0 (standard query), all section counts 0.
fn probe_message(id: u16) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[..2].copy_from_slice(&id.to_be_bytes());
    m
}

fn is_answer_to(reply: &[u8], id: u16) -> bool {
    reply.len() >= 12 && reply[..2] == id.to_be_bytes() && reply[2] & 0x80 != 0
}

/// Sends one probe over UDP and waits for the matching answer (any RCODE counts).
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<Duration, ProbeError> {
    let started = Instant::now();
    let io_err = |source| ProbeError::Io { addr, source };
    let local: IpAddr = match addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0)).await.map_err(io_err)?;
    socket.connect(addr).await.map_err(io_err)?;
    let id = random_id();
    socket.send(&probe_message(id)).await.map_err(io_err)?;
    let mut buf = [0u8; 512];
    let answer = async {
        loop {
            let n = socket.recv(&mut buf).await?;
            if is_answer_to(&buf[..n], id) {
                return Ok::<_, io::Error>(());
            }
        }
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(io_err(e)),
        Err(_) => Err(ProbeError::Timeout { addr, timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_must_echo_id_and_set_qr() {
        let id = 0xbeef;
        let mut reply = probe_message(id).to_vec();
        assert!(!is_answer_to(&reply, id), "a query is not an answer");
        reply[2] |= 0x80;
        assert!(is_answer_to(&reply, id));
        assert!(!is_answer_to(&reply, 0xbeee));
        assert!(!is_answer_to(&reply[..11], id));
    }

    #[tokio::test]
    async fn probe_times_out_without_a_server() {
        // A bound socket that never answers: the probe must give up at its timeout.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let err = probe(addr, Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(err, ProbeError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn probe_accepts_any_rcode() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let responder = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, peer) = server.recv_from(&mut buf).await.unwrap();
            buf[2] |= 0x80;
            buf[3] = 1; // FORMERR, as CoreDNS answers a question-less message
            server.send_to(&buf[..n], peer).await.unwrap();
        });
        probe(addr, Duration::from_secs(5)).await.unwrap();
        responder.await.unwrap();
    }
}
