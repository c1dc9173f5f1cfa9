//! Our nftables table as typed data: its chains and its text (what `nft -f` reads and `nft list`
//! prints).

use crate::rules::{Chain, End, Rule, Table, Target};

pub const FAMILY: &str = "inet";
pub const TABLE: &str = "node-local-dns";

/// One of our base chains.
pub(super) struct ChainDef {
    pub(super) name: &'static str,
    table: Table,
    pub(super) hook: Chain,
    pub(super) prio: i64,
    /// How `nft list` prints `prio`.
    prio_text: &'static str,
}

impl ChainDef {
    /// `rule` belongs in this chain.
    pub(super) fn holds(&self, rule: &Rule) -> bool {
        self.table == rule.table() && self.hook == rule.chain()
    }
}

const PRIO_RAW: i64 = -300;
/// `dstnat - 20`: before kube-proxy's earliest chains (see the module comment of
/// [`crate::nft_backend`]).
const PRIO_ACCEPT: i64 = -120;

/// In the order they are created, which is the order `nft list` prints them.
pub(super) const CHAINS: [ChainDef; 4] = [
    ChainDef {
        name: "raw-prerouting",
        table: Table::Raw,
        hook: Chain::Prerouting,
        prio: PRIO_RAW,
        prio_text: "raw",
    },
    ChainDef {
        name: "raw-output",
        table: Table::Raw,
        hook: Chain::Output,
        prio: PRIO_RAW,
        prio_text: "raw",
    },
    ChainDef {
        name: "filter-input",
        table: Table::Filter,
        hook: Chain::Input,
        prio: PRIO_ACCEPT,
        prio_text: "-120",
    },
    ChainDef {
        name: "filter-output",
        table: Table::Filter,
        hook: Chain::Output,
        prio: PRIO_ACCEPT,
        prio_text: "-120",
    },
];

/// The rule in nft syntax, as `nft list` prints it.
fn rule_text(rule: &Rule) -> String {
    let family = if rule.ip.is_ipv4() { "ip" } else { "ip6" };
    let (addr, port) = match rule.end {
        End::Destination => ("daddr", "dport"),
        End::Source => ("saddr", "sport"),
    };
    let verdict = match rule.target {
        Target::Notrack => "notrack",
        Target::Accept => "accept",
    };
    format!(
        "{family} {addr} {} {} {port} {} {verdict} comment \"{}\"",
        rule.ip,
        rule.proto.as_str(),
        rule.port,
        rule.comment()
    )
}

/// Our table with `rules` in it, exactly as `nft list table inet node-local-dns` prints it.
pub fn nft_table(rules: &[Rule]) -> String {
    let chains: Vec<String> = CHAINS
        .iter()
        .map(|c| {
            let mut s = format!(
                "\tchain {} {{\n\t\ttype filter hook {} priority {}; policy accept;\n",
                c.name,
                c.hook.hook(),
                c.prio_text
            );
            for r in rules.iter().filter(|r| c.holds(r)) {
                s.push_str(&format!("\t\t{}\n", rule_text(r)));
            }
            s.push_str("\t}\n");
            s
        })
        .collect();
    format!("table {FAMILY} {TABLE} {{\n{}}}\n", chains.join("\n"))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::rules::node_cache_rules;

    fn rules() -> Vec<Rule> {
        let ips: Vec<IpAddr> = ["169.254.20.10", "10.96.0.10", "fd00::10"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        node_cache_rules(&ips, 53, 8080)
    }

    #[test]
    fn the_table_matches_the_golden_file() {
        let golden = include_str!("../../tests/golden/inet-node-local-dns.nft");
        assert_eq!(nft_table(&rules()), golden);
    }

    #[test]
    fn every_rule_lands_in_its_chain() {
        let text = nft_table(&rules());
        assert_eq!(text.matches(" notrack comment ").count(), 24);
        assert_eq!(text.matches(" accept comment ").count(), 12);
        assert!(text.contains(
            "ip6 saddr fd00::10 tcp sport 8080 notrack comment \"NodeLocal DNS Cache: skip conntrack\""
        ));
    }
}
