//! The daemon's small plain-HTTP servers (`/metrics`, the ACME http-01 responder): one accept
//! loop on the daemon's runtime, HTTP/1 by hyper, stopped by the shutdown future. Answers are
//! computed synchronously from memory.
//!
//! Contract — whoever connects, and however many, these limits hold:
//! - At most [`MAX_CONNECTIONS`] connections are served at once; one beyond that is closed at
//!   once, before anything is read from it. So a flood of connections costs the daemon a few
//!   file descriptors for a moment, never all of them (its scans need them).
//! - A request's header must arrive within [`HEADER_TIMEOUT`]; the same timeout closes a
//!   kept-alive connection that sits idle between requests. A connection is closed after
//!   [`CONNECTION_LIFETIME`], whatever it is doing.
//! - What is buffered per connection is bounded: a request's header may be at most
//!   [`MAX_BUFFER`] bytes (hyper answers a longer one with an error), and responses are queued
//!   for the socket by reference (vectored writes), never copied. A client that pipelines
//!   requests and never reads makes hyper hold at most the response being written and the one
//!   after it; a handler that answers many clients with the same body (as `/metrics` does,
//!   [`crate::metrics::serve`]) makes that a reference to one shared body.
//! - What a flood makes the daemon log is at most one line per server and [`LOG_INTERVAL`].
//! - With TLS ([`serve_tls`]), the acceptor is asked for at each connection (so a reload that
//!   changes it applies to the next connection) and the handshake must finish within
//!   [`HEADER_TIMEOUT`]; a client that speaks plain HTTP to it fails the handshake and is
//!   closed.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::Semaphore;

use crate::log_limit::{LogLimit, left_out};

/// Connections served at once by one server. Prometheus scrapes over one connection, an
/// ACME CA validates from a handful of places; 64 leaves room for both and a few people.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's header, and how long a kept-alive
/// connection may sit idle before its next request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, whatever it is doing (a client that never reads
/// its answer, say).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// hyper's read buffer per connection, and so the largest request header: a scrape or a
/// validation request is a few hundred bytes. (hyper allows no less than 8 KiB.)
pub const MAX_BUFFER: usize = 16 * 1024;
/// At most one line per server and this interval about connections turned away or failing
/// to be accepted.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What answers each request.
pub type Handler = Arc<dyn Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync>;

/// An answer that may wait (for a password check on the blocking pool, say).
pub type Answer = std::pin::Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// What answers each request, when answering may wait.
pub type AsyncHandler = Arc<dyn Fn(Request<Incoming>) -> Answer + Send + Sync>;

/// The TLS acceptor for the next connection; `None`: plain HTTP.
pub type TlsSource = Arc<dyn Fn() -> Option<tokio_rustls::TlsAcceptor> + Send + Sync>;

/// Limits of one server; [`serve`] uses the documented constants, tests make them small.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub lifetime: Duration,
    pub log_interval: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
            lifetime: CONNECTION_LIFETIME,
            log_interval: LOG_INTERVAL,
        }
    }
}

/// Serves `listener` with `handler` until `shutdown` resolves. `what` names the server in logs.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handler: Handler,
    what: &'static str,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, handler, what, shutdown, Limits::default()).await;
}

/// Serves `listener` with `handler`, over TLS whenever `tls` gives an acceptor, until
/// `shutdown` resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    handler: AsyncHandler,
    tls: TlsSource,
    what: &'static str,
    shutdown: impl Future<Output = ()>,
) {
    serve_async(listener, handler, tls, what, shutdown, Limits::default()).await;
}

pub(crate) async fn serve_with(
    listener: tokio::net::TcpListener,
    handler: Handler,
    what: &'static str,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    let handler: AsyncHandler = Arc::new(move |req| {
        let answer = handler(&req);
        Box::pin(async move { answer })
    });
    serve_async(listener, handler, Arc::new(|| None), what, shutdown, limits).await;
}

