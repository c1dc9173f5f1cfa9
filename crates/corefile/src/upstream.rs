//! `__PILLAR__UPSTREAM__SERVERS__`: the node's resolv.conf, or the kube-dns ConfigMap's
//! `upstreamNameservers`.
//!
//! With custom servers upstream (kubernetes/dns, now kubernetes-sigs/node-local-dns,
//! `cmd/node-cache/app/configmap.go`) turns the addon template's TCP block into a plain (UDP)
//! `forward`, because custom servers are reached over UDP (kubernetes/dns#399). It finds that
//! block by its exact text: the line break before it, the 4/12/4-space layout the addon ships,
//! the line break after it. Any other `force_tcp` block, indented with tabs or other spaces,
//! is one the operator wrote, and upstream keeps it, TCP included, only filling in the servers.
//! So do we: the same template gives the same Corefile under either agent.

pub(crate) const UPSTREAM_SERVERS: &str = "__PILLAR__UPSTREAM__SERVERS__";
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The addon template's block, as upstream matches it (its `upstreamTCPBlock`).
const ADDON_TCP_BLOCK: &str =
    "\n    forward . __PILLAR__UPSTREAM__SERVERS__ {\n            force_tcp\n    }\n";
/// What upstream writes in its place (its `upstreamUDPBlock`), servers filled in.
const ADDON_UDP_BLOCK: &str = "\n    forward . __PILLAR__UPSTREAM__SERVERS__\n";

pub(crate) fn fill_upstream_servers(
    template: &str,
    servers: &[String],
    notes: &mut Vec<String>,
) -> String {
    if servers.is_empty() {
        return template.replace(UPSTREAM_SERVERS, RESOLV_CONF);
    }
    let joined = servers.join(" ");
    let text = template.replace(ADDON_TCP_BLOCK, ADDON_UDP_BLOCK);
    if keeps_force_tcp(&text) {
        notes.push(format!(
            "forward . {joined}: a force_tcp block other than the addon's (4/12/4 spaces) is \
             kept as written, TCP included, as upstream keeps it"
        ));
    }
    text.replace(UPSTREAM_SERVERS, &joined)
}

/// Whether a `forward . __PILLAR__UPSTREAM__SERVERS__ {` block still holds `force_tcp`.
fn keeps_force_tcp(text: &str) -> bool {
    let mut in_block = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"forward") && words.contains(&UPSTREAM_SERVERS) {
            in_block = words.last() == Some(&"{");
        } else if in_block && words.first() == Some(&"force_tcp") {
            return true;
        } else if words.first() == Some(&"}") {
            in_block = false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(template: &str, servers: &[&str]) -> (String, Vec<String>) {
        let servers: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
        let mut notes = Vec::new();
        (fill_upstream_servers(template, &servers, &mut notes), notes)
    }

    const ADDON: &str =
        ".:53 {\n    errors\n    forward . __PILLAR__UPSTREAM__SERVERS__ {\n            \
                         force_tcp\n    }\n    prometheus :9253\n    }\n";

    #[test]
    fn resolv_conf_without_servers_keeps_force_tcp() {
        assert_eq!(
            fill(ADDON, &[]).0,
            ADDON.replace(UPSTREAM_SERVERS, RESOLV_CONF)
        );
    }

    #[test]
    fn the_addon_block_becomes_plain_forward_as_given() {
        let (out, notes) = fill(ADDON, &["1.1.1.1", "8.8.8.8:5353"]);
        assert_eq!(
            out,
            ".:53 {\n    errors\n    forward . 1.1.1.1 8.8.8.8:5353\n    prometheus :9253\n    }\n"
        );
        assert!(notes.is_empty(), "{notes:?}");
    }

    /// Upstream matches its block by text; an operator's block in another layout keeps its
    /// TCP setting there, and so here.
    #[test]
    fn other_force_tcp_blocks_keep_tcp_as_upstream_does() {
        for block in [
            "\tforward . __PILLAR__UPSTREAM__SERVERS__ {\n\t\tforce_tcp\n\t}\n",
            " forward . __PILLAR__UPSTREAM__SERVERS__ {\n  force_tcp\n }\n",
            "  forward . __PILLAR__UPSTREAM__SERVERS__ {\n    force_tcp\n  }\n",
            "    forward . __PILLAR__UPSTREAM__SERVERS__ {\n        force_tcp\n    }\n",
            "    forward . __PILLAR__UPSTREAM__SERVERS__ {\r\n            force_tcp\r\n    }\r\n",
        ] {
            let template = format!(".:53 {{\n{block}}}\n");
            let (out, notes) = fill(&template, &["1.1.1.1"]);
            assert_eq!(
                out,
                template.replace(UPSTREAM_SERVERS, "1.1.1.1"),
                "{block:?}"
            );
            assert_eq!(notes.len(), 1, "{block:?}: {notes:?}");
            assert!(
                notes[0].contains("kept as written, TCP included"),
                "{notes:?}"
            );
        }
    }

    #[test]
    fn other_blocks_are_kept() {
        let t = "forward . __PILLAR__UPSTREAM__SERVERS__ {\n  prefer_udp\n}\n";
        let (out, notes) = fill(t, &["1.1.1.1"]);
        assert_eq!(out, t.replace(UPSTREAM_SERVERS, "1.1.1.1"));
        assert!(notes.is_empty());
    }
}
