//! The iptables/ip6tables backend: the iptables binaries run directly (no shell, no parsing
//! of a command line), one argument vector per rule.
//!
//! Every call passes a bounded `-w` so a stuck xtables lock becomes an `iptables_lock` error
//! instead of a hung agent. Exit statuses, not stderr text, tell the outcome: `-C` gives 1 for
//! "no such rule", and iptables gives 4 (RESOURCE_PROBLEM) when it gave up waiting for the lock.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::filter::{all_removals, CheckReport, EnsureReport, FilterError, PacketFilter};
use crate::rules::{Rule, COMMENT_ALLOW_TRAFFIC, COMMENT_SKIP_CONNTRACK};

mod position;

const LOCK_WAIT_SECS: u32 = 5;
const EXIT_RULE_ABSENT: i32 = 1;
const EXIT_RESOURCE_PROBLEM: i32 = 4;

pub struct IptablesBackend {
    /// `iptables`, `ip6tables`, `iptables-legacy`, ...; its `-save` and `-restore`
    /// companions are used alongside.
    cmd: &'static str,
}

enum Check {
    Present,
    Absent,
}

impl IptablesBackend {
    pub fn new(ipv6: bool) -> Result<Self, FilterError> {
        Self::with_command(if ipv6 { "ip6tables" } else { "iptables" })
    }

    /// The same backend through a specific binary (`iptables-legacy`, `ip6tables-nft`, ...).
    /// Only `cmd` itself has to exist (a node may have `iptables-legacy` and no `iptables`);
    /// every iptables that has the two variants has `-C`.
    pub fn with_command(cmd: &'static str) -> Result<Self, FilterError> {
        let runs =
            Command::new(cmd)
                .arg("--version")
                .output()
                .map_err(|e| FilterError::Unavailable {
                    tool: cmd,
                    reason: e.to_string(),
                })?;
        if !runs.status.success() {
            return Err(FilterError::Unavailable {
                tool: cmd,
                reason: format!("--version exited with {}", runs.status),
            });
        }
        Ok(Self { cmd })
    }

    /// `CMD -t TABLE OP CHAIN <rule> -w 5`: the arguments upstream passes, quoting aside.
    fn args(op: &str, rule: &Rule) -> Vec<String> {
        let mut args: Vec<String> = ["-t", rule.table().as_str(), op, rule.chain().as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(rule.iptables_args());
        args.extend(["-w".to_string(), LOCK_WAIT_SECS.to_string()]);
        args
    }

    fn run(&self, op: &str, rule: &Rule) -> Result<Output, FilterError> {
        Command::new(self.cmd)
            .args(Self::args(op, rule))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| FilterError::Unavailable {
                tool: self.cmd,
                reason: e.to_string(),
            })
    }

    fn failure(&self, rule: &impl std::fmt::Display, out: &Output) -> FilterError {
        if out.status.code() == Some(EXIT_RESOURCE_PROBLEM) {
            FilterError::Lock {
                tool: self.cmd,
                wait_secs: LOCK_WAIT_SECS,
                rule: rule.to_string(),
            }
        } else {
            FilterError::Command {
                tool: self.cmd,
                rule: rule.to_string(),
                reason: format!(
                    "{} ({})",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    out.status
                ),
            }
        }
    }

    fn check_rule(&self, rule: &Rule) -> Result<Check, FilterError> {
        let out = self.run("-C", rule)?;
        match out.status.code() {
            Some(0) => Ok(Check::Present),
            Some(EXIT_RULE_ABSENT) => Ok(Check::Absent),
            _ => Err(self.failure(rule, &out)),
        }
    }

    /// Applies `op` to `rules` in one `iptables-restore --noflush` call: `Op::Insert` gives the
    /// same result as one `-I CHAIN 1` per rule in this order (so the same `iptables-save`
    /// output), in one transaction instead of one process per rule.
    fn batch(&self, op: Op, rules: &[&Rule]) -> Result<(), FilterError> {
        if rules.is_empty() {
            return Ok(());
        }
        let mut input = String::new();
        for table in tables_of(rules.iter().copied()) {
            input.push_str(&format!("*{table}\n"));
            for rule in rules.iter().filter(|r| r.table().as_str() == table) {
                let line = match op {
                    Op::Insert => format!("-I {} 1 {}\n", rule.chain().as_str(), rule.spec()),
                    Op::Delete => format!("-D {} {}\n", rule.chain().as_str(), rule.spec()),
                };
                input.push_str(&line);
            }
            input.push_str("COMMIT\n");
        }
        let what = format!(
            "{}-restore --noflush ({op:?} {} rules)",
            self.cmd,
            rules.len()
        );
        self.restore(&input, &what)
    }

