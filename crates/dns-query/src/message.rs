//! DNS messages written and read by hand: an A query with RD set; of a reply the header, the
//! question (skipped) and the answer records; and a reply as a server writes it, for test
//! responders.

use std::net::Ipv4Addr;

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
    m.extend_from_slice(&[0; 6]); // AN, NS, AR counts
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

/// A reply to `encode_query(id, name)` as a server writes it, for responders in tests: RCODE
/// `rcode`, the question echoed, one A record per address, each naming the question by a
/// pointer (0xC00C).
pub fn encode_reply(id: u16, name: &str, rcode: u8, a: &[[u8; 4]]) -> Vec<u8> {
    let mut m = encode_query(id, name).expect("a name a query was sent for");
    m[2] = 0x81; // QR, RD
    m[3] = 0x80 | rcode; // RA
    m[6..8].copy_from_slice(&(a.len() as u16).to_be_bytes());
    for addr in a {
        m.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        m.extend_from_slice(addr);
    }
    m
}

/// What a reply said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub id: u16,
    pub rcode: u8,
    /// ANCOUNT: answer records of any type, all of them parsed.
    pub answers: usize,
    /// The answer section's A records.
    pub a: Vec<Ipv4Addr>,
}

impl Reply {
    /// NOERROR with at least one answer record: what a load counts as answered.
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let m = encode_reply(7, "www.example.com", 0, &[[192, 0, 2, 80], [192, 0, 2, 81]]);
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
            let reply = decode_reply(&encode_reply(9, "x.example", rcode, &a)).unwrap();
            assert_eq!(reply.rcode, rcode);
            assert!(!reply.is_answer(), "rcode {rcode} with {} records", a.len());
        }
        assert_eq!(rcode_name(3), "NXDOMAIN");
        assert_eq!(rcode_name(9), "RCODE9");
    }

    #[test]
    fn non_a_records_count_but_are_not_addresses() {
        // A CNAME (type 5) whose target is a pointer, then an A record.
        let mut m = encode_reply(3, "www.example.com", 0, &[]);
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
        let m = encode_reply(1, "a.b", 0, &[[1, 2, 3, 4]]);
        for len in [0, 11, 14, m.len() - 1] {
            assert!(decode_reply(&m[..len]).is_err(), "{len} bytes");
        }
    }
}