pub(crate) async fn serve_async(
    listener: tokio::net::TcpListener,
    handler: AsyncHandler,
    tls: TlsSource,
    what: &'static str,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let quiet = LogLimit::new(limits.log_interval);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                if let Some(count) = quiet.admit(&"accept") {
                    log::warn!(server = what, error = err.to_string(); "could not accept a connection{}", left_out(count));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Closed before anything is read: the descriptor is given back at once.
            drop(stream);
            if let Some(count) = quiet.admit(&"full") {
                log::warn!(server = what; "{} connections are open; closing new ones until some end{}", limits.max_connections, left_out(count));
            }
            continue;
        };
        let handler = handler.clone();
        let acceptor = tls();
        tokio::spawn(async move {
            let _permit = permit;
            let started = tokio::time::Instant::now();
            match acceptor {
                None => serve_connection(stream, handler, limits, started).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await;
                    if let Ok(Ok(stream)) = handshake {
                        serve_connection(stream, handler, limits, started).await;
                    }
                }
            }
        });
    }
}

/// One connection's requests, until it ends or its lifetime (from `started`) is over.
async fn serve_connection<S>(
    stream: S,
    handler: AsyncHandler,
    limits: Limits,
    started: tokio::time::Instant,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let answer = handler(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUFFER)
        .writev(true)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let _ = tokio::time::timeout_at(started + limits.lifetime, conn).await;
}

/// A response with a status, a content type and a body.
pub fn reply(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};

    use super::*;

    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// A server answering `hello` on its own runtime thread.
    fn start(limits: Limits) -> Server {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler: Handler = Arc::new(|_| reply(StatusCode::OK, "text/plain", "hello\n"));
        let thread = std::thread::spawn(move || {
            runtime.block_on(serve_with(
                listener,
                handler,
                "test",
                async {
                    let _ = stopped.await;
                },
                limits,
            ));
        });
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
    }

    /// Whether the server closes `stream` (end of file or reset) before `within` passes.
    fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        stream.set_read_timeout(Some(within)).expect("timeout");
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    /// Sends one GET on a kept-alive connection and reads the answer.
    fn get(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut raw = Vec::new();
        let mut buf = [0u8; 1024];
        while !raw.ends_with(b"hello\n") {
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "closed before the answer");
            raw.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(raw).expect("utf-8")
    }

    #[test]
    fn connections_beyond_the_cap_are_closed_at_once_and_the_others_served() {
        let server = start(Limits {
            max_connections: 2,
            header_timeout: Duration::from_secs(30),
            ..Limits::default()
        });
        let mut first = connect(server.addr);
        let mut second = connect(server.addr);
        // Both are served: an answer on each proves the server took them.
        assert!(get(&mut first).starts_with("HTTP/1.1 200"));
        assert!(get(&mut second).starts_with("HTTP/1.1 200"));
        // A third is closed long before any timeout could close it.
        let mut third = connect(server.addr);
        assert!(closed_within(&mut third, Duration::from_secs(5)));
        // The two still work, and once one ends its place is free again.
        assert!(get(&mut first).starts_with("HTTP/1.1 200"));
        drop(first);
        let again = (0..200).find_map(|_| {
            let mut stream = connect(server.addr);
            if closed_within(&mut stream, Duration::from_millis(100)) {
                return None;
            }
            Some(get(&mut stream))
        });
        assert!(again.is_some_and(|answer| answer.starts_with("HTTP/1.1 200")));
    }

    #[test]
    fn silent_and_idle_connections_are_closed() {
        let server = start(Limits {
            header_timeout: Duration::from_millis(300),
            ..Limits::default()
        });
        // Nothing sent at all.
        let mut silent = connect(server.addr);
        assert!(closed_within(&mut silent, Duration::from_secs(5)));
        // Kept alive after an answer, then idle.
        let mut idle = connect(server.addr);
        assert!(get(&mut idle).starts_with("HTTP/1.1 200"));
        assert!(closed_within(&mut idle, Duration::from_secs(5)));
    }

    #[test]
    fn an_oversized_request_header_is_refused() {
        let server = start(Limits::default());
        let mut stream = connect(server.addr);
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(2 * MAX_BUFFER)
        );
        // The server may close before it has read everything; only its answer matters.
        let _ = stream.write_all(huge.as_bytes());
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431"),
            "{text}"
        );
        assert!(!text.contains("hello"), "{text}");
    }
}