    /// Feeds `input` to one `iptables-restore --noflush` (one transaction per table in it);
    /// `what` names the call in an error.
    fn restore(&self, input: &str, what: &str) -> Result<(), FilterError> {
        let restore = format!("{}-restore", self.cmd);
        let unavailable = |e: std::io::Error| FilterError::Unavailable {
            tool: self.cmd,
            reason: format!("{restore}: {e}"),
        };
        let mut child = Command::new(&restore)
            .args(["--noflush", "-w", &LOCK_WAIT_SECS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(unavailable)?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .map_err(unavailable)?;
        let out = child.wait_with_output().map_err(unavailable)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure(&what, &out))
        }
    }

    /// `-D` until iptables says there is no such rule: every copy goes, one call per copy
    /// plus one.
    fn remove_all_copies(&self, rule: &Rule) -> Result<usize, FilterError> {
        let mut removed = 0;
        loop {
            let out = self.run("-D", rule)?;
            match out.status.code() {
                Some(0) => removed += 1,
                Some(EXIT_RULE_ABSENT) => return Ok(removed),
                _ => return Err(self.failure(rule, &out)),
            }
        }
    }

    /// The `iptables-save` lines of the tables `rules` live in, duplicates kept. One listing
    /// per table, all started before any is waited for (they only read).
    fn saved_lines(&self, rules: &[Rule]) -> Result<Vec<String>, FilterError> {
        let save = format!("{}-save", self.cmd);
        let unavailable = |reason: String| FilterError::Unavailable {
            tool: self.cmd,
            reason,
        };
        let mut listings = Vec::new();
        for table in tables_of(rules.iter()) {
            let spawned = Command::new(&save)
                .args(["-t", table])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            match spawned {
                Ok(child) => listings.push((table, child)),
                Err(e) => {
                    // No listing is left unreaped.
                    for (_, child) in listings {
                        child.wait_with_output().ok();
                    }
                    return Err(unavailable(format!("{save}: {e}")));
                }
            }
        }
        let outputs: Vec<_> = listings
            .into_iter()
            .map(|(table, child)| (table, child.wait_with_output()))
            .collect();
        let mut lines = Vec::new();
        for (table, out) in outputs {
            let out = out.map_err(|e| unavailable(format!("{save}: {e}")))?;
            if !out.status.success() {
                return Err(unavailable(format!(
                    "{save} -t {table}: {} ({})",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    out.status
                )));
            }
            lines.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_string),
            );
        }
        Ok(lines)
    }
}

impl IptablesBackend {
    /// Returns how many rules the batch deleted and whether any line of ours is left.
    fn remove_batch(&self, rules: &[Rule]) -> Result<(usize, bool), FilterError> {
        let saved = self.saved_lines(rules)?;
        let copies: Vec<&Rule> = rules
            .iter()
            .flat_map(|r| {
                let line = r.saved_form();
                let n = saved.iter().filter(|l| **l == line).count();
                std::iter::repeat_n(r, n)
            })
            .collect();
        self.batch(Op::Delete, &copies)?;
        let left = self.saved_lines(rules)?.iter().any(|l| is_ours(l));
        Ok((copies.len(), left))
    }
}

/// How much checking an `ensure` pass needs, judged from one `iptables-save` per table.
/// Each table the rules live in, once.
fn tables_of<'a>(rules: impl Iterator<Item = &'a Rule>) -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = rules.map(|r| r.table().as_str()).collect();
    tables.sort_unstable();
    tables.dedup();
    tables
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Insert,
    Delete,
}

fn is_ours(saved_line: &str) -> bool {
    saved_line.contains(COMMENT_SKIP_CONNTRACK) || saved_line.contains(COMMENT_ALLOW_TRAFFIC)
}

enum Plan {
    /// Every rule's saved form is there: nothing to do.
    AllPresent,
    /// None of our comments appear anywhere: nothing of ours exists, insert without checks.
    NoneOfOurs,
    /// Anything else: check each rule and insert the missing ones.
    CheckEach,
}

fn plan(rules: &[Rule], saved: &[String]) -> Plan {
    let saved_set: HashSet<&str> = saved.iter().map(String::as_str).collect();
    if rules
        .iter()
        .all(|r| saved_set.contains(r.saved_form().as_str()))
    {
        Plan::AllPresent
    } else if !saved.iter().any(|l| is_ours(l)) {
        Plan::NoneOfOurs
    } else {
        Plan::CheckEach
    }
}

