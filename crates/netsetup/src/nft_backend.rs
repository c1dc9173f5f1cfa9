//! The native nftables backend: one table of our own, `inet node-local-dns`, holding the same
//! 12 rules per local IP as the iptables backend (same comments), IPv4 and IPv6 side by side
//! (`ip daddr` / `ip6 daddr`).
//!
//! Owning the whole table makes every change one atomic `nft -f -` transaction: `add table`
//! (so the next line cannot fail), `delete table`, then the full definition. There is always
//! exactly one copy, and nothing of anyone else's is touched.
//!
//! Chain priorities:
//! - `raw-prerouting` / `raw-output` (the NOTRACK part) hook at `raw` (-300), where iptables'
//!   raw table sits: conntrack looks packets up at -200, and `notrack` only works before that.
//! - `filter-input` / `filter-output` (the ACCEPT part) hook at -120. kube-proxy's nftables
//!   mode (pkg/proxy/nftables/proxier.go, `nftablesBaseChains`) hooks its filter chains at
//!   `dstnat - 10` (-110), `filter-output-post-dnat` at `dstnat + 10` (-90) and its nat chains
//!   at `dstnat` (-100) / `srcnat` (100); -120 runs before every one of them. It is a number
//!   because nft (1.0.6) refuses `dstnat - 20` for a filter chain on the input hook.
//!
//! Unlike iptables, an nftables `accept` only ends its own base chain: a later chain in another
//! table can still drop the packet. What keeps kube-proxy out of the way is the `notrack`:
//! untracked packets skip the nat hooks (no DNAT of the kube-dns IP), and kube-proxy's filter
//! chains only jump on `ct state new`, which an untracked packet is not. The accept chains
//! mirror upstream's ACCEPT rules so both backends carry the same rule set.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::filter::{CheckReport, EnsureReport, FilterError, PacketFilter};
use crate::rule_parts::{parts, End, Proto, Target};
use crate::rules::{Rule, Table};

pub const FAMILY: &str = "inet";
pub const TABLE: &str = "node-local-dns";
const TOOL: &str = "nft";

/// One of our base chains, as `nft -j list` reports it.
struct ChainDef {
    name: &'static str,
    hook: &'static str,
    prio: i64,
    /// How `nft list` prints `prio`.
    prio_text: &'static str,
}

const PRIO_RAW: i64 = -300;
/// `dstnat - 20`: before kube-proxy's earliest chains (see the module comment).
const PRIO_ACCEPT: i64 = -120;

/// In the order they are created, which is the order `nft list` prints them.
const CHAINS: [ChainDef; 4] = [
    ChainDef {
        name: "raw-prerouting",
        hook: "prerouting",
        prio: PRIO_RAW,
        prio_text: "raw",
    },
    ChainDef {
        name: "raw-output",
        hook: "output",
        prio: PRIO_RAW,
        prio_text: "raw",
    },
    ChainDef {
        name: "filter-input",
        hook: "input",
        prio: PRIO_ACCEPT,
        prio_text: "-120",
    },
    ChainDef {
        name: "filter-output",
        hook: "output",
        prio: PRIO_ACCEPT,
        prio_text: "-120",
    },
];

/// One rule as nftables holds it; what `check` compares, ignoring order and handles.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct NftRule {
    chain: String,
    ip: IpAddr,
    end: End,
    proto: Proto,
    port: u16,
    target: Target,
    comment: String,
}

impl NftRule {
    fn from_rule(rule: &Rule) -> Result<Self, FilterError> {
        let not_ours = || FilterError::Command {
            tool: TOOL,
            rule: rule.to_string(),
            reason: "not a node-cache rule; cannot express it in nftables".to_string(),
        };
        let p = parts(rule).ok_or_else(not_ours)?;
        let chain = match (p.table, p.chain) {
            (Table::Raw, "PREROUTING") => "raw-prerouting",
            (Table::Raw, "OUTPUT") => "raw-output",
            (Table::Filter, "INPUT") => "filter-input",
            (Table::Filter, "OUTPUT") => "filter-output",
            _ => return Err(not_ours()),
        };
        Ok(NftRule {
            chain: chain.to_string(),
            ip: p.ip,
            end: p.end,
            proto: p.proto,
            port: p.port,
            target: p.target,
            comment: p.comment,
        })
    }

