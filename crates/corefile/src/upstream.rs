//! `__PILLAR__UPSTREAM__SERVERS__`: the node's resolv.conf, or the kube-dns ConfigMap's
//! `upstreamNameservers`.
//!
//! With custom servers upstream (kubernetes/dns `cmd/node-cache/app/configmap.go`) turns a
//! `forward . __PILLAR__UPSTREAM__SERVERS__ { force_tcp }` block into a plain (UDP) forward,
//! matching the block's text exactly, 4/12/4-space indentation included. We match it by
//! words instead, so any indentation works; a block holding other options is left alone.

pub(crate) const UPSTREAM_SERVERS: &str = "__PILLAR__UPSTREAM__SERVERS__";
const RESOLV_CONF: &str = "/etc/resolv.conf";
const FORCE_TCP: &str = "force_tcp";

pub(crate) fn fill_upstream_servers(
    template: &str,
    servers: &[String],
    notes: &mut Vec<String>,
) -> String {
    if servers.is_empty() {
        return template.replace(UPSTREAM_SERVERS, RESOLV_CONF);
    }
    let joined = servers.join(" ");
    drop_force_tcp_blocks(template, &joined, notes).replace(UPSTREAM_SERVERS, &joined)
}

fn drop_force_tcp_blocks(text: &str, servers: &str, notes: &mut Vec<String>) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        match block(&lines, i) {
            Some(Block::ForceTcpOnly { close }) => {
                let line = lines[i];
                let indent = &line[..line.len() - line.trim_start().len()];
                let eol = if lines[close].ends_with('\n') {
                    "\n"
                } else {
                    ""
                };
                out.push_str(&format!("{indent}forward . {servers}{eol}"));
                i = close + 1;
                continue;
            }
            Some(Block::Other {
                has_force_tcp: true,
            }) => {
                let note = format!(
                    "forward . {servers}: its block has options besides force_tcp and is kept \
                     as written, force_tcp included"
                );
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            Some(Block::Other { .. }) | None => {}
        }
        out.push_str(lines[i]);
        i += 1;
    }
    out
}

enum Block {
    /// The block holds `force_tcp` alone; `close` is the line of its `}`.
    ForceTcpOnly {
        close: usize,
    },
    Other {
        has_force_tcp: bool,
    },
}

/// Whether line `i` opens `forward . __PILLAR__UPSTREAM__SERVERS__ {`, and what the block holds.
fn block(lines: &[&str], i: usize) -> Option<Block> {
    let words: Vec<&str> = lines[i].split_whitespace().collect();
    if words != ["forward", ".", UPSTREAM_SERVERS, "{"] {
        return None;
    }
    let Some(close) = (i + 1..lines.len()).find(|&j| lines[j].trim() == "}") else {
        return Some(Block::Other {
            has_force_tcp: false,
        });
    };
    let inner: Vec<&str> = lines[i + 1..close]
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    Some(if inner == [FORCE_TCP] {
        Block::ForceTcpOnly { close }
    } else {
        Block::Other {
            has_force_tcp: inner
                .iter()
                .any(|l| l.split_whitespace().next() == Some(FORCE_TCP)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(template: &str, servers: &[&str]) -> (String, Vec<String>) {
        let servers: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
        let mut notes = Vec::new();
        (fill_upstream_servers(template, &servers, &mut notes), notes)
    }

    #[test]
    fn resolv_conf_without_servers_keeps_force_tcp() {
        let t = "    forward . __PILLAR__UPSTREAM__SERVERS__ {\n            force_tcp\n    }\n";
        assert_eq!(
            fill(t, &[]).0,
            "    forward . /etc/resolv.conf {\n            force_tcp\n    }\n"
        );
    }

    #[test]
    fn force_tcp_block_becomes_plain_forward_at_any_indentation() {
        for t in [
            "    forward . __PILLAR__UPSTREAM__SERVERS__ {\n            force_tcp\n    }\n",
            "\tforward . __PILLAR__UPSTREAM__SERVERS__ {\n\t\tforce_tcp\n\t}\n",
        ] {
            let indent = &t[..t.len() - t.trim_start().len()];
            let (out, notes) = fill(t, &["1.1.1.1:53", "8.8.8.8:53"]);
            assert_eq!(out, format!("{indent}forward . 1.1.1.1:53 8.8.8.8:53\n"));
            assert!(notes.is_empty());
        }
    }

    #[test]
    fn other_blocks_are_kept() {
        let t = "forward . __PILLAR__UPSTREAM__SERVERS__ {\n  force_tcp\n  max_fails 3\n}\n";
        let (out, notes) = fill(t, &["1.1.1.1:53"]);
        assert_eq!(out, t.replace(UPSTREAM_SERVERS, "1.1.1.1:53"));
        assert_eq!(notes.len(), 1, "{notes:?}");
        let t = "forward . __PILLAR__UPSTREAM__SERVERS__ {\n  prefer_udp\n}\n";
        let (out, notes) = fill(t, &["1.1.1.1:53"]);
        assert_eq!(out, t.replace(UPSTREAM_SERVERS, "1.1.1.1:53"));
        assert!(notes.is_empty());
    }
}