impl PacketFilter for IptablesBackend {
    fn name(&self) -> &'static str {
        self.cmd
    }

    /// Two `iptables-save` calls decide the common cases (all there; nothing of ours there);
    /// only a partial set falls back to upstream's per-rule check-then-insert.
    fn ensure(&self, rules: &[Rule]) -> Result<EnsureReport, FilterError> {
        let mut report = EnsureReport {
            checked: rules.len(),
            inserted: 0,
        };
        let missing: Vec<&Rule> = match plan(rules, &self.saved_lines(rules)?) {
            Plan::AllPresent => return Ok(report),
            Plan::NoneOfOurs => rules.iter().collect(),
            Plan::CheckEach => {
                let mut missing = Vec::new();
                for rule in rules {
                    if let Check::Absent = self.check_rule(rule)? {
                        missing.push(rule);
                    }
                }
                missing
            }
        };
        self.batch(Op::Insert, &missing)?;
        report.inserted = missing.len();
        Ok(report)
    }

    /// One `iptables-save` per table; a rule not printed as predicted is asked about with `-C`
    /// only when something of ours is there at all (the same reasoning as `ensure`'s plan).
    fn check(&self, rules: &[Rule]) -> Result<CheckReport, FilterError> {
        let saved = self.saved_lines(rules)?;
        let any_ours = saved.iter().any(|l| is_ours(l));
        let mut report = CheckReport::default();
        for rule in rules {
            let line = rule.saved_form();
            let copies = saved.iter().filter(|l| **l == line).count();
            let present = if copies > 0 {
                report.surplus += copies - 1;
                true
            } else {
                any_ours && matches!(self.check_rule(rule)?, Check::Present)
            };
            if present {
                report.present += 1;
            } else {
                report.missing += 1;
            }
        }
        Ok(report)
    }

    fn displaced(&self, rules: &[Rule]) -> Result<bool, FilterError> {
        self.rules_displaced(rules)
    }

    fn put_first(&self, rules: &[Rule]) -> Result<usize, FilterError> {
        self.move_rules_first(rules)
    }

    /// One batch deletes every copy `iptables-save` shows; if anything carrying our comments is
    /// still there afterwards (printed differently than predicted, say), each rule is deleted
    /// until iptables reports it absent.
    fn remove(&self, rules: &[Rule]) -> Result<usize, Vec<FilterError>> {
        let batch = match self.remove_batch(rules) {
            Ok((n, false)) => return Ok(n),
            Ok((n, true)) => Ok(n),
            Err(e) => Err(vec![e]),
        };
        let one_by_one = rules
            .iter()
            .map(|rule| self.remove_all_copies(rule).map_err(|e| vec![e]));
        all_removals(std::iter::once(batch).chain(one_by_one))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;
    use crate::rules::node_cache_rules;

    fn backend() -> IptablesBackend {
        IptablesBackend { cmd: "iptables" }
    }

    fn exited(code: i32, stderr: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn exit_status_4_is_a_lock_error() {
        let rule = &node_cache_rules(&["169.254.20.10".parse().unwrap()], 53, 8080)[0];
        let e = backend().failure(
            rule,
            &exited(4, "Another app is currently holding the xtables lock."),
        );
        assert!(matches!(e, FilterError::Lock { .. }), "{e:?}");
        assert!(
            e.to_string().contains("xtables lock still held after 5s"),
            "{e}"
        );
        let e = backend().failure(rule, &exited(2, "Bad argument"));
        assert!(matches!(e, FilterError::Command { .. }), "{e:?}");
        assert!(e.to_string().contains("Bad argument"), "{e}");
    }

    #[test]
    fn the_plan_never_skips_a_check_it_needs() {
        let rules = node_cache_rules(&["169.254.20.10".parse().unwrap()], 53, 8080);
        let all: Vec<String> = rules.iter().map(Rule::saved_form).collect();
        assert!(matches!(plan(&rules, &all), Plan::AllPresent));
        assert!(matches!(plan(&rules, &[]), Plan::NoneOfOurs));
        // One of ours missing, or ours printed differently than predicted: check each.
        let mut partial = all.clone();
        partial.remove(3);
        assert!(matches!(plan(&rules, &partial), Plan::CheckEach));
        let respelled: Vec<String> = all.iter().map(|l| l.replace(" -m udp", "")).collect();
        assert!(matches!(plan(&rules, &respelled), Plan::CheckEach));
    }

    #[test]
    fn each_rule_is_one_argument_vector_with_a_bounded_lock_wait() {
        let rule = &node_cache_rules(&["169.254.20.10".parse().unwrap()], 53, 8080)[0];
        let args = IptablesBackend::args("-C", rule);
        assert_eq!(
            args,
            [
                "-t",
                "raw",
                "-C",
                "PREROUTING",
                "-p",
                "tcp",
                "-d",
                "169.254.20.10",
                "--dport",
                "53",
                "-j",
                "NOTRACK",
                "-m",
                "comment",
                "--comment",
                "NodeLocal DNS Cache: skip conntrack",
                "-w",
                "5"
            ]
        );
    }
}
