//! The metric names that monitoring queries select, so a test can hold them against what the
//! agent and CoreDNS really export: PromQL expressions of a Prometheus rule file
//! (`manifests/monitoring/*.rules.yaml`) and of a Grafana dashboard's panels and variables.
//!
//! Not a PromQL parser: label matchers, ranges, strings, grouping label lists, Grafana
//! variables and numbers are blanked out, and what is left that is an identifier but not a
//! function, an aggregation or a keyword is a metric name. That covers the queries we write;
//! a construct it misreads shows up as a name the scrape lacks, never as a silent pass.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

/// Words of PromQL that are not metric names when they stand outside a call (besides
/// [`LABEL_LISTS`]).
const KEYWORDS: &[&str] = &[
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names `expr` selects.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let text = blank_out(expr);
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`1e3`, `0.5`, `5m`): none of it is a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !is_ident_start(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let called = chars.get(next) == Some(&'(');
        if LABEL_LISTS.contains(&word.as_str()) && called {
            // Skip `by (a, b)`: label names, not metrics.
            i = skip_parens(&chars, next);
            continue;
        }
        let lower = word.to_ascii_lowercase();
        if !called && !KEYWORDS.contains(&lower.as_str()) && !LABEL_LISTS.contains(&lower.as_str())
        {
            names.insert(word);
        }
    }
    names
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index after the `)` matching the `(` at `open`.
fn skip_parens(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    chars.len()
}

/// Replaces string literals, `{...}` matchers, `[...]` ranges and Grafana variables
/// (`$node`, `${datasource}`, `$__rate_interval`) with spaces.
fn blank_out(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' && c != '`' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
                out.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                // Matchers hold strings with braces only inside quotes, which we skip too.
                let mut quote: Option<char> = None;
                for d in chars.by_ref() {
                    match quote {
                        Some(q) if d == q => quote = None,
                        Some(_) => {}
                        None if d == '"' || d == '\'' || d == '`' => quote = Some(d),
                        None if d == close => break,
                        None => {}
                    }
                }
                out.push(' ');
            }
            '$' => {
                if chars.peek() == Some(&'{') {
                    for d in chars.by_ref() {
                        if d == '}' {
                            break;
                        }
                    }
                } else {
                    while chars.peek().is_some_and(|&d| is_ident(d)) {
                        chars.next();
                    }
                }
                out.push(' ');
            }
            c => out.push(c),
        }
    }
    out
}

/// One query of a dashboard or rule file, and where it is (`panel "Fail open" target A`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub location: String,
    pub expr: String,
}

/// Every PromQL query of a Grafana dashboard's JSON: panels' targets (rows' nested panels
/// included) and the templating variables' queries (`label_values(metric, label)` reads as
/// `metric`).
pub fn dashboard_queries(json: &str) -> Result<Vec<Query>, serde_json::Error> {
    Ok(queries_of(&serde_json::from_str(json)?))
}

fn queries_of(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(Query {
                    location: format!(
                        "panel {title:?} target {}",
                        target["refId"].as_str().unwrap_or("?")
                    ),
                    expr: expr.to_string(),
                });
            }
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"].as_str() != Some("query") {
            continue;
        }
        let query = match &var["query"] {
            Value::String(s) => s.as_str(),
            q => q["query"].as_str().unwrap_or_default(),
        };
        let expr = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map_or(query, |(metric, _label)| metric);
        out.push(Query {
            location: format!("variable {:?}", var["name"].as_str().unwrap_or("?")),
            expr: expr.to_string(),
        });
    }
    out.sort_by(|a, b| a.location.cmp(&b.location));
    out
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
}

/// Every rule's expression in a Prometheus rule file.
pub fn rule_queries(yaml: &str) -> Result<Vec<Query>, serde_norway::Error> {
    let file: RuleFile = serde_norway::from_str(yaml)?;
    Ok(file
        .groups
        .into_iter()
        .flat_map(|g| {
            g.rules.into_iter().map(move |r| Query {
                location: format!(
                    "group {:?} rule {:?}",
                    g.name,
                    r.alert.or(r.record).unwrap_or_default()
                ),
                expr: r.expr,
            })
        })
        .collect())
}

/// The metric names of a Prometheus text exposition: every sample's name (histogram
/// `_bucket`/`_sum`/`_count` included) and every `# TYPE` family.
pub fn exposed_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                rest.split_whitespace().next()
            } else if l.starts_with('#') {
                None
            } else {
                l.split(|c: char| c == '{' || c.is_whitespace()).next()
            }
        })
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn aggregations_groupings_and_matchers_are_not_names() {
        assert_eq!(
            names(
                r#"sum by (node, reason) (increase(coredns_nodecache_coredns_restarts_total{reason="hung", node=~"$node"}[15m])) > 2"#
            ),
            ["coredns_nodecache_coredns_restarts_total"]
        );
    }

    #[test]
    fn set_operators_keep_both_sides() {
        assert_eq!(
            names("max by (node) (max_over_time(up{job=\"a\"}[1h])) unless on (node) up"),
            ["up"]
        );
        assert_eq!(
            names("rate(a_total[5m]) / ignoring(code) group_left rate(b_total[5m])"),
            ["a_total", "b_total"]
        );
    }

    #[test]
    fn histograms_numbers_and_grafana_variables() {
        assert_eq!(
            names("histogram_quantile(0.99, sum by (le) (rate(coredns_dns_request_duration_seconds_bucket{instance=~\"${instance}\"}[$__rate_interval])))"),
            ["coredns_dns_request_duration_seconds_bucket"]
        );
        assert_eq!(
            names("1e3 * process_resident_memory_bytes offset 5m"),
            ["process_resident_memory_bytes"]
        );
    }

    #[test]
    fn braces_in_matcher_strings_do_not_end_the_matcher() {
        assert_eq!(names(r#"x_total{a="}"} + y"#), ["x_total", "y"]);
    }

    #[test]
    fn dashboard_targets_rows_and_variables() {
        let dashboard = serde_json::json!({
            "panels": [
                {"title": "A", "targets": [{"refId": "A", "expr": "rate(a_total[5m])"}]},
                {"title": "Row", "type": "row", "panels": [
                    {"title": "B", "targets": [{"refId": "A", "expr": "b"}]}
                ]}
            ],
            "templating": {"list": [
                {"name": "node", "type": "query", "query": {"query": "label_values(c_total, node)"}},
                {"name": "datasource", "type": "datasource", "query": "prometheus"}
            ]}
        });
        let exprs: Vec<(String, String)> = dashboard_queries(&dashboard.to_string())
            .unwrap()
            .into_iter()
            .map(|q| (q.location, q.expr))
            .collect();
        assert_eq!(
            exprs,
            [
                (
                    "panel \"A\" target A".to_string(),
                    "rate(a_total[5m])".to_string()
                ),
                ("panel \"B\" target A".to_string(), "b".to_string()),
                ("variable \"node\"".to_string(), "c_total".to_string()),
            ]
        );
    }

    #[test]
    fn exposition_names_include_types_and_suffixed_samples() {
        let text = "# HELP h a histogram\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_sum 0\nh_count 0\nup 1\n";
        let got: Vec<String> = exposed_names(text).into_iter().collect();
        assert_eq!(got, ["h", "h_bucket", "h_count", "h_sum", "up"]);
    }

    #[test]
    fn rule_files_yield_every_expression() {
        let yaml = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: a > 0\n  - record: r\n    expr: sum(b)\n";
        let q = rule_queries(yaml).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].location, "group \"g\" rule \"A\"");
        assert_eq!(q[1].expr, "sum(b)");
    }
}