    /// The rule in nft syntax, as `nft list` prints it.
    fn text(&self) -> String {
        let family = if self.ip.is_ipv4() { "ip" } else { "ip6" };
        let (addr, port) = match self.end {
            End::Destination => ("daddr", "dport"),
            End::Source => ("saddr", "sport"),
        };
        let verdict = match self.target {
            Target::Notrack => "notrack",
            Target::Accept => "accept",
        };
        format!(
            "{family} {addr} {} {} {port} {} {verdict} comment \"{}\"",
            self.ip,
            self.proto.as_str(),
            self.port,
            self.comment
        )
    }
}

fn nft_rules(rules: &[Rule]) -> Result<Vec<NftRule>, FilterError> {
    rules.iter().map(NftRule::from_rule).collect()
}

fn render(rules: &[NftRule]) -> String {
    let chains: Vec<String> = CHAINS
        .iter()
        .map(|c| {
            let mut s = format!(
                "\tchain {} {{\n\t\ttype filter hook {} priority {}; policy accept;\n",
                c.name, c.hook, c.prio_text
            );
            for r in rules.iter().filter(|r| r.chain == c.name) {
                s.push_str(&format!("\t\t{}\n", r.text()));
            }
            s.push_str("\t}\n");
            s
        })
        .collect();
    format!("table {FAMILY} {TABLE} {{\n{}}}\n", chains.join("\n"))
}

/// Our table with `rules` in it, exactly as `nft list table inet node-local-dns` prints it.
pub fn nft_table(rules: &[Rule]) -> Result<String, FilterError> {
    Ok(render(&nft_rules(rules)?))
}

/// Two lines that delete our table whether or not it exists: `delete` alone fails on an
/// absent table, and `destroy` needs nft 1.0.8 / Linux 6.3.
fn delete_table_lines() -> String {
    format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
}

/// What is in our table, read from `nft -j list table`.
#[derive(Debug, Default)]
struct Listing {
    /// Chain name → whether it is defined as we define it (type, hook, priority, policy).
    chains: HashMap<String, bool>,
    /// Each rule, `None` when it is not shaped like one of ours.
    rules: Vec<(String, Option<NftRule>)>,
    /// Sets, maps and other objects: never ours.
    others: usize,
}

fn chain_is_ours(c: &Value) -> bool {
    let name = c["name"].as_str().unwrap_or_default();
    CHAINS.iter().any(|def| {
        def.name == name
            && c["type"] == "filter"
            && c["hook"] == def.hook
            && c["prio"].as_i64() == Some(def.prio)
            && c["policy"] == "accept"
    })
}

/// `match` of `payload` `protocol`.`field` == right; returns (protocol, field, right).
fn payload_match(e: &Value) -> Option<(&str, &str, &Value)> {
    let m = &e["match"];
    if m["op"] != "==" {
        return None;
    }
    let p = &m["left"]["payload"];
    Some((p["protocol"].as_str()?, p["field"].as_str()?, &m["right"]))
}

/// The three expressions of one of our rules: address match, port match, verdict.
fn parse_rule(chain: &str, r: &Value) -> Option<NftRule> {
    let [addr, port, verdict] = r["expr"].as_array()?.as_slice() else {
        return None;
    };
    let (family, addr_field, ip) = payload_match(addr)?;
    let ip: IpAddr = ip.as_str()?.parse().ok()?;
    if (family == "ip") != ip.is_ipv4() || !matches!(family, "ip" | "ip6") {
        return None;
    }
    let (proto, port_field, port) = payload_match(port)?;
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
    let target = if verdict.get("notrack").is_some() {
        Target::Notrack
    } else if verdict.get("accept").is_some() {
        Target::Accept
    } else {
        return None;
    };
    Some(NftRule {
        chain: chain.to_string(),
        ip,
        end,
        proto,
        port: u16::try_from(port.as_u64()?).ok()?,
        target,
        comment: r["comment"].as_str()?.to_string(),
    })
}

