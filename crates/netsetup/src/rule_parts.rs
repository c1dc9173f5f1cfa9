//! A [`Rule`] read back into its parts, for the backends that do not speak iptables arguments:
//! nftables renders them in its own syntax, the dual-stack filter sorts them by family.
//!
//! `rules.rs` keeps the iptables argument list as the one source of truth (its spelling is the
//! compatibility contract); reading it back here keeps the two from drifting apart.

use std::net::IpAddr;

use crate::rules::{Rule, Table};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Which end of the packet the address and port match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum End {
    /// `-d IP --dport P`
    Destination,
    /// `-s IP --sport P`
    Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Notrack,
    Accept,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parts {
    pub table: Table,
    pub chain: &'static str,
    pub proto: Proto,
    pub end: End,
    pub ip: IpAddr,
    pub port: u16,
    pub target: Target,
    pub comment: String,
}

/// The value following `flag` in `args`.
fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// `None` for a rule that is not shaped like one of [`crate::node_cache_rules`]'s (its
/// fields are public, so a caller could have changed it).
pub(crate) fn parts(rule: &Rule) -> Option<Parts> {
    use End::{Destination, Source};
    let args = &rule.args;
    let proto = match value(args, "-p")? {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    let (end, ip, port) = match (value(args, "-d"), value(args, "-s")) {
        (Some(ip), None) => (Destination, ip, value(args, "--dport")?),
        (None, Some(ip)) => (Source, ip, value(args, "--sport")?),
        _ => return None,
    };
    let target = match value(args, "-j")? {
        "NOTRACK" => Target::Notrack,
        "ACCEPT" => Target::Accept,
        _ => return None,
    };
    Some(Parts {
        table: rule.table,
        chain: rule.chain,
        proto,
        end,
        ip: ip.parse().ok()?,
        port: port.parse().ok()?,
        target,
        comment: value(args, "--comment")?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::node_cache_rules;

    #[test]
    fn every_generated_rule_reads_back() {
        let ips: Vec<IpAddr> = vec![
            "169.254.20.10".parse().unwrap(),
            "fd00::10".parse().unwrap(),
        ];
        let rules = node_cache_rules(&ips, 5353, 9090);
        let read: Vec<Parts> = rules.iter().map(|r| parts(r).expect("readable")).collect();
        assert_eq!(read.len(), 24);
        assert_eq!(
            read[0],
            Parts {
                table: Table::Raw,
                chain: "PREROUTING",
                proto: Proto::Tcp,
                end: End::Destination,
                ip: ips[0],
                port: 5353,
                target: Target::Notrack,
                comment: crate::rules::COMMENT_SKIP_CONNTRACK.to_string(),
            }
        );
        assert_eq!(
            (read[23].end, read[23].port, read[23].ip),
            (End::Source, 9090, ips[1])
        );
        assert_eq!(read[2].target, Target::Accept);
    }

    #[test]
    fn a_foreign_shape_is_refused() {
        let mut rule = node_cache_rules(&["10.0.0.1".parse().unwrap()], 53, 8080).remove(0);
        rule.args[1] = "sctp".to_string();
        assert_eq!(parts(&rule), None);
    }
}
