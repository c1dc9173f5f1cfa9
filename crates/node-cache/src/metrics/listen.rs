//! Where the metrics endpoint listens: a Go-style address, bound with SO_REUSEPORT so that
//! two node-cache instances on a node (a surge rollout's new pod, an HA twin) share the port.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// Pending connections the kernel queues for us.
const BACKLOG: i32 = 1024;

/// A Go-style listen address: `host:port`, `[v6]:port`, or `:port` for all interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    /// None for all interfaces (the empty host of `:9353`); else an IP literal or a host name.
    pub host: Option<String>,
    pub port: u16,
}

/// Parses a listen address the way Go's `net.SplitHostPort` splits it; the port must be
/// numeric. The error is the reason, for the caller to wrap with the flag's name.
pub fn parse_listen_address(text: &str) -> Result<ListenAddress, String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, rest) = bracketed
            .split_once(']')
            .ok_or("missing ']' after an IPv6 address")?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        let port = rest
            .strip_prefix(':')
            .ok_or("missing port (expected [ipv6]:port)")?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or("missing port (expected host:port or :port)")?;
        if host.contains(':') {
            return Err("IPv6 addresses need brackets ([ipv6]:port)".into());
        }
        (host, port)
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) || port.is_empty() {
        return Err(format!("port {port:?} is not a number"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port} is out of range (0-65535)"))?;
    if host.is_empty() {
        return Ok(ListenAddress { host: None, port });
    }
    if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
        return Err(format!("{host:?} is neither an IP address nor a host name"));
    }
    Ok(ListenAddress {
        host: Some(host.to_string()),
        port,
    })
}

fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Binds a Go-style listen address, ready for `tokio::net::TcpListener::from_std` (the
/// socket is non-blocking). `:port` listens on all interfaces as Go does: `[::]` (both
/// families under Linux's default `bindv6only=0`), or `0.0.0.0` on a host without IPv6.
pub fn bind(addr: &str) -> io::Result<std::net::TcpListener> {
    let parsed = parse_listen_address(addr)
        .map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, reason))?;
    let listener = match &parsed.host {
        Some(host) => {
            let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
            let mut bound = None;
            for sa in std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), parsed.port))? {
                match bind_shared(sa) {
                    Ok(l) => {
                        bound = Some(l);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            bound.ok_or(last)?
        }
        None => bind_shared((Ipv6Addr::UNSPECIFIED, parsed.port).into())
            .or_else(|_| bind_shared((std::net::Ipv4Addr::UNSPECIFIED, parsed.port).into()))?,
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A listener with SO_REUSEPORT, as CoreDNS's own: a second node-cache on the node binds the
/// same metrics port instead of failing.
fn bind_shared(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_go_style() {
        let all = |port| ListenAddress { host: None, port };
        let host = |h: &str, port| ListenAddress {
            host: Some(h.into()),
            port,
        };
        assert_eq!(parse_listen_address(":9353"), Ok(all(9353)));
        assert_eq!(
            parse_listen_address("0.0.0.0:9353"),
            Ok(host("0.0.0.0", 9353))
        );
        assert_eq!(parse_listen_address("[::1]:9353"), Ok(host("::1", 9353)));
        assert_eq!(
            parse_listen_address("localhost:0"),
            Ok(host("localhost", 0))
        );
        for (text, reason) in [
            ("9353", "missing port"),
            ("0.0.0.0", "missing port"),
            ("::1:9353", "brackets"),
            ("[::1]9353", "missing port"),
            ("[10.0.0.1]:80", "not an IPv6"),
            (":http", "not a number"),
            (":", "not a number"),
            (":70000", "out of range"),
            ("bad host:80", "neither"),
        ] {
            let err = parse_listen_address(text).expect_err(text);
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_second_instance_shares_the_port() {
        let first = bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        let second = bind(&format!("127.0.0.1:{port}")).expect("SO_REUSEPORT lets a peer bind");
        assert_eq!(second.local_addr().unwrap().port(), port);
    }

    #[test]
    fn bind_all_interfaces_with_empty_host() {
        let listener = bind(":0").unwrap();
        assert!(listener.local_addr().unwrap().ip().is_unspecified());
    }
}
