//! `/metrics` over HTTP/1.1 (hyper), in plaintext or TLS: GET and HEAD, Prometheus text or
//! OpenMetrics as the client's Accept asks. Request heads are bounded in size and time, so a
//! slow or hostile client costs one small task for a few seconds.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::tls;
use super::Metrics;
use crate::flags::TlsConfig;

/// Largest request head we read (hyper's smallest buffer); `/metrics` requests are a few
/// hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client gets to send a request head, and to finish the TLS handshake.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the endpoint serves and how: the metrics, in plaintext or over TLS.
pub struct Endpoint {
    metrics: Metrics,
    tls: Option<TlsConfig>,
}

impl Endpoint {
    /// With `-tls-enabled`, served over TLS as the `-tls-*` flags say; else in plaintext.
    pub fn new(metrics: Metrics, tls: &TlsConfig) -> Self {
        Endpoint {
            metrics,
            tls: tls.enabled.then(|| tls.clone()),
        }
    }
}

/// Plaintext, as without `-tls-enabled`.
impl From<Metrics> for Endpoint {
    fn from(metrics: Metrics) -> Self {
        Endpoint { metrics, tls: None }
    }
}

/// Serves `/metrics` on `listener` until `shutdown` completes, one task per connection.
/// Connections already accepted finish on their own (each is bounded by the timeouts). A
/// TLS setting that cannot work is logged and nothing is served: the node's DNS never
/// depends on its metrics.
pub async fn serve(
    listener: TcpListener,
    endpoint: impl Into<Endpoint>,
    shutdown: impl Future<Output = ()>,
) {
    let Endpoint { metrics, tls } = endpoint.into();
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut tls = match tls.as_ref().map(tls::Settings::new).transpose() {
        Ok(settings) => settings.map(tls::Reloading::new),
        Err(e) => {
            tracing::error!("metrics endpoint: {e}; serving DNS without the metrics endpoint");
            return;
        }
    };
    tracing::info!(%address, tls = tls.is_some(), "metrics endpoint listening");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let metrics = metrics.clone();
                    let Some(tls) = tls.as_mut() else {
                        tokio::spawn(serve_connection(stream, metrics, peer));
                        continue;
                    };
                    // Without a loaded certificate the connection is closed unanswered.
                    let Some(acceptor) = tls.acceptor() else { continue };
                    tokio::spawn(async move {
                        match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => serve_connection(stream, metrics, peer).await,
                            Ok(Err(e)) => tracing::debug!(%peer, "metrics endpoint: TLS handshake: {e}"),
                            Err(_) => tracing::debug!(%peer, "metrics endpoint: TLS handshake timed out"),
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

async fn serve_connection<S>(stream: S, metrics: Metrics, peer: std::net::SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = respond(&request, &metrics);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = connection.await {
        tracing::debug!(%peer, "metrics request: {e}");
    }
}

fn respond<B>(request: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND);
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    let openmetrics = metrics.encode();
    let wants_openmetrics = request.headers().get_all(ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    });
    let (content_type, body) = if wants_openmetrics {
        (OPENMETRICS, openmetrics)
    } else {
        (PROMETHEUS_TEXT, to_prometheus_text(&openmetrics))
    };
    let length = body.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let body = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
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
    use crate::metrics::{bind, ErrorType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

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

    /// One request on its own connection (`Connection: close`), the whole response back.
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
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{accept}\r\n");
        exchange(addr, request.as_bytes()).await
    }

    fn status(response: &str) -> &str {
        response.lines().next().unwrap_or_default()
    }

    fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
        let (head, _) = response.split_once("\r\n\r\n")?;
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn metrics_are_served_and_count() {
        let (addr, metrics, _stop) = start().await;
        let response = get(addr, "/metrics", None).await;
        assert_eq!(status(&response), "HTTP/1.1 200 OK", "{response}");
        assert_eq!(header(&response, "content-type"), Some(PROMETHEUS_TEXT));
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
        assert_eq!(header(&response, "content-type"), Some(OPENMETRICS));
        assert!(response.contains("# TYPE coredns_nodecache_setup_errors counter\n"));
        assert!(response.ends_with("# EOF\n"), "{response}");
    }

    #[tokio::test]
    async fn content_length_matches_body() {
        let (addr, _metrics, _stop) = start().await;
        let response = get(addr, "/metrics", None).await;
        let (_, body) = response.split_once("\r\n\r\n").unwrap();
        let length: usize = header(&response, "content-length")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
    }

    /// Prometheus keeps its connection between scrapes.
    #[tokio::test]
    async fn keep_alive_serves_several_requests() {
        let (addr, _metrics, _stop) = start().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n";
        stream.write_all(request).await.unwrap();
        stream
            .write_all(b"HEAD /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .expect("server answered in time")
            .unwrap();
        let response = String::from_utf8(response).unwrap();
        assert_eq!(response.matches("HTTP/1.1 200 OK").count(), 2, "{response}");
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
        let post = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(header(&post, "allow"), Some("GET, HEAD"), "{post}");
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status(&head), "HTTP/1.1 200 OK");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        let get_length =
            header(&get(addr, "/metrics", None).await, "content-length").map(str::to_owned);
        assert_eq!(
            header(&head, "content-length").map(str::to_owned),
            get_length
        );
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

    /// A TLS setting that cannot work ends the endpoint at once, logged, instead of serving
    /// metrics in plaintext.
    #[tokio::test]
    async fn bad_tls_settings_serve_nothing() {
        let listener = TcpListener::from_std(bind("127.0.0.1:0").unwrap()).unwrap();
        let tls = TlsConfig {
            enabled: true,
            cert_file: "/c".into(),
            private_key_file: "/k".into(),
            client_auth_type: "RequireAndVerifyClientCert".into(),
            client_ca_file: None,
            min_version: "TLS13".into(),
        };
        let server = serve(
            listener,
            Endpoint::new(Metrics::new(), &tls),
            std::future::pending(),
        );
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returned at once");
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
