//! The rules upstream node-cache installs, as one typed value per rule, and their iptables
//! renderings. The nftables rendering is in [`crate::nft_backend`]; both read the same
//! [`Rule`], so nothing is parsed back from text.
//!
//! The order and argument spelling follow upstream exactly: `iptables-save` prints matches in
//! the order they were given, and each rule is inserted at the top of its chain, so both decide
//! whether our rules are byte-identical to upstream's (and so removable by either agent).

use std::fmt;
use std::net::IpAddr;

pub const COMMENT_SKIP_CONNTRACK: &str = "NodeLocal DNS Cache: skip conntrack";
pub const COMMENT_ALLOW_TRAFFIC: &str = "NodeLocal DNS Cache: allow DNS traffic";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// The built-in chain, i.e. the netfilter hook the rule acts at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Chain {
    Prerouting,
    Input,
    Output,
}

impl Chain {
    /// As iptables spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Prerouting => "PREROUTING",
            Chain::Input => "INPUT",
            Chain::Output => "OUTPUT",
        }
    }

    /// As nftables names the hook.
    pub fn hook(self) -> &'static str {
        match self {
            Chain::Prerouting => "prerouting",
            Chain::Input => "input",
            Chain::Output => "output",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Which end of the packet the address and port match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum End {
    /// `-d IP --dport P`
    Destination,
    /// `-s IP --sport P`
    Source,
}

/// What a rule does; it also decides the table and the comment, as upstream pairs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Raw table: the packet skips conntrack, so kube-proxy's DNAT never sees it.
    Notrack,
    /// Filter table: untracked packets are not ESTABLISHED, so they are accepted explicitly.
    Accept,
}

impl Target {
    pub fn table(self) -> Table {
        match self {
            Target::Notrack => Table::Raw,
            Target::Accept => Table::Filter,
        }
    }

    pub fn comment(self) -> &'static str {
        match self {
            Target::Notrack => COMMENT_SKIP_CONNTRACK,
            Target::Accept => COMMENT_ALLOW_TRAFFIC,
        }
    }

    /// As iptables spells it after `-j`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Notrack => "NOTRACK",
            Target::Accept => "ACCEPT",
        }
    }
}

/// One rule. Only [`node_cache_rules`] makes them, so every backend can express each one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub(crate) chain: Chain,
    pub(crate) proto: Proto,
    pub(crate) end: End,
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) target: Target,
}

impl Rule {
    pub fn table(&self) -> Table {
        self.target.table()
    }

    pub fn chain(&self) -> Chain {
        self.chain
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Whether the rule matches DNS queries on their way to the cache (`-d IP --dport P`), as
    /// opposed to its answers on their way out (`-s IP --sport P`) or health checks.
    pub fn matches_queries_to(&self, dns_port: u16) -> bool {
        self.end == End::Destination && self.port == dns_port
    }

    pub fn comment(&self) -> &'static str {
        self.target.comment()
    }

    fn flags(&self) -> (&'static str, &'static str) {
        match self.end {
            End::Destination => ("-d", "--dport"),
            End::Source => ("-s", "--sport"),
        }
    }

    /// The match and target as iptables arguments (without `-t`, `-A`/`-I`/`-D` and chain),
    /// in upstream's order.
    pub fn iptables_args(&self) -> Vec<String> {
        let (addr_flag, port_flag) = self.flags();
        [
            "-p",
            self.proto.as_str(),
            addr_flag,
            &self.ip.to_string(),
            port_flag,
            &self.port.to_string(),
            "-j",
            self.target.as_str(),
            "-m",
            "comment",
            "--comment",
            self.comment(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// [`Rule::iptables_args`] as one line with the comment quoted: the form
    /// `iptables-restore` reads.
    pub fn spec(&self) -> String {
        self.iptables_args()
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

    /// The line `iptables-save` prints for this rule, e.g.
    /// `-A PREROUTING -d 10.96.0.10/32 -p udp -m udp --dport 53 -m comment --comment "..." -j NOTRACK`.
    /// Used only to skip per-rule checks when every rule is plainly there: a mismatch costs
    /// time (the slow path runs), never a duplicate.
    pub fn saved_form(&self) -> String {
        let (addr_flag, port_flag) = self.flags();
        let host_bits = if self.ip.is_ipv4() { 32 } else { 128 };
        let proto = self.proto.as_str();
        format!(
            "-A {} {addr_flag} {}/{host_bits} -p {proto} -m {proto} {port_flag} {} -m comment --comment \"{}\" -j {}",
            self.chain.as_str(),
            self.ip,
            self.port,
            self.comment(),
            self.target.as_str()
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "-t {} {} {}",
            self.table().as_str(),
            self.chain.as_str(),
            self.spec()
        )
    }
}

/// Which flag a rule's port comes from.
#[derive(Clone, Copy)]
enum Port {
    Dns,
    Health,
}

const BOTH: &[Proto] = &[Proto::Tcp, Proto::Udp];
const TCP: &[Proto] = &[Proto::Tcp];

/// Upstream's rules for one local IP, in its order of insertion; each row is one rule per
/// protocol listed.
const PER_IP: [(Target, Chain, End, Port, &[Proto]); 7] = {
    use Chain::{Input, Output, Prerouting};
    use End::{Destination as To, Source as From};
    use Target::{Accept, Notrack};
    [
        // Queries to the local IPs skip conntrack, so kube-proxy's DNAT never sees them.
        (Notrack, Prerouting, To, Port::Dns, BOTH),
        // Untracked packets are not ESTABLISHED: accept them explicitly.
        (Accept, Input, To, Port::Dns, BOTH),
        (Notrack, Output, From, Port::Dns, BOTH),
        (Accept, Output, From, Port::Dns, BOTH),
        // Queries from host-network pods.
        (Notrack, Output, To, Port::Dns, BOTH),
        // The kubelet's liveness probe to CoreDNS's health plugin.
        (Notrack, Output, To, Port::Health, TCP),
        (Notrack, Output, From, Port::Health, TCP),
    ]
};

/// The 12 rules per local IP, in upstream's order of insertion.
pub fn node_cache_rules(local_ips: &[IpAddr], dns_port: u16, health_port: u16) -> Vec<Rule> {
    let mut rules = Vec::with_capacity(local_ips.len() * 12);
    for &ip in local_ips {
        for (target, chain, end, port, protos) in PER_IP {
            let port = match port {
                Port::Dns => dns_port,
                Port::Health => health_port,
            };
            rules.extend(protos.iter().map(|&proto| Rule {
                chain,
                proto,
                end,
                ip,
                port,
                target,
            }));
        }
    }
    rules
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
        assert_eq!(
            rules[2].iptables_args().last().map(String::as_str),
            Some(COMMENT_ALLOW_TRAFFIC)
        );
    }

    #[test]
    fn saved_forms_are_what_iptables_save_prints() {
        let golden = include_str!("../tests/golden/rules-169.254.20.10_10.96.0.10.iptables-save");
        let ips: Vec<IpAddr> = vec![
            "169.254.20.10".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
        ];
        let rules = node_cache_rules(&ips, 53, 8080);
        let mut predicted: Vec<String> = rules.iter().map(Rule::saved_form).collect();
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
