//! The real server loop: HTTP/1.1 and h2c on one port, with connections that a request
//! can kill with a TCP RST (the `reset-before` and `reset-mid` faults).
//!
//! Each connection gets a [`KillSwitch`], put into every request's extensions. Pulling it
//! makes the connection task drop the connection; the socket then closes with SO_LINGER 0,
//! which sends RST instead of FIN. NB: linger is set only on killed sockets: on every
//! socket it would also turn ordinary closes into resets and could discard a response
//! still in the send buffer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tower::Service;

use crate::{MockConfig, router};

/// A handle that resets the connection its request arrived on.
#[derive(Clone, Debug, Default)]
pub(crate) struct KillSwitch(Arc<KillState>);

#[derive(Debug, Default)]
struct KillState {
    fired: AtomicBool,
    notify: Notify,
}

impl KillSwitch {
    pub(crate) fn fire(&self) {
        self.0.fired.store(true, Ordering::Release);
        // NB: notify_one stores a permit, so the connection task sees it even if it is
        // not waiting at this instant.
        self.0.notify.notify_one();
    }

    async fn fired(&self) {
        self.0.notify.notified().await;
    }

    fn is_fired(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }
}

/// A TCP stream that, if its connection was killed, closes with RST when dropped.
struct ResettableStream {
    stream: TcpStream,
    kill: KillSwitch,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.kill.is_fired() {
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Serves the mock on `listener` until the task is dropped, with real TCP resets.
///
/// Accept errors (e.g. out of file descriptors) are logged and retried, never returned.
pub async fn serve(listener: TcpListener, config: MockConfig) -> io::Result<()> {
    let app = router(config);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                // NB: back off, or an exhausted fd table turns this into a busy loop.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // Latency benchmarks measure small SSE writes: Nagle would add delay to them.
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(builder.clone(), stream, app.clone()));
    }
}

async fn serve_connection(builder: Arc<auto::Builder<TokioExecutor>>, stream: TcpStream, app: Router) {
    let kill = KillSwitch::default();
    let io = TokioIo::new(ResettableStream { stream, kill: kill.clone() });
    let request_kill = kill.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(request_kill.clone());
        // NB: Router is always ready and its future owns what it needs.
        app.clone().call(req)
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::select! {
        result = conn => {
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended with an error");
            }
        }
        () = kill.fired() => tracing::debug!("connection reset by fault injection"),
    }
}
