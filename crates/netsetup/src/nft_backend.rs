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
//!
//! What the priorities guarantee (issue 21): our chains run before conntrack and before
//! kube-proxy's, never after a rule someone inserts (no one else writes in our table). They do
//! not order us before another table's base chain at the same or a lower priority on the same
//! hook (at equal priority the kernel's order is unspecified); that is not checked, and
//! [`PacketFilter::displaced`] stays false for this backend.
//!
//! The table is typed data (`table`): the [`Rule`]s rendered as nft text by one function, and
//! `nft -j` output read back into [`Rule`]s with serde. Not the `nftables` crate: its schema has
//! no catch-all for statements it does not know, so one foreign rule in our table would fail
//! the whole listing, where ours counts it as surplus and replaces it.

mod listing;
mod table;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::filter::{CheckReport, EnsureReport, FilterError, PacketFilter};
use crate::rules::Rule;
use listing::{compare, parse_listing, Comparison, Listing};

pub(crate) use listing::table_names;
pub use table::{nft_table, FAMILY, TABLE};

const TOOL: &str = "nft";

/// Two lines that delete our table whether or not it exists: `delete` alone fails on an
/// absent table, and `destroy` needs nft 1.0.8 / Linux 6.3.
fn delete_table_lines() -> String {
    format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
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

    fn compare_with_table(&self, expected: &[Rule]) -> Result<Comparison, FilterError> {
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
        let missing = match self.compare_with_table(rules) {
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
                rules.len()
            }
        };
        let batch = format!("{}{}", delete_table_lines(), nft_table(rules));
        self.apply(&format!("replace table {FAMILY} {TABLE}"), &batch)?;
        Ok(EnsureReport {
            checked: rules.len(),
            inserted: missing,
        })
    }

    fn check(&self, rules: &[Rule]) -> Result<CheckReport, FilterError> {
        Ok(self.compare_with_table(rules)?.report)
    }

    /// The table replaced by one holding `keep` only, in one atomic batch (its `remove`
    /// deletes the whole table).
    fn retain(&self, keep: &[Rule], all: &[Rule]) -> Result<usize, Vec<FilterError>> {
        self.ensure(keep)
            .map(|_| all.len().saturating_sub(keep.len()))
            .map_err(|e| vec![e])
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
