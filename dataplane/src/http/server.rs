//! The listener: accepts connections and serves a router over HTTP/1.1 and HTTP/2 (h2c)
//! with the limits a server open to every agent in a cluster needs, so that no caller can
//! hold what others need (issue 17, items 2 and 3):
//!
//! - a cap on open connections, kept below the process's descriptor limit (raised to its
//!   hard limit at start), and a cap per source address; a connection beyond either is
//!   closed at once, before it costs more than its descriptor;
//! - a header-read timeout (a half-sent request head is cut) and an idle timeout (a
//!   connection that sends and receives nothing while no request of it is being handled is
//!   closed, also before its first request: silent connections do not pile up);
//! - HTTP/2 limits: concurrent streams, header-list size, reset floods, keep-alive pings.
//!
//! Body-read timeouts and per-key caps are the request path's (`proxy`): they need the key.
//! [`serve`] is used by the gateway binary, `tollgate up` and the operator's admin API.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

/// Limits of the listener. `Default` is what the binaries use unless told otherwise.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time allowed for a request head (request line and headers) to arrive whole.
    pub header_read_timeout: Duration,
    /// A connection with no request being handled that sends and receives nothing for this
    /// long is closed. Before its first request the header-read timeout applies instead.
    pub idle_timeout: Duration,
    /// Most open connections (`0`: derived from the descriptor limit).
    pub max_connections: usize,
    /// Most open connections from one source address (`0`: no cap).
    pub max_connections_per_address: usize,
    /// Most concurrent HTTP/2 streams on one connection.
    pub h2_max_concurrent_streams: u32,
    /// Largest request head's headers, in bytes, and most headers: beyond either, 431.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Longest path and query, in bytes: beyond it, 414.
    pub max_uri_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 0,
            max_connections_per_address: 1024,
            h2_max_concurrent_streams: 256,
            max_header_bytes: 64 << 10,
            max_headers: 100,
            max_uri_bytes: 8 << 10,
        }
    }
}

/// Descriptors kept for everything that is not a client connection (upstream connections,
/// the database, Redis, files), as a share of the limit with a floor.
fn reserved_descriptors(limit: u64) -> u64 {
    (limit / 4).max(64)
}

/// Raises the soft descriptor limit to the hard one where the system allows, and returns
/// the connection cap that leaves room for everything else.
pub fn connection_cap(configured: usize) -> usize {
    let limit = raise_descriptor_limit();
    let derived =
        usize::try_from(limit.saturating_sub(reserved_descriptors(limit))).unwrap_or(usize::MAX).max(16);
    if configured == 0 { derived } else { configured.min(derived) }
}

fn raise_descriptor_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the descriptor limit; assuming 1024");
            1024
        }
    }
}

/// Open connections, in all and per source address.
#[derive(Debug)]
struct Connections {
    max: usize,
    per_address: usize,
    open: AtomicUsize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; gives its place back when dropped.
struct Admitted {
    connections: Arc<Connections>,
    address: IpAddr,
}

impl Connections {
    fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, &'static str> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err("connection cap reached");
        }
        if self.per_address > 0 {
            let mut by = self.by_address.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = by.entry(address).or_insert(0);
            if *n >= self.per_address {
                drop(by);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err("per-address connection cap reached");
            }
            *n += 1;
        }
        Ok(Admitted { connections: Arc::clone(self), address })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let c = &self.connections;
        c.open.fetch_sub(1, Ordering::AcqRel);
        if c.per_address > 0 {
            let mut by = c.by_address.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = by.get_mut(&self.address) {
                *n -= 1;
                if *n == 0 {
                    by.remove(&self.address);
                }
            }
        }
    }
}

/// What the idle watchdog of one connection reads.
#[derive(Debug)]
struct Activity {
    started: Instant,
    /// Milliseconds since `started` of the last byte read or written.
    last_ms: AtomicU64,
    /// Requests of this connection whose handler runs (until the response head).
    busy: AtomicUsize,
    /// Requests seen on this connection.
    requests: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        self.started.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Counts a handler running; decrements when the handler's future ends or is dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn enter(a: &Arc<Activity>) -> Self {
        a.busy.fetch_add(1, Ordering::AcqRel);
        a.requests.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(a))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// A socket that records when bytes last moved.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Whether the watchdog closes the connection now: nothing handled and nothing moving for
/// longer than allowed (the header-read timeout before the first request).
fn idle_expired(limits: &ServerLimits, busy: usize, requests: u64, quiet: Duration) -> bool {
    let allowed = if requests == 0 { limits.header_read_timeout } else { limits.idle_timeout };
    busy == 0 && quiet >= allowed
}

/// What the head of a request exceeds, as an error in the API's own format (hyper's own
/// 414 and 431 have no body; its limits are set well above these, so ours answer first).
fn head_error(limits: &ServerLimits, parts: &http::request::Parts) -> Option<crate::error::ApiError> {
    let uri = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri > limits.max_uri_bytes {
        return Some(crate::error::ApiError::uri_too_long(limits.max_uri_bytes));
    }
    let bytes: usize = parts.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if parts.headers.len() > limits.max_headers || bytes > limits.max_header_bytes {
        return Some(crate::error::ApiError::headers_too_large(limits.max_headers, limits.max_header_bytes));
    }
    None
}

