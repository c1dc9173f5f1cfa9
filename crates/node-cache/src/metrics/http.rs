//! A minimal HTTP/1.1 server for `/metrics`: one request per connection, bounded in size and
//! time, so a slow or hostile client costs one small task for at most a few seconds.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Metrics;

/// Largest request head we read; `/metrics` requests are a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client gets to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client gets to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After answering, how long and how much unread request we discard before closing, so the
/// kernel does not reset the connection (and lose our answer) over data we did not read.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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
        None => bind_shared((std::net::Ipv6Addr::UNSPECIFIED, parsed.port).into())
            .or_else(|_| bind_shared((std::net::Ipv4Addr::UNSPECIFIED, parsed.port).into()))?,
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A listener with SO_REUSEPORT, as CoreDNS's own: a second node-cache on the node (a surge
/// rollout's new pod, an HA twin) binds the same metrics port instead of failing.
fn bind_shared(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use nix::sys::socket::{
        self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6,
    };
    let family = match addr {
        std::net::SocketAddr::V4(_) => AddressFamily::Inet,
        std::net::SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    match addr {
        std::net::SocketAddr::V4(a) => {
            socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(a))?
        }
        std::net::SocketAddr::V6(a) => {
            socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(a))?
        }
    }
    socket::listen(&fd, socket::Backlog::new(1024).map_err(io::Error::from)?)?;
    Ok(std::net::TcpListener::from(fd))
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes, one task per connection.
/// Connections already accepted finish on their own (each is bounded by the timeouts).
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, &metrics).await {
                            tracing::debug!(%peer, "metrics request: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// What reading a request head produced.
enum Head {
    Complete(Vec<u8>),
    TooLarge,
    /// The client closed before sending a whole head.
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf[searched_from..]) {
            let end = searched_from + end;
            if end > MAX_REQUEST {
                return Ok(Head::TooLarge);
            }
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() > MAX_REQUEST {
            return Ok(Head::TooLarge);
        }
    }
}

/// Offset just past the blank line ending a request head (CRLF CRLF, or bare LF LF).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    /// HEAD: headers as for GET, no body.
    omit_body: bool,
    allow: bool,
}

impl Response {
    fn error(status: u16, reason: &'static str) -> Self {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: format!("{status} {reason}\n"),
            omit_body: false,
            allow: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !self.omit_body {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => Response::error(408, "Request Timeout"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::TooLarge)) => Response::error(431, "Request Header Fields Too Large"),
        Ok(Ok(Head::Complete(head))) => respond(&String::from_utf8_lossy(&head), metrics),
    };
    let bytes = response.to_bytes();
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client did not take the response"))??;
    let _ = tokio::time::timeout(LINGER, drain(&mut stream)).await;
    Ok(())
}

/// Reads and discards until the client closes or LINGER_BYTES have gone by.
async fn drain(stream: &mut TcpStream) {
    let mut chunk = [0u8; 1024];
    let mut total = 0;
    while total < LINGER_BYTES {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

fn respond(head: &str, metrics: &Metrics) -> Response {
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::error(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::error(400, "Bad Request");
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Response::error(404, "Not Found");
    }
    let omit_body = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut response = Response::error(405, "Method Not Allowed");
            response.allow = true;
            return response;
        }
    };
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, value)| value)
        .collect::<Vec<_>>()
        .join(",");
    let openmetrics = metrics.encode();
    let (content_type, body) = if accept.contains("application/openmetrics-text") {
        (OPENMETRICS, openmetrics)
    } else {
        (PROMETHEUS_TEXT, to_prometheus_text(&openmetrics))
    };
    Response {
        status: 200,
        reason: "OK",
        content_type,
        body,
        omit_body,
        allow: false,
    }
}

