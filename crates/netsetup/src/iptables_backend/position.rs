//! Our rules first in their chains. A rule inserted above ours (a security agent's raw
//! `ACCEPT`, a CNI's jump at position 1) runs first and can end the packet's walk of the
//! chain before our NOTRACK, bringing back the conntrack races the addon exists to avoid;
//! presence checks (`-C`, the saved forms) do not see it. `iptables-save` lists each chain in
//! evaluation order, so one listing per table tells whether anything foreign comes first.
//!
//! The repair is one `iptables-restore --noflush` transaction per table: every copy of our
//! rules deleted and each inserted again at position 1 in the order `ensure` uses, so the
//! table reads byte for byte as upstream's after a fresh start, with no instant where a rule
//! is missing.

use std::collections::{HashMap, HashSet};

use super::{tables_of, IptablesBackend};
use crate::filter::FilterError;
use crate::rules::Rule;

/// The tables (`raw`, `filter`) where, in a chain holding our rules, a line that is not one of
/// `rules` comes before one that is. Lines of ours that `rules` does not name (printed
/// differently than predicted, or another version's) count as neither: they never cause a
/// move that could not end it.
pub(crate) fn displaced_tables(saved: &[String], rules: &[Rule]) -> Vec<&'static str> {
    let ours: HashMap<(&str, &str), HashSet<String>> =
        rules.iter().fold(HashMap::new(), |mut m, r| {
            m.entry((r.table().as_str(), r.chain().as_str()))
                .or_default()
                .insert(r.saved_form());
            m
        });
    let mut table = "";
    let mut foreign_seen: HashSet<&str> = HashSet::new();
    let mut displaced = Vec::new();
    for line in saved {
        if let Some(name) = line.strip_prefix('*') {
            table = tables_of(rules.iter())
                .into_iter()
                .find(|t| *t == name)
                .unwrap_or("");
            foreign_seen.clear();
            continue;
        }
        let Some(chain) = line
            .strip_prefix("-A ")
            .and_then(|rest| rest.split(' ').next())
        else {
            continue;
        };
        let Some(saved_forms) = ours.get(&(table, chain)) else {
            continue;
        };
        if saved_forms.contains(line.as_str()) {
            if foreign_seen.contains(chain) && !displaced.contains(&table) {
                displaced.push(table);
            }
        } else if !super::is_ours(line) {
            foreign_seen.insert(chain);
        }
    }
    displaced
}

/// The `iptables-restore --noflush` input that puts `rules` of `table` back in front: every
/// copy `saved` shows deleted, then each inserted at 1 in `rules`' order (as `ensure` does).
pub(crate) fn restore_input(saved: &[String], rules: &[Rule], table: &str) -> String {
    let mut input = format!("*{table}\n");
    let of_table: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.table().as_str() == table)
        .collect();
    for rule in &of_table {
        let line = rule.saved_form();
        for _ in saved.iter().filter(|l| **l == line) {
            input.push_str(&format!("-D {} {}\n", rule.chain().as_str(), rule.spec()));
        }
    }
    for rule in &of_table {
        input.push_str(&format!("-I {} 1 {}\n", rule.chain().as_str(), rule.spec()));
    }
    input.push_str("COMMIT\n");
    input
}

impl IptablesBackend {
    /// Whether a foreign line is above one of ours in any chain we use.
    pub(super) fn rules_displaced(&self, rules: &[Rule]) -> Result<bool, FilterError> {
        Ok(!displaced_tables(&self.saved_lines(rules)?, rules).is_empty())
    }

    /// Puts our rules back in front where something foreign got above them; returns how many
    /// tables were rewritten (0: already first).
    pub(super) fn move_rules_first(&self, rules: &[Rule]) -> Result<usize, FilterError> {
        let saved = self.saved_lines(rules)?;
        let tables = displaced_tables(&saved, rules);
        for table in &tables {
            let what = format!("{}-restore --noflush (our {table} rules first)", self.cmd);
            self.restore(&restore_input(&saved, rules, table), &what)?;
        }
        Ok(tables.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::node_cache_rules;

    fn rules() -> Vec<Rule> {
        node_cache_rules(&["169.254.20.10".parse().unwrap()], 53, 8080)
    }

    /// What `iptables-save -t raw` and `-t filter` print after our `ensure` on empty tables.
    fn fresh(rules: &[Rule]) -> Vec<String> {
        let mut lines = Vec::new();
        for table in ["raw", "filter"] {
            lines.push(format!("*{table}"));
            lines.push(":PREROUTING ACCEPT [0:0]".into());
            // -I 1 in order: the last inserted is first.
            lines.extend(
                rules
                    .iter()
                    .rev()
                    .filter(|r| r.table().as_str() == table)
                    .map(Rule::saved_form),
            );
            lines.push("COMMIT".into());
        }
        lines
    }

    #[test]
    fn ours_first_is_not_displaced_whatever_follows() {
        let rules = rules();
        let mut saved = fresh(&rules);
        let at = saved.iter().position(|l| l == "COMMIT").unwrap();
        saved.insert(at, "-A PREROUTING -j ACCEPT".into());
        saved.insert(at, "-A OUTPUT -j CNI-OUTPUT".into());
        assert!(displaced_tables(&saved, &rules).is_empty());
    }

    #[test]
    fn a_foreign_line_above_ours_displaces_that_table_only() {
        let rules = rules();
        let mut saved = fresh(&rules);
        saved.insert(2, "-A PREROUTING -j ACCEPT".into());
        assert_eq!(displaced_tables(&saved, &rules), ["raw"]);
        let filter_at = saved.iter().position(|l| l == "*filter").unwrap();
        saved.insert(filter_at + 2, "-A INPUT -j KUBE-FIREWALL".into());
        assert_eq!(displaced_tables(&saved, &rules), ["raw", "filter"]);
    }

    #[test]
    fn a_foreign_line_in_a_chain_we_do_not_use_is_ignored() {
        let rules = rules();
        let mut saved = fresh(&rules);
        let filter_at = saved.iter().position(|l| l == "*filter").unwrap();
        saved.insert(filter_at + 2, "-A FORWARD -j DROP".into());
        assert!(displaced_tables(&saved, &rules).is_empty());
    }

    #[test]
    fn the_repair_deletes_every_copy_and_inserts_in_ensure_order() {
        let rules = rules();
        let mut saved = fresh(&rules);
        saved.insert(2, "-A PREROUTING -j ACCEPT".into());
        let input = restore_input(&saved, &rules, "raw");
        let raw: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.table() == crate::Table::Raw)
            .collect();
        let lines: Vec<&str> = input.lines().collect();
        assert_eq!(lines[0], "*raw");
        assert_eq!(lines.len(), 2 + 2 * raw.len());
        assert_eq!(
            lines[1 + raw.len()],
            format!("-I {} 1 {}", raw[0].chain().as_str(), raw[0].spec())
        );
        assert_eq!(*lines.last().unwrap(), "COMMIT");
    }
}
