//! ACME http-01 challenges, answered by the host for plugins, in one of two places:
//!
//! - the built-in responder: a plugin publishes a token and its key authorization; the
//!   responder answers `GET /.well-known/acme-challenge/<token>` with it on
//!   `[daemon] http01_listen`, until the plugin withdraws it or an hour has passed (a plugin
//!   that fails midway leaves nothing behind for long);
//! - a webroot, served by another web server: [`write_webroot`] writes the file
//!   `<webroot>/.well-known/acme-challenge/<token>` whole (temporary file, then rename), mode
//!   0644, making the folders (0755) if missing; [`remove_webroot`] takes it away.
//!
//! Either way the token must be base64url, so it can never name another path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hyper::{Method, StatusCode};

use crate::httpd::{Handler, reply};

const PREFIX: &str = "/.well-known/acme-challenge/";
/// A published token is answered this long at most.
const LIFETIME_SECS: i64 = 3_600;

/// Tokens being answered, with their key authorizations.
#[derive(Debug, Default)]
pub struct Http01Responder {
    tokens: RwLock<HashMap<String, (String, i64)>>,
}

/// A token is base64url (RFC 8555 §8.3), so it can never name another path.
pub(crate) fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The file `token` is answered from under `webroot`.
fn webroot_file(webroot: &str, token: &str) -> Result<std::path::PathBuf, String> {
    if !valid_token(token) {
        return Err(format!("`{token}` is not an ACME token (base64url)"));
    }
    let root = std::path::Path::new(webroot);
    if !root.is_absolute() {
        return Err(format!("the webroot {webroot:?} is not an absolute path"));
    }
    Ok(root.join(".well-known/acme-challenge").join(token))
}

/// Writes `key_authorization` as the challenge file for `token` under `webroot`.
pub fn write_webroot(webroot: &str, token: &str, key_authorization: &str) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    let file = webroot_file(webroot, token)?;
    let dir = file.parent().unwrap_or(std::path::Path::new(webroot));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| {
            format!(
                "cannot make {} for the http-01 files: {e}; check webroot and that certvakt may write there",
                dir.display()
            )
        })?;
    crate::store::atomic::write_file(
        &file,
        key_authorization.as_bytes(),
        &crate::store::FileSpec::mode(0o644),
    )
    .map_err(|e| format!("cannot write the http-01 file: {e}"))
}

/// Removes the challenge file for `token` under `webroot`; one already gone is fine.
pub fn remove_webroot(webroot: &str, token: &str) -> Result<(), String> {
    let file = webroot_file(webroot, token)?;
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", file.display())),
    }
}

impl Http01Responder {
    pub fn new() -> Http01Responder {
        Http01Responder::default()
    }

    /// Answers `token` with `key_authorization` from now on.
    pub fn publish(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        if !valid_token(token) {
            return Err(format!("`{token}` is not an ACME token (base64url)"));
        }
        if key_authorization.len() > 1024 || !key_authorization.starts_with(token) {
            return Err("the key authorization must be `<token>.<thumbprint>`".into());
        }
        let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        let now = crate::now_unix();
        tokens.retain(|_, (_, expires)| *expires > now);
        tokens.insert(
            token.to_owned(),
            (key_authorization.to_owned(), now + LIFETIME_SECS),
        );
        Ok(())
    }

    /// Stops answering `token`.
    pub fn withdraw(&self, token: &str) {
        let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        tokens.remove(token);
    }

    fn answer(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(token)
            .filter(|(_, expires)| *expires > crate::now_unix())
            .map(|(auth, _)| auth.clone())
    }

    /// The HTTP handler for [`crate::httpd::serve`].
    pub fn handler(self: &Arc<Self>) -> Handler {
        let responder = self.clone();
        Arc::new(move |req| {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n");
            }
            let answer = req
                .uri()
                .path()
                .strip_prefix(PREFIX)
                .and_then(|token| responder.answer(token));
            match answer {
                Some(auth) => {
                    log::info!(path = req.uri().path(); "answered an ACME http-01 challenge");
                    reply(StatusCode::OK, "application/octet-stream", auth)
                }
                None => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    #[test]
    fn published_tokens_are_answered_until_withdrawn() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let responder = Arc::new(Http01Responder::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler = responder.handler();
        let server = std::thread::spawn(move || {
            runtime.block_on(crate::httpd::serve(listener, handler, "http01", async {
                let _ = stopped.await;
            }))
        });

        let token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
        let auth = format!("{token}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI");
        assert_eq!(get(addr, &format!("{PREFIX}{token}")).0, 404);
        responder.publish(token, &auth).unwrap();
        assert_eq!(get(addr, &format!("{PREFIX}{token}")), (200, auth.clone()));
        assert_eq!(get(addr, "/.well-known/acme-challenge/other").0, 404);
        responder.withdraw(token);
        assert_eq!(get(addr, &format!("{PREFIX}{token}")).0, 404);

        assert!(responder.publish("../etc/passwd", "x").is_err());
        assert!(responder.publish(token, "not-the-token.x").is_err());
        let _ = stop.send(());
        server.join().unwrap();
    }
}
