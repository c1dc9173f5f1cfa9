//! The rules upstream node-cache installs, generated as data.
//!
//! The order and argument spelling follow upstream exactly: `iptables-save` prints matches in
//! the order they were given, and each rule is inserted at the top of its chain, so both decide
//! whether our rules are byte-identical to upstream's (and so removable by either agent).

use std::fmt;
use std::net::IpAddr;

pub const COMMENT_SKIP_CONNTRACK: &str = "NodeLocal DNS Cache: skip conntrack";
pub const COMMENT_ALLOW_TRAFFIC: &str = "NodeLocal DNS Cache: allow DNS traffic";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Raw,
    Filter,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Filter => "filter",
        }
    }
}

/// One rule: where it lives and its match/target arguments (without `-A`/`-I`/`-D`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub table: Table,
    pub chain: &'static str,
    pub args: Vec<String>,
    /// The line `iptables-save` prints for this rule (see [`Rule::saved_form`]).
    pub(crate) saved: String,
}

impl Rule {
    /// The line `iptables-save` prints for this rule, e.g.
    /// `-A PREROUTING -d 10.96.0.10/32 -p udp -m udp --dport 53 -m comment --comment "..." -j NOTRACK`.
    /// Used only to skip per-rule checks when every rule is plainly there: a mismatch costs
    /// time (the slow path runs), never a duplicate.
    pub fn saved_form(&self) -> &str {
        &self.saved
    }

    /// The arguments as one string with the comment quoted, the form the `iptables` crate splits.
    pub fn spec(&self) -> String {
        self.args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("\"{a}\"")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "-t {} {} {}",
            self.table.as_str(),
            self.chain,
            self.spec()
        )
    }
}

#[derive(Clone, Copy)]
enum Dir {
    /// `-d IP --dport P`
    To,
    /// `-s IP --sport P`
    From,
}

/// The match part of a rule: protocol, direction, address and port.
#[derive(Clone, Copy)]
struct Match<'a> {
    proto: &'static str,
    dir: Dir,
    ip: &'a IpAddr,
    port: u16,
}

fn rule(table: Table, chain: &'static str, m: Match, target: &str, comment: &str) -> Rule {
    let (addr_flag, port_flag) = match m.dir {
        Dir::To => ("-d", "--dport"),
        Dir::From => ("-s", "--sport"),
    };
    let (addr_flag_saved, host_bits) = (addr_flag, if m.ip.is_ipv4() { 32 } else { 128 });
    let saved = format!(
        "-A {chain} {addr_flag_saved} {}/{host_bits} -p {proto} -m {proto} {port_flag} {} -m comment --comment \"{comment}\" -j {target}",
        m.ip, m.port, proto = m.proto
    );
    Rule {
        table,
        chain,
        saved,
        args: [
            "-p",
            m.proto,
            addr_flag,
            &m.ip.to_string(),
            port_flag,
            &m.port.to_string(),
            "-j",
            target,
            "-m",
            "comment",
            "--comment",
            comment,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

/// The 12 rules per local IP, in upstream's order of insertion.
pub fn node_cache_rules(local_ips: &[IpAddr], dns_port: u16, health_port: u16) -> Vec<Rule> {
    use Dir::{From, To};
    let notrack = |chain, proto, dir, ip, port| {
        let m = Match {
            proto,
            dir,
            ip,
            port,
        };
        rule(Table::Raw, chain, m, "NOTRACK", COMMENT_SKIP_CONNTRACK)
    };
    let accept = |chain, proto, dir, ip, port| {
        let m = Match {
            proto,
            dir,
            ip,
            port,
        };
        rule(Table::Filter, chain, m, "ACCEPT", COMMENT_ALLOW_TRAFFIC)
    };
    let p = dns_port;
    local_ips
        .iter()
        .flat_map(|ip| {
            [
                // Queries to the local IPs skip conntrack, so kube-proxy's DNAT never sees them.
                notrack("PREROUTING", "tcp", To, ip, p),
                notrack("PREROUTING", "udp", To, ip, p),
                // Untracked packets are not ESTABLISHED: accept them explicitly.
                accept("INPUT", "tcp", To, ip, p),
                accept("INPUT", "udp", To, ip, p),
                notrack("OUTPUT", "tcp", From, ip, p),
                notrack("OUTPUT", "udp", From, ip, p),
                accept("OUTPUT", "tcp", From, ip, p),
                accept("OUTPUT", "udp", From, ip, p),
                // Queries from host-network pods.
                notrack("OUTPUT", "tcp", To, ip, p),
                notrack("OUTPUT", "udp", To, ip, p),
                // The kubelet's liveness probe to CoreDNS's health plugin.
                notrack("OUTPUT", "tcp", To, ip, health_port),
                notrack("OUTPUT", "tcp", From, ip, health_port),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_rules_per_ip_in_upstream_order() {
        let ips: Vec<IpAddr> = vec![
            "169.254.20.10".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
        ];
        let rules = node_cache_rules(&ips, 53, 8080);
        assert_eq!(rules.len(), 24);
        assert_eq!(
            rules[0].to_string(),
            "-t raw PREROUTING -p tcp -d 169.254.20.10 --dport 53 -j NOTRACK -m comment --comment \"NodeLocal DNS Cache: skip conntrack\""
        );
        assert_eq!(
            rules[23].to_string(),
            "-t raw OUTPUT -p tcp -s 10.96.0.10 --sport 8080 -j NOTRACK -m comment --comment \"NodeLocal DNS Cache: skip conntrack\""
        );
    }

    #[test]
    fn saved_forms_are_what_iptables_save_prints() {
        let golden = include_str!("../tests/golden/rules-169.254.20.10_10.96.0.10.iptables-save");
        let ips: Vec<IpAddr> = vec![
            "169.254.20.10".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
        ];
        let mut predicted: Vec<&str> = Vec::new();
        let rules = node_cache_rules(&ips, 53, 8080);
        predicted.extend(rules.iter().map(Rule::saved_form));
        let mut saved: Vec<&str> = golden.lines().filter(|l| l.starts_with("-A")).collect();
        predicted.sort_unstable();
        saved.sort_unstable();
        assert_eq!(predicted, saved);
    }

    #[test]
    fn ports_follow_the_flags() {
        let ips: Vec<IpAddr> = vec!["fd00::10".parse().unwrap()];
        let rules = node_cache_rules(&ips, 5353, 9090);
        assert!(rules[0].spec().contains("-d fd00::10 --dport 5353"));
        assert!(rules[11].spec().contains("-s fd00::10 --sport 9090"));
    }
}
