//! Validation and normalisation of the names and servers a kube-dns ConfigMap may hold.
//!
//! Upstream (kubernetes/dns `pkg/dns/config/config.go`) accepts a stub-domain key that is a
//! DNS-1123 subdomain, and a server that is an IP or IP:port (a `dns://`/`tls://` prefix or a
//! host name fails one of its two checks). It writes an accepted server as the ConfigMap
//! spells it, and so do we: CoreDNS's `forward` supplies port 53 itself.

use std::fmt;
use std::net::IpAddr;

/// Why a server entry was refused; completes "server "X" …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerProblem {
    NotAnAddress,
    BadPort(String),
    Transport,
}

impl fmt::Display for ServerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnAddress => f.write_str("is not an IP address or IP:port"),
            Self::BadPort(port) => write!(f, "has port {port:?}, not a number from 1 to 65535"),
            Self::Transport => {
                f.write_str("has a transport prefix; only an IP address or IP:port is accepted")
            }
        }
    }
}

/// Whether `server` is an IP address or IP:port (`[v6]:port`) that `forward` takes as it is.
pub(crate) fn check_server(server: &str) -> Result<(), ServerProblem> {
    if server.contains("://") {
        return Err(ServerProblem::Transport);
    }
    if server.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = split_host_port(server).ok_or(ServerProblem::NotAnAddress)?;
    host.parse::<IpAddr>()
        .map_err(|_| ServerProblem::NotAnAddress)?;
    parse_port(port).map(drop)
}

/// `[host]:port` or `host:port` where host has no colon.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once("]:");
    }
    let (host, port) = s.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

fn parse_port(port: &str) -> Result<u16, ServerProblem> {
    let bad = || ServerProblem::BadPort(port.to_owned());
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(p) => Ok(p),
    }
}

/// A DNS-1123 subdomain as Kubernetes validates one: lower-case labels of letters, digits
/// and inner hyphens, at most 253 characters, no trailing dot. We also hold each label to
/// the DNS limit of 63 octets, which CoreDNS would otherwise reject when loading the zone.
pub(crate) fn is_valid_domain(domain: &str) -> bool {
    domain.len() <= 253 && domain.split('.').all(is_valid_label)
}

/// A DNS-1123 label: what Kubernetes requires of a federation's name.
pub(crate) fn is_valid_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_port_are_accepted() {
        for ok in ["1.2.3.4", "1.2.3.4:5353", "fd00::53", "[fd00:0::53]:54"] {
            assert_eq!(check_server(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_servers_are_refused() {
        use ServerProblem::*;
        for (input, problem) in [
            ("", NotAnAddress),
            ("1.2.3.x", NotAnAddress),
            ("dns.example", NotAnAddress),
            ("dns.example:53", NotAnAddress),
            ("fe80::1%eth0", NotAnAddress),
            (" 1.2.3.4", NotAnAddress),
            ("1.2.3.4:0", BadPort("0".into())),
            ("1.2.3.4:65536", BadPort("65536".into())),
            ("1.2.3.4:+53", BadPort("+53".into())),
            ("1.2.3.4:", BadPort(String::new())),
            ("[fd00::53]:x", BadPort("x".into())),
            ("tls://1.2.3.4", Transport),
            ("dns://1.2.3.4:53", Transport),
        ] {
            assert_eq!(check_server(input), Err(problem), "{input:?}");
        }
    }

    #[test]
    fn domains() {
        for ok in ["acme.local", "a", "x-1.example.com", "10.in-addr.arpa"] {
            assert!(is_valid_domain(ok), "{ok}");
        }
        let long_label = "a".repeat(64);
        for bad in [
            "",
            "foo..bar",
            "Acme.local",
            "acme.local.",
            "-acme.local",
            "acme-.local",
            "acme_local",
            long_label.as_str(),
        ] {
            assert!(!is_valid_domain(bad), "{bad}");
        }
    }
}
