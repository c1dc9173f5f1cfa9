//! What `nft -j list` reports of our table, read back into [`Rule`]s and compared with the
//! rules we expect.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::table::CHAINS;
use crate::filter::CheckReport;
use crate::rules::{End, Proto, Rule, Target};

/// `nft -j` output: the objects of what was listed. Objects we do not know (sets, maps, a
/// statement of someone else's) are read as `Unknown` rather than failing the listing.
#[derive(Deserialize)]
struct NftJson {
    nftables: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Item {
    Known(KnownItem),
    Unknown(IgnoredAny),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum KnownItem {
    Metainfo(IgnoredAny),
    Table(TableJson),
    Chain(ChainJson),
    Rule(RuleJson),
}

#[derive(Deserialize)]
struct TableJson {
    family: String,
    name: String,
}

#[derive(Deserialize)]
struct ChainJson {
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    hook: Option<String>,
    prio: Option<i64>,
    policy: Option<String>,
}

#[derive(Deserialize)]
struct RuleJson {
    chain: String,
    comment: Option<String>,
    expr: Vec<Statement>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Statement {
    Known(KnownStatement),
    Unknown(IgnoredAny),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum KnownStatement {
    Match(Match),
    Notrack(IgnoredAny),
    Accept(IgnoredAny),
}

/// `protocol.field == right`, e.g. `ip daddr 10.0.0.1`, `tcp dport 53`.
#[derive(Deserialize)]
struct Match {
    op: String,
    left: PayloadExpr,
    right: Operand,
}

#[derive(Deserialize)]
struct PayloadExpr {
    payload: Payload,
}

#[derive(Deserialize)]
struct Payload {
    protocol: String,
    field: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Operand {
    Ip(IpAddr),
    Port(u16),
    Other(IgnoredAny),
}

fn parse(json: &str) -> Result<Vec<Item>, String> {
    let out: NftJson = serde_json::from_str(json).map_err(|e| format!("not nft JSON: {e}"))?;
    Ok(out.nftables)
}

/// (family, name) of each table in `nft -j list tables` output.
pub(crate) fn table_names(json: &str) -> Result<Vec<(String, String)>, String> {
    Ok(parse(json)?
        .into_iter()
        .filter_map(|i| match i {
            Item::Known(KnownItem::Table(t)) => Some((t.family, t.name)),
            _ => None,
        })
        .collect())
}

/// What is in our table, read from `nft -j list table`.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Chain name → whether it is defined as we define it (type, hook, priority, policy).
    chains: HashMap<String, bool>,
    /// Each rule, `None` when it is not shaped like one of ours.
    pub(super) rules: Vec<(String, Option<Rule>)>,
    /// Sets, maps and other objects: never ours.
    others: usize,
}

fn chain_is_ours(c: &ChainJson) -> bool {
    CHAINS.iter().any(|def| {
        def.name == c.name
            && c.kind.as_deref() == Some("filter")
            && c.hook.as_deref() == Some(def.hook.hook())
            && c.prio == Some(def.prio)
            && c.policy.as_deref() == Some("accept")
    })
}

/// `protocol.field == right` of a statement.
fn payload_match(s: &Statement) -> Option<(&str, &str, &Operand)> {
    match s {
        Statement::Known(KnownStatement::Match(m)) if m.op == "==" => Some((
            m.left.payload.protocol.as_str(),
            m.left.payload.field.as_str(),
            &m.right,
        )),
        _ => None,
    }
}

/// The rule of ours `r` is, if it is one: address match, port match, verdict, our comment, in
/// the chain where we put such a rule.
fn our_rule(r: &RuleJson) -> Option<Rule> {
    let [addr, port, verdict] = r.expr.as_slice() else {
        return None;
    };
    let (family, addr_field, Operand::Ip(ip)) = payload_match(addr)? else {
        return None;
    };
    if (family == "ip") != ip.is_ipv4() || !matches!(family, "ip" | "ip6") {
        return None;
    }
    let (proto, port_field, &Operand::Port(port)) = payload_match(port)? else {
        return None;
    };
    let end = match (addr_field, port_field) {
        ("daddr", "dport") => End::Destination,
        ("saddr", "sport") => End::Source,
        _ => return None,
    };
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    let target = match verdict {
        Statement::Known(KnownStatement::Notrack(_)) => Target::Notrack,
        Statement::Known(KnownStatement::Accept(_)) => Target::Accept,
        _ => return None,
    };
    let chain = CHAINS.iter().find(|c| c.name == r.chain)?;
    let rule = Rule {
        chain: chain.hook,
        proto,
        end,
        ip: *ip,
        port,
        target,
    };
    (chain.holds(&rule) && r.comment.as_deref() == Some(rule.comment())).then_some(rule)
}

pub(super) fn parse_listing(json: &str) -> Result<Listing, String> {
    let mut listing = Listing::default();
    for item in parse(json)? {
        match item {
            Item::Known(KnownItem::Chain(c)) => {
                let ours = chain_is_ours(&c);
                listing.chains.insert(c.name, ours);
            }
            Item::Known(KnownItem::Rule(r)) => {
                let rule = our_rule(&r);
                listing.rules.push((r.chain, rule));
            }
            Item::Known(KnownItem::Metainfo(_) | KnownItem::Table(_)) => {}
            Item::Unknown(_) => listing.others += 1,
        }
    }
    Ok(listing)
}

/// Our expected rules against what the table holds. A rule counts as present only in a chain
/// defined as ours; everything else in the table is surplus.
pub(super) fn compare(expected: &[Rule], listing: &Listing) -> Comparison {
    let mut wanted: HashMap<&Rule, usize> = HashMap::new();
    for r in expected {
        *wanted.entry(r).or_default() += 1;
    }
    let mut report = CheckReport {
        surplus: listing.others,
        ..CheckReport::default()
    };
    for (chain, rule) in &listing.rules {
        let in_our_chain = listing.chains.get(chain).copied().unwrap_or(false);
        match rule.as_ref().and_then(|r| wanted.get_mut(r)) {
            Some(left) if in_our_chain && *left > 0 => {
                *left -= 1;
                report.present += 1;
            }
            _ => report.surplus += 1,
        }
    }
    report.surplus += listing
        .chains
        .iter()
        .filter(|(name, ours)| !**ours || !CHAINS.iter().any(|c| c.name == name.as_str()))
        .count();
    report.missing = expected.len() - report.present;
    Comparison {
        report,
        all_chains: CHAINS.iter().all(|c| listing.chains.contains_key(c.name)),
    }
}

pub(super) struct Comparison {
    pub(super) report: CheckReport,
    /// Every base chain of ours exists (an empty one holds no rule, so the report cannot tell).
    pub(super) all_chains: bool,
}

impl Comparison {
    /// The table is exactly what `ensure` would write.
    pub(super) fn exact(&self) -> bool {
        self.all_chains && self.report.missing == 0 && self.report.surplus == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::node_cache_rules;

    /// What `nft -j list table` printed for one rule of ours, one foreign rule, our chain and
    /// one with the wrong priority.
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "inet", "name": "node-local-dns", "handle": 2}},
      {"chain": {"family": "inet", "table": "node-local-dns", "name": "raw-prerouting", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}},
      {"chain": {"family": "inet", "table": "node-local-dns", "name": "filter-input", "handle": 2, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
      {"rule": {"family": "inet", "table": "node-local-dns", "chain": "raw-prerouting", "handle": 4, "comment": "NodeLocal DNS Cache: skip conntrack", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "169.254.20.10"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 53}}, {"notrack": null}]}},
      {"rule": {"family": "inet", "table": "node-local-dns", "chain": "raw-prerouting", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"accept": null}]}},
      {"rule": {"family": "inet", "table": "node-local-dns", "chain": "filter-input", "handle": 6, "comment": "NodeLocal DNS Cache: allow DNS traffic", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "169.254.20.10"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 53}}, {"accept": null}]}}
    ]}"#;

    #[test]
    fn check_counts_only_our_rules_in_our_chains() {
        let rules = node_cache_rules(&["169.254.20.10".parse().unwrap()], 53, 8080);
        let found = compare(&rules, &parse_listing(LISTING).unwrap());
        // Present: the raw-prerouting tcp rule. Surplus: the foreign rule, our accept rule in a
        // chain at the wrong priority, and that chain itself.
        assert_eq!(
            found.report,
            CheckReport {
                present: 1,
                missing: 11,
                surplus: 3
            }
        );
        assert!(!found.all_chains);
    }

    #[test]
    fn a_duplicate_is_surplus_not_present_twice() {
        let rules = node_cache_rules(&["169.254.20.10".parse().unwrap()], 53, 8080);
        let expected = &rules[..1];
        let mut listing = parse_listing(LISTING).unwrap();
        listing.rules.truncate(1);
        listing.rules.push(listing.rules[0].clone());
        listing.chains.retain(|name, _| name == "raw-prerouting");
        let found = compare(expected, &listing);
        assert_eq!(
            found.report,
            CheckReport {
                present: 1,
                missing: 0,
                surplus: 1
            }
        );
        assert!(!found.exact(), "three of our chains are absent");
    }

    #[test]
    fn table_names_reads_the_family_and_name() {
        let json = r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "kube-proxy", "handle": 1}}]}"#;
        assert_eq!(
            table_names(json).unwrap(),
            vec![("ip".to_string(), "kube-proxy".to_string())]
        );
        assert!(table_names("Error: nope").is_err());
    }

    #[test]
    fn what_we_cannot_read_is_someone_elses_not_an_error() {
        let json = r#"{"nftables": [{"metainfo": {}},
          {"chain": {"family": "inet", "table": "node-local-dns", "name": "raw-output", "handle": 1, "type": "filter", "hook": "output", "prio": -300, "policy": "accept"}},
          {"set": {"family": "inet", "name": "s", "table": "node-local-dns", "type": "ipv4_addr", "handle": 3}},
          {"rule": {"family": "inet", "table": "node-local-dns", "chain": "raw-output", "handle": 4, "comment": "NodeLocal DNS Cache: skip conntrack", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "169.254.20.10"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "sport"}}, "right": 53}}, {"counter": {"packets": 0, "bytes": 0}}, {"notrack": null}]}},
          {"rule": {"family": "inet", "table": "node-local-dns", "chain": "raw-output", "handle": 5, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}}, {"xt": null}]}}
        ]}"#;
        let listing = parse_listing(json).unwrap();
        assert_eq!(listing.others, 1, "the set");
        assert!(listing.rules.iter().all(|(_, r)| r.is_none()));
        let rules = node_cache_rules(&["169.254.20.10".parse().unwrap()], 53, 8080);
        let found = compare(&rules, &listing);
        assert_eq!((found.report.present, found.report.surplus), (0, 3));
        assert!(parse_listing("Error: nope").is_err());
    }
}
