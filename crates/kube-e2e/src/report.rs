//! dnsload's summary of a load run, one line per server: written in the pod, parsed by the
//! driver. `key=value` words, so a human reading the log sees the same thing.

use anyhow::{bail, Context, Result};

/// What one server did with the queries sent to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerLoad {
    pub server: String,
    pub sent: u64,
    /// Not answered (NOERROR with an answer) within the timeout, for whatever reason.
    pub failed: u64,
    /// Of the failed: no reply at all.
    pub timeouts: u64,
    /// Of the failed: a reply with another RCODE or no answer.
    pub bad_replies: u64,
    /// Of the failed: the send itself failed (e.g. ECONNREFUSED from an earlier ICMP error).
    pub send_errors: u64,
    /// ICMP errors reported on the socket (port or host unreachable), for diagnosis.
    pub icmp_errors: u64,
    pub duration_ms: u64,
    /// When the first failed queries were sent, in ms since the load started.
    pub failed_at_ms: Vec<u64>,
    /// The bad replies by kind (an RCODE, or EMPTY for NOERROR without an answer), as
    /// `KIND:count` joined by commas; empty when there were none.
    pub bad_kinds: String,
}

impl ServerLoad {
    /// Queries per second actually sent.
    pub fn rate(&self) -> f64 {
        self.sent as f64 * 1000.0 / self.duration_ms.max(1) as f64
    }

    pub fn to_line(&self) -> String {
        let at: Vec<String> = self.failed_at_ms.iter().map(u64::to_string).collect();
        format!(
            "server={} sent={} failed={} timeouts={} bad_replies={} send_errors={} icmp_errors={} duration_ms={} failed_at_ms={} bad_kinds={}",
            self.server,
            self.sent,
            self.failed,
            self.timeouts,
            self.bad_replies,
            self.send_errors,
            self.icmp_errors,
            self.duration_ms,
            if at.is_empty() { "-".into() } else { at.join(",") },
            if self.bad_kinds.is_empty() { "-" } else { &self.bad_kinds }
        )
    }

    pub fn parse(line: &str) -> Result<Self> {
        let mut r = ServerLoad::default();
        let mut seen = 0;
        for word in line.split_whitespace() {
            let (key, value) = word
                .split_once('=')
                .with_context(|| format!("load report word {word:?} is not key=value"))?;
            let num = || {
                value
                    .parse::<u64>()
                    .with_context(|| format!("load report {key}={value:?} is not a number"))
            };
            match key {
                "server" => r.server = value.to_string(),
                "sent" => r.sent = num()?,
                "failed" => r.failed = num()?,
                "timeouts" => r.timeouts = num()?,
                "bad_replies" => r.bad_replies = num()?,
                "send_errors" => r.send_errors = num()?,
                "icmp_errors" => r.icmp_errors = num()?,
                "duration_ms" => r.duration_ms = num()?,
                "bad_kinds" => {
                    if value != "-" {
                        r.bad_kinds = value.to_string();
                    }
                    continue;
                }
                "failed_at_ms" if value == "-" => {}
                "failed_at_ms" => {
                    r.failed_at_ms = value
                        .split(',')
                        .map(|v| v.parse::<u64>())
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("load report failed_at_ms={value:?}"))?
                }
                _ => continue,
            }
            seen += 1;
        }
        if seen < 9 || r.server.is_empty() {
            bail!("load report line {line:?} lacks fields");
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_line_reads_back() {
        let r = ServerLoad {
            server: "10.96.0.10".into(),
            sent: 2000,
            failed: 3,
            timeouts: 2,
            bad_replies: 1,
            send_errors: 0,
            icmp_errors: 4,
            duration_ms: 10_000,
            failed_at_ms: vec![10, 20, 30],
            bad_kinds: "SERVFAIL:1".into(),
        };
        assert_eq!(ServerLoad::parse(&r.to_line()).unwrap(), r);
        let none = ServerLoad {
            failed_at_ms: vec![],
            bad_kinds: String::new(),
            ..r
        };
        assert_eq!(ServerLoad::parse(&none.to_line()).unwrap(), none);
        assert_eq!(none.rate(), 200.0);
        assert!(ServerLoad::parse("server=x sent=1").is_err());
        assert!(ServerLoad::parse("garbage").is_err());
    }
}