/// Rewrites OpenMetrics text as Prometheus text format 0.0.4, which is what upstream's Go
/// handler serves to clients that do not ask for OpenMetrics: a counter family is named with
/// its `_total` suffix, `unknown` is `untyped`, and `# UNIT` / `# EOF` lines are dropped.
/// Samples and label escaping are the same in both formats.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let tail = if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                let suffix = if counters.contains(&name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ErrorType;

    async fn start() -> (
        std::net::SocketAddr,
        Metrics,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let listener = TcpListener::from_std(bind("127.0.0.1:0").unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, metrics.clone(), async {
            let _ = stopped.await;
        }));
        (addr, metrics, stop)
    }

    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .expect("server answered in time")
            .unwrap();
        String::from_utf8(response).unwrap()
    }

    async fn get(addr: std::net::SocketAddr, path: &str, accept: Option<&str>) -> String {
        let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{accept}\r\n");
        exchange(addr, request.as_bytes()).await
    }

    fn status(response: &str) -> &str {
        response.lines().next().unwrap_or_default()
    }

    #[tokio::test]
    async fn metrics_are_served_and_count() {
        let (addr, metrics, _stop) = start().await;
        let response = get(addr, "/metrics", None).await;
        assert_eq!(status(&response), "HTTP/1.1 200 OK", "{response}");
        assert!(
            response.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{response}"
        );
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
        for label in ErrorType::ALL.map(ErrorType::label) {
            let line = format!("coredns_nodecache_setup_errors_total{{errortype=\"{label}\"}} 0\n");
            assert!(response.contains(&line), "{label}:\n{response}");
        }
        assert!(
            response.contains("# TYPE coredns_nodecache_setup_errors_total counter\n"),
            "{response}"
        );
        assert!(!response.contains("# EOF"), "{response}");

        metrics.setup_error(ErrorType::InterfaceAdd);
        let response = get(addr, "/metrics", None).await;
        assert!(
            response
                .contains("coredns_nodecache_setup_errors_total{errortype=\"interface_add\"} 1\n"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn openmetrics_when_asked_for() {
        let (addr, _metrics, _stop) = start().await;
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        let response = get(addr, "/metrics?x=1", Some(accept)).await;
        assert_eq!(status(&response), "HTTP/1.1 200 OK", "{response}");
        assert!(
            response.contains(&format!("\r\nContent-Type: {OPENMETRICS}\r\n")),
            "{response}"
        );
        assert!(response.contains("# TYPE coredns_nodecache_setup_errors counter\n"));
        assert!(response.ends_with("# EOF\n"), "{response}");
    }

    #[tokio::test]
    async fn content_length_matches_body() {
        let (addr, _metrics, _stop) = start().await;
        let response = get(addr, "/metrics", None).await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
    }

    #[tokio::test]
    async fn other_paths_methods_and_garbage() {
        let (addr, _metrics, _stop) = start().await;
        assert_eq!(
            status(&get(addr, "/", None).await),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(&get(addr, "/metricsx", None).await),
            "HTTP/1.1 404 Not Found"
        );
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed");
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status(&head), "HTTP/1.1 200 OK");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        let bad = exchange(addr, b"hello\r\n\r\n").await;
        assert_eq!(status(&bad), "HTTP/1.1 400 Bad Request");
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST)
        );
        let huge = exchange(addr, huge.as_bytes()).await;
        assert_eq!(
            status(&huge),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let listener = TcpListener::from_std(bind("127.0.0.1:0").unwrap()).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Metrics::new(), async {
            let _ = stopped.await;
        }));
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returned after shutdown")
            .unwrap();
    }

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

    #[test]
    fn prometheus_text_conversion() {
        let om = "# HELP a_events Events.\n# TYPE a_events counter\n# UNIT a_events events\n\
                  a_events_total{x=\"1\"} 3\n# HELP b Gauge.\n# TYPE b gauge\nb 1\n\
                  # TYPE c unknown\nc 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_events_total Events.\n# TYPE a_events_total counter\n\
             a_events_total{x=\"1\"} 3\n# HELP b Gauge.\n# TYPE b gauge\nb 1\n\
             # TYPE c untyped\nc 2\n"
        );
    }
}
