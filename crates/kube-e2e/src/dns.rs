//! DNS over UDP by hand: an A query with RD set, and of a reply the header and the answer
//! section's A records. Enough for a load generator and a client; no dependency to link
//! statically into the test pod's image.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
pub const RCODE_NOERROR: u8 = 0;

/// An A query for `name` with ID `id` and recursion desired.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>> {
    let mut m = Vec::with_capacity(18 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    m.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    m.extend_from_slice(&[0; 6]);
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            ensure!(
                !label.is_empty() && label.len() <= 63,
                "invalid DNS name {name:?}: label {label:?} is empty or longer than 63 bytes"
            );
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
    }
    m.push(0);
    ensure!(
        m.len() - 12 <= 256,
        "DNS name {name:?} is longer than 255 bytes"
    );
    m.extend_from_slice(&TYPE_A.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(m)
}

/// What a reply said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub id: u16,
    pub rcode: u8,
    /// ANCOUNT: answer records of any type.
    pub answers: usize,
    pub a: Vec<Ipv4Addr>,
}

impl Reply {
    /// NOERROR with at least one answer record: what the load counts as answered.
    pub fn is_answer(&self) -> bool {
        self.rcode == RCODE_NOERROR && self.answers > 0
    }
}

/// The name of an RCODE, for output.
pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

fn u16_at(m: &[u8], at: usize) -> Result<u16> {
    m.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .context("DNS message truncated")
}

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

/// Reads a reply's header, skips its question and reads its answer records.
pub fn decode_reply(m: &[u8]) -> Result<Reply> {
    ensure!(m.len() >= 12, "DNS message of {} bytes", m.len());
    let id = u16_at(m, 0)?;
    let flags = u16_at(m, 2)?;
    ensure!(flags & 0x8000 != 0, "DNS message is a query, not a reply");
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
        rcode: (flags & 0x000F) as u8,
        answers: ancount as usize,
        a,
    })
}

/// A query ID sequence that does not start at the same value in every process.
pub fn first_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (std::process::id() << 7)) as u16
}

/// Sends one A query on `socket` and waits up to `timeout` for the reply with its ID (any
/// RCODE); no reply in time is an error naming the server and the name.
pub fn query(
    socket: &UdpSocket,
    id: u16,
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Reply> {
    socket
        .send_to(&encode_query(id, name)?, server)
        .with_context(|| format!("sending a query for {name} to {server}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no reply from {server} for {name} within {timeout:?}");
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == server => {
                if let Ok(reply) = decode_reply(&buf[..n]) {
                    if reply.id == id {
                        return Ok(reply);
                    }
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("waiting for {server}'s reply for {name}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_has_one_question_with_its_labels() {
        let m = encode_query(0x1234, "a.bc.").unwrap();
        assert_eq!(
            m,
            [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1]
        );
        assert!(encode_query(1, "a..b").is_err());
        assert!(encode_query(1, &"x".repeat(64)).is_err());
    }

    #[test]
    fn a_reply_with_a_compressed_answer_is_read() {
        let mut m = encode_query(7, "k.io").unwrap();
        m[2] = 0x81; // QR, RD
        m[3] = 0x80; // RA, NOERROR
        m[7] = 1; // ANCOUNT
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 0, 1]);
        let r = decode_reply(&m).unwrap();
        assert_eq!(r.id, 7);
        assert!(r.is_answer());
        assert_eq!(r.a, vec![Ipv4Addr::new(10, 96, 0, 1)]);
        assert!(decode_reply(&m[..m.len() - 1]).is_err());
        assert!(decode_reply(&encode_query(7, "k.io").unwrap()).is_err());
    }
}
