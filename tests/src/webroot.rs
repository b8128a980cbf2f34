//! A plain HTTP server for a document root: the web server in front of a `webroot`, for the
//! ACME http-01 tests.
//!
//! Promises:
//! - Listens on `127.0.0.1:<port>`; answers `GET /<path>` with the file under the root (200,
//!   `text/plain`), and 404 for a missing file, a folder, or a path with `..`, `//` or a
//!   query. Other methods get 405.
//! - Records every request it answered ([`WebRoot::requests`]): method, path, status.
//! - Dropping it stops the server.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::serve::Served;
use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// One request the server answered: method, path, status.
pub type Seen = (String, String, u16);

/// The running server. See the module documentation.
#[derive(Debug)]
pub struct WebRoot {
    root: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    _served: Served,
}

impl WebRoot {
    /// Serves `root` on `127.0.0.1:port`.
    pub fn start(port: u16, root: &Path) -> Result<WebRoot> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("binding the web server to 127.0.0.1:{port}"))?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (serving_root, serving_seen) = (root.to_path_buf(), Arc::clone(&seen));
        let served = Served::spawn("certvakt-webroot", std_listener, move |tcp| {
            let (root, seen) = (serving_root.clone(), Arc::clone(&serving_seen));
            async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = answer(&root, &request);
                    seen.lock().unwrap_or_else(PoisonError::into_inner).push((
                        request.method().to_string(),
                        request.uri().path().to_owned(),
                        response.status().as_u16(),
                    ));
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            }
        })?;
        Ok(WebRoot {
            root: root.to_path_buf(),
            seen,
            _served: served,
        })
    }

    /// The document root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn answer(root: &Path, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if request.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, b"GET only\n".to_vec());
    }
    let path = request.uri().path();
    let relative = path.trim_start_matches('/');
    if request.uri().query().is_some()
        || relative.is_empty()
        || relative
            .split('/')
            .any(|part| part.is_empty() || part == "..")
    {
        return reply(StatusCode::NOT_FOUND, b"not found\n".to_vec());
    }
    match std::fs::read(root.join(relative)) {
        Ok(body) => reply(StatusCode::OK, body),
        Err(_) => reply(StatusCode::NOT_FOUND, b"not found\n".to_vec()),
    }
}
