//! `__PILLAR__LOCAL__DNS__`: the `-localip` addresses.
//!
//! Upstream writes them all, space-separated, everywhere. Where the placeholder is followed
//! by `:port` (the addon's `health __PILLAR__LOCAL__DNS__:8080`) that gives
//! `health 169.254.20.10 10.96.0.10:8080`, which CoreDNS refuses (health takes one address),
//! and for IPv6 `fd00::10:8080`, which is no address at all. In such a host:port position we
//! write the first local IP alone, bracketed if IPv6, and say so in a note.

use std::net::IpAddr;

pub(crate) const LOCAL_DNS: &str = "__PILLAR__LOCAL__DNS__";

/// `ips` must not be empty.
pub(crate) fn fill_local_ips(text: &str, ips: &[IpAddr], notes: &mut Vec<String>) -> String {
    let all = ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let first = match ips[0] {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in text.match_indices(LOCAL_DNS) {
        out.push_str(&text[last..at]);
        last = at + LOCAL_DNS.len();
        let Some(port) = text[last..].strip_prefix(':') else {
            out.push_str(&all);
            continue;
        };
        out.push_str(&first);
        let port = port.split_whitespace().next().unwrap_or("");
        if let Some(note) = host_port_note(directive(text, at), &format!("{first}:{port}"), ips) {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    out.push_str(&text[last..]);
    out
}

/// The first word of the line holding byte `at`.
fn directive(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |p| p + 1);
    text[start..].split_whitespace().next().unwrap_or("")
}

fn host_port_note(directive: &str, addr: &str, ips: &[IpAddr]) -> Option<String> {
    if ips.len() > 1 {
        Some(format!(
            "{directive}: using {addr}, the first -localip; CoreDNS's {directive} takes one address"
        ))
    } else if ips[0].is_ipv6() {
        Some(format!(
            "{directive}: using {addr}; an IPv6 address takes brackets before a port"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(text: &str, ips: &[&str]) -> (String, Vec<String>) {
        let ips: Vec<IpAddr> = ips.iter().map(|ip| ip.parse().unwrap()).collect();
        let mut notes = Vec::new();
        (fill_local_ips(text, &ips, &mut notes), notes)
    }

    #[test]
    fn one_ipv4_everywhere() {
        let (out, notes) = fill(
            "bind __PILLAR__LOCAL__DNS__\nhealth __PILLAR__LOCAL__DNS__:8080\n",
            &["169.254.20.10"],
        );
        assert_eq!(out, "bind 169.254.20.10\nhealth 169.254.20.10:8080\n");
        assert!(notes.is_empty());
    }

    #[test]
    fn several_ips_bind_all_but_health_takes_the_first() {
        let (out, notes) = fill(
            "    bind __PILLAR__LOCAL__DNS__\n    health __PILLAR__LOCAL__DNS__:8080\n",
            &["169.254.20.10", "10.96.0.10"],
        );
        assert_eq!(
            out,
            "    bind 169.254.20.10 10.96.0.10\n    health 169.254.20.10:8080\n"
        );
        assert_eq!(
            notes,
            ["health: using 169.254.20.10:8080, the first -localip; CoreDNS's health takes one address"]
        );
    }

    #[test]
    fn ipv6_is_bracketed_before_a_port_only() {
        let (out, notes) = fill(
            "bind __PILLAR__LOCAL__DNS__\nhealth __PILLAR__LOCAL__DNS__:8080\n",
            &["fd00::10"],
        );
        assert_eq!(out, "bind fd00::10\nhealth [fd00::10]:8080\n");
        assert_eq!(
            notes,
            ["health: using [fd00::10]:8080; an IPv6 address takes brackets before a port"]
        );
    }
}