fn parse_listing(json: &str) -> Result<Listing, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let items = v["nftables"]
        .as_array()
        .ok_or("no \"nftables\" array in the output")?;
    let mut listing = Listing::default();
    for item in items {
        if let Some(c) = item.get("chain") {
            let name = c["name"].as_str().ok_or("a chain without a name")?;
            listing.chains.insert(name.to_string(), chain_is_ours(c));
        } else if let Some(r) = item.get("rule") {
            let chain = r["chain"].as_str().ok_or("a rule without a chain")?;
            listing
                .rules
                .push((chain.to_string(), parse_rule(chain, r)));
        } else if item.get("metainfo").is_none() && item.get("table").is_none() {
            listing.others += 1;
        }
    }
    Ok(listing)
}

/// Our expected rules against what the table holds. A rule counts as present only in a chain
/// defined as ours; everything else in the table is surplus.
fn compare(expected: &[NftRule], listing: &Listing) -> Comparison {
    let mut wanted: HashMap<&NftRule, usize> = HashMap::new();
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

struct Comparison {
    report: CheckReport,
    /// Every base chain of ours exists (an empty one holds no rule, so the report cannot tell).
    all_chains: bool,
}

impl Comparison {
    /// The table is exactly what `ensure` would write.
    fn exact(&self) -> bool {
        self.all_chains && self.report.missing == 0 && self.report.surplus == 0
    }
}

/// nftables through the `nft` command.
pub struct NftBackend {
    /// Only [`NftBackend::new`] makes one, after checking that `nft` runs.
    _private: (),
}

impl NftBackend {
    /// Fails when `nft` cannot be run.
    pub fn new() -> Result<Self, FilterError> {
        let out = Command::new(TOOL)
            .arg("--version")
            .output()
            .map_err(|e| unavailable(&e))?;
        if !out.status.success() {
            return Err(FilterError::Unavailable {
                tool: TOOL,
                reason: format!("nft --version: {}", status_text(&out)),
            });
        }
        Ok(Self { _private: () })
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<Output, FilterError> {
        let mut child = Command::new(TOOL)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| unavailable(&e))?;
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(input.as_bytes())
                .map_err(|e| unavailable(&e))?;
        }
        child.wait_with_output().map_err(|e| unavailable(&e))
    }

    /// Applies `batch` as one transaction.
    fn apply(&self, what: &str, batch: &str) -> Result<(), FilterError> {
        let out = self.run(&["-f", "-"], Some(batch))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(FilterError::Command {
                tool: TOOL,
                rule: format!("-f - ({what})"),
                reason: status_text(&out),
            })
        }
    }

    /// Our table's contents, or `None` when it does not exist. A failed listing is told apart
    /// from an absent table by listing the family's tables, not by reading nft's message.
    fn listing(&self) -> Result<Option<Listing>, FilterError> {
        let out = self.run(&["-j", "list", "table", FAMILY, TABLE], None)?;
        let failed = |out: &Output, what: &str| FilterError::Command {
            tool: TOOL,
            rule: what.to_string(),
            reason: status_text(out),
        };
        let unexpected = |what: &str, e: String| FilterError::Command {
            tool: TOOL,
            rule: what.to_string(),
            reason: format!("unexpected output: {e}"),
        };
        let list_table = format!("-j list table {FAMILY} {TABLE}");
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            return parse_listing(&text)
                .map(Some)
                .map_err(|e| unexpected(&list_table, e));
        }
        let tables = self.run(&["-j", "list", "tables", FAMILY], None)?;
        if !tables.status.success() {
            return Err(failed(&out, &list_table));
        }
        let list_tables = format!("-j list tables {FAMILY}");
        let names = table_names(&String::from_utf8_lossy(&tables.stdout))
            .map_err(|e| unexpected(&list_tables, e))?;
        if names.iter().any(|(f, n)| f == FAMILY && n == TABLE) {
            Err(failed(&out, &list_table))
        } else {
            Ok(None)
        }
    }

    fn compare_with_table(&self, expected: &[NftRule]) -> Result<Comparison, FilterError> {
        Ok(match self.listing()? {
            Some(listing) => compare(expected, &listing),
            None => Comparison {
                report: CheckReport {
                    missing: expected.len(),
                    ..CheckReport::default()
                },
                all_chains: false,
            },
        })
    }
}