fn error_format(path: &str) -> crate::error::ApiFormat {
    if path.starts_with("/v1/messages") {
        crate::error::ApiFormat::Anthropic
    } else {
        crate::error::ApiFormat::OpenAi
    }
}

fn builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // NB: hyper's own limits sit at four times ours (its 414/431 have no body, ours do).
    let hyper_head = limits.max_header_bytes.saturating_add(limits.max_uri_bytes).saturating_mul(4);
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers.saturating_mul(4))
        .max_buf_size(hyper_head.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(hyper_head).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, asks
/// open connections to finish (HTTP/1 closes after the response in progress, HTTP/2 sends
/// GOAWAY) and returns when they have, or after `drain` more.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) {
    let connections = Arc::new(Connections {
        max: connection_cap(limits.max_connections),
        per_address: limits.max_connections_per_address,
        open: AtomicUsize::new(0),
        by_address: Mutex::new(HashMap::new()),
    });
    let limits = Arc::new(limits);
    let builder = Arc::new(builder(&limits));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut last_refusal_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the cap should keep
                    // this from happening.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admitted = match connections.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                if last_refusal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(reason = why, peer = %peer.ip(), "closing a new connection");
                    last_refusal_log = Some(Instant::now());
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            Arc::clone(&builder),
            Arc::clone(&limits),
            stop_rx.clone(),
            admitted,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + drain;
    while connections.open.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<ServerLimits>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    _admitted: Admitted,
) {
    let activity = Arc::new(Activity {
        started: Instant::now(),
        last_ms: AtomicU64::new(0),
        busy: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
    });
    let io = TokioIo::new(Watched { io: stream, activity: Arc::clone(&activity) });
    let service = {
        let activity = Arc::clone(&activity);
        let limits = Arc::clone(&limits);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = Busy::enter(&activity);
            let (parts, body) = request.into_parts();
            let refused =
                head_error(&limits, &parts).map(|e| e.into_response(error_format(parts.uri.path())));
            let mut request = hyper::Request::from_parts(parts, axum::body::Body::new(body));
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = match refused {
                    Some(r) => Ok(r),
                    None => router.oneshot(request).await,
                };
                drop(busy);
                response
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.tick() => {
                let quiet = activity.quiet_for();
                let busy = activity.busy.load(Ordering::Acquire);
                let requests = activity.requests.load(Ordering::Relaxed);
                if idle_expired(&limits, busy, requests, quiet) {
                    // NB: dropping the connection closes the socket at once; nothing of
                    // it is in progress (no handler running, nothing moving).
                    tracing::debug!(peer = %peer, requests, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_rules() {
        let l = ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        };
        // Before the first request: the header-read timeout.
        assert!(!idle_expired(&l, 0, 0, Duration::from_secs(9)));
        assert!(idle_expired(&l, 0, 0, Duration::from_secs(10)));
        // After one: the idle timeout.
        assert!(!idle_expired(&l, 0, 1, Duration::from_secs(30)));
        assert!(idle_expired(&l, 0, 3, Duration::from_secs(60)));
        // A handler at work (a slow upstream, a long answer) is never idle.
        assert!(!idle_expired(&l, 1, 1, Duration::from_secs(600)));
    }

    #[test]
    fn oversized_heads_get_errors_in_the_apis_format() {
        let l = ServerLimits::default();
        let parts = |uri: &str, headers: usize, value: usize| {
            let mut b = http::Request::builder().uri(uri);
            for i in 0..headers {
                b = b.header(format!("x-h{i}"), "v".repeat(value));
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(head_error(&l, &parts("/v1/chat/completions", 20, 100)).is_none());
        let long = format!("/v1/models?q={}", "a".repeat(9000));
        assert_eq!(head_error(&l, &parts(&long, 1, 1)).unwrap().status.as_u16(), 414);
        assert_eq!(head_error(&l, &parts("/", 101, 1)).unwrap().status.as_u16(), 431);
        assert_eq!(head_error(&l, &parts("/", 2, 40 << 10)).unwrap().status.as_u16(), 431);
        assert_eq!(error_format("/v1/messages/count_tokens"), crate::error::ApiFormat::Anthropic);
        assert_eq!(error_format("/api/v1/keys"), crate::error::ApiFormat::OpenAi);
    }

    #[test]
    fn caps_count_and_give_back() {
        let c = Arc::new(Connections {
            max: 3,
            per_address: 2,
            open: AtomicUsize::new(0),
            by_address: Mutex::new(HashMap::new()),
        });
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let a1 = c.admit(a).unwrap();
        let _a2 = c.admit(a).unwrap();
        assert!(c.admit(a).is_err(), "per-address cap");
        let _b1 = c.admit(b).unwrap();
        assert!(c.admit(b).is_err(), "overall cap");
        drop(a1);
        let _b2 = c.admit(b).unwrap();
        assert_eq!(c.open.load(Ordering::Acquire), 3);
    }

    #[test]
    fn cap_stays_below_the_descriptor_limit() {
        assert_eq!(reserved_descriptors(1024), 256);
        assert_eq!(reserved_descriptors(100), 64);
        let cap = connection_cap(0);
        assert!(cap >= 16);
        assert!(connection_cap(10) <= 10);
    }
}