/// (family, name) of each table in `nft -j list tables` output.
pub(crate) fn table_names(json: &str) -> Result<Vec<(String, String)>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let items = v["nftables"]
        .as_array()
        .ok_or("no \"nftables\" array in the output")?;
    Ok(items
        .iter()
        .filter_map(|i| {
            let t = i.get("table")?;
            Some((
                t["family"].as_str()?.to_string(),
                t["name"].as_str()?.to_string(),
            ))
        })
        .collect())
}

fn unavailable(e: &std::io::Error) -> FilterError {
    FilterError::Unavailable {
        tool: TOOL,
        reason: e.to_string(),
    }
}

fn status_text(out: &Output) -> String {
    format!(
        "{} ({})",
        String::from_utf8_lossy(&out.stderr).trim(),
        out.status
    )
}

impl PacketFilter for NftBackend {
    fn name(&self) -> &'static str {
        TOOL
    }

    /// One listing decides; anything short of exactly our rules replaces the whole table in
    /// one transaction. `inserted` counts the rules that were missing.
    fn ensure(&self, rules: &[Rule]) -> Result<EnsureReport, FilterError> {
        let expected = nft_rules(rules)?;
        let missing = match self.compare_with_table(&expected) {
            Ok(found) if found.exact() => {
                return Ok(EnsureReport {
                    checked: rules.len(),
                    inserted: 0,
                })
            }
            Ok(found) => found.report.missing,
            // Replacing the table is right whatever it holds; the apply reports a real failure.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read our nft table; replacing it");
                expected.len()
            }
        };
        let batch = format!("{}{}", delete_table_lines(), render(&expected));
        self.apply(&format!("replace table {FAMILY} {TABLE}"), &batch)?;
        Ok(EnsureReport {
            checked: rules.len(),
            inserted: missing,
        })
    }

    fn check(&self, rules: &[Rule]) -> Result<CheckReport, FilterError> {
        Ok(self.compare_with_table(&nft_rules(rules)?)?.report)
    }

    /// Deletes the whole table (whatever `rules` says: only we write to it) and returns how
    /// many rules it held. An absent table is nothing to do.
    fn remove(&self, _rules: &[Rule]) -> Result<usize, Vec<FilterError>> {
        let mut errors = Vec::new();
        let held = match self.listing() {
            Ok(None) => return Ok(0),
            Ok(Some(listing)) => listing.rules.len(),
            // Delete anyway: teardown keeps going and reports every error.
            Err(e) => {
                errors.push(e);
                0
            }
        };
        if let Err(e) = self.apply(
            &format!("delete table {FAMILY} {TABLE}"),
            &delete_table_lines(),
        ) {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(held)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
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
        let golden = include_str!("../tests/golden/inet-node-local-dns.nft");
        assert_eq!(nft_table(&rules()).unwrap(), golden);
    }

    #[test]
    fn every_rule_lands_in_its_chain() {
        let text = nft_table(&rules()).unwrap();
        assert_eq!(text.matches(" notrack comment ").count(), 24);
        assert_eq!(text.matches(" accept comment ").count(), 12);
        assert!(text.contains(
            "ip6 saddr fd00::10 tcp sport 8080 notrack comment \"NodeLocal DNS Cache: skip conntrack\""
        ));
    }

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
        let found = compare(
            &nft_rules(&rules).unwrap(),
            &parse_listing(LISTING).unwrap(),
        );
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
        let expected = nft_rules(&rules[..1]).unwrap();
        let mut listing = parse_listing(LISTING).unwrap();
        listing.rules.truncate(1);
        listing.rules.push(listing.rules[0].clone());
        listing.chains.retain(|name, _| name == "raw-prerouting");
        let found = compare(&expected, &listing);
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
}
